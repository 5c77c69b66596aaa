// SPDX-License-Identifier: LGPL-2.1-or-later
// Where sluice finds its pipeline descriptions and its GStreamer plugin.
#pragma once

#include <string>

namespace sluice::paths {

// $SLUICE_PIPELINES_DIR, else the installed descriptions, else the source tree's (running from a build).
std::string pipelines_dir();
// The web page's files: $SLUICE_WEB_DIR, else $SLUICE_DATA_DIR/web, else the installed data/web, else the
// source tree's (running from a build).
std::string web_dir();
// Makes sure the sluiceprogress element is registered (scans the installed and build plugin dirs
// when it is not on the default path). Returns false if it still cannot be found.
bool ensure_plugin();
// The directory holding libgstsluice.so as found (for GST_PLUGIN_PATH hints), or "".
std::string plugin_dir();

} // namespace sluice::paths
