// SPDX-License-Identifier: LGPL-2.1-or-later
// The log facade over GStreamer's debug categories.
#include "core/log.h"

#include <gst/gst.h>

#include <cstdarg>

namespace sluice::log {

Category *category(const char *name, const char *description) {
  // GStreamer returns the category already registered under a name.
  return reinterpret_cast<Category *>(_gst_debug_category_new(name, 0, description));
}

bool enabled(Category *category, Level level) {
  auto *cat = reinterpret_cast<GstDebugCategory *>(category);
  return cat && gst_debug_category_get_threshold(cat) >= static_cast<GstDebugLevel>(level);
}

void write(Category *category, Level level, const char *file, const char *function, int line, const char *format, ...) {
  va_list args;
  va_start(args, format);
  gst_debug_log_valist(reinterpret_cast<GstDebugCategory *>(category), static_cast<GstDebugLevel>(level), file,
                       function, line, nullptr, format, args);
  va_end(args);
}

} // namespace sluice::log
