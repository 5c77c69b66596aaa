/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sluice: a GStreamer pipeline server.
 *
 * The "sluice" GStreamer plugin: elements used by sluice pipelines.
 */

#include "gstsluiceprogress.h"
#include "gstsluicescale.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ret = FALSE;

  ret |= GST_ELEMENT_REGISTER (sluiceprogress, plugin);
  ret |= GST_ELEMENT_REGISTER (sluicescale, plugin);

  return ret;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR,
    GST_VERSION_MINOR,
    sluice,
    "Elements used by the sluice pipeline server",
    plugin_init, VERSION, GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
