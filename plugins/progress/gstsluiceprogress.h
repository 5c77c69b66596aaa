/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sluice: a GStreamer pipeline server.
 *
 * sluiceprogress: a passthrough element that posts periodic progress
 * messages (position, duration, percent, speed, ETA) on the bus.
 */

#ifndef __GST_SLUICE_PROGRESS_H__
#define __GST_SLUICE_PROGRESS_H__

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

/* Name of the structure carried by the element messages. */
#define GST_SLUICE_PROGRESS_MESSAGE_NAME "sluice-progress"

#define GST_TYPE_SLUICE_PROGRESS (gst_sluice_progress_get_type ())
G_DECLARE_FINAL_TYPE (GstSluiceProgress, gst_sluice_progress, GST,
    SLUICE_PROGRESS, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (sluiceprogress)

G_END_DECLS

#endif /* __GST_SLUICE_PROGRESS_H__ */
