// SPDX-License-Identifier: LGPL-2.1-or-later
// Lookup of pipeline descriptions and of the project's plugin.
#include "core/paths.h"

#include "core/fs.h"
#include "sluice-config.h"

#include <gst/gst.h>

namespace sluice::paths {

namespace {

// A binary run from its build folder uses the source tree's files, not an older installed copy.
bool running_from_build() {
  gchar *exe = g_file_read_link("/proc/self/exe", nullptr);
  bool from_build = false;
  if (exe) {
    gchar *dir = g_path_get_dirname(exe);
    from_build = g_strcmp0(dir, SLUICE_BUILD_BIN_DIR) == 0;
    g_free(dir);
    g_free(exe);
  }
  return from_build;
}

} // namespace

std::string pipelines_dir() {
  if (const char *env = g_getenv("SLUICE_PIPELINES_DIR"); env && *env)
    return env;
  if (!running_from_build() && fs::is_dir(SLUICE_PIPELINES_INSTALL_DIR))
    return SLUICE_PIPELINES_INSTALL_DIR;
  return SLUICE_SOURCE_PIPELINES_DIR;
}

std::string web_dir() {
  if (const char *env = g_getenv("SLUICE_WEB_DIR"); env && *env)
    return env;
  if (const char *env = g_getenv("SLUICE_DATA_DIR"); env && *env)
    return fs::join(env, "web");
  std::string installed = fs::join(SLUICE_DATA_INSTALL_DIR, "web");
  if (!running_from_build() && fs::is_dir(installed))
    return installed;
  return SLUICE_SOURCE_DATA_DIR "/web";
}

static std::string found_plugin_dir;

static bool lookup_plugin() {
  GstPluginFeature *f = gst_registry_lookup_feature(gst_registry_get(), "sluiceprogress");
  if (!f)
    return false;
  if (GstPlugin *plugin = gst_plugin_feature_get_plugin(f)) {
    if (const char *file = gst_plugin_get_filename(plugin)) {
      gchar *d = g_path_get_dirname(file);
      found_plugin_dir = d;
      g_free(d);
    }
    gst_object_unref(plugin);
  }
  gst_object_unref(f);
  return true;
}

bool ensure_plugin() {
  if (lookup_plugin())
    return true;
  for (const char *dir : {SLUICE_PLUGIN_INSTALL_DIR, SLUICE_PLUGIN_BUILD_DIR}) {
    if (fs::is_dir(dir))
      gst_registry_scan_path(gst_registry_get(), dir);
    if (lookup_plugin())
      return true;
  }
  return false;
}

std::string plugin_dir() { return found_plugin_dir; }

} // namespace sluice::paths
