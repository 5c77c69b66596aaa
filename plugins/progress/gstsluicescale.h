/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sluice: a GStreamer pipeline server.
 *
 * sluicescale: a video scaler on libswscale, for the ladders of sluice's
 * transcoding pipelines.
 */

#ifndef __GST_SLUICE_SCALE_H__
#define __GST_SLUICE_SCALE_H__

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_SLUICE_SCALE (gst_sluice_scale_get_type ())
G_DECLARE_FINAL_TYPE (GstSluiceScale, gst_sluice_scale, GST,
    SLUICE_SCALE, GstVideoFilter)

/* The scaling methods: the nicks of videoconvertscale's "method", so that a
 * pipeline's scaler parameter means the same for both elements. */
typedef enum
{
  GST_SLUICE_SCALE_NEAREST,
  GST_SLUICE_SCALE_BILINEAR,
  GST_SLUICE_SCALE_BILINEAR2,
  GST_SLUICE_SCALE_4TAP,
  GST_SLUICE_SCALE_LANCZOS,
  GST_SLUICE_SCALE_SINC,
  GST_SLUICE_SCALE_HERMITE,
  GST_SLUICE_SCALE_SPLINE,
  GST_SLUICE_SCALE_CATROM,
  GST_SLUICE_SCALE_MITCHELL,
} GstSluiceScaleMethod;

GST_ELEMENT_REGISTER_DECLARE (sluicescale)

G_END_DECLS

#endif /* __GST_SLUICE_SCALE_H__ */
