// SPDX-License-Identifier: LGPL-2.1-or-later
// Log lines of the modules that know nothing of GStreamer (http/, app/), written to GStreamer's debug log.
#pragma once

#include <glib.h>

namespace sluice::log {

// sluice's lines go to GStreamer's debug log (GST_DEBUG=sluice-http:4), so one switch shows the server's
// lines beside a pipeline's; this facade keeps GStreamer's headers out of the adapters.
enum class Level { Error = 1, Warning = 2, Info = 4, Debug = 5 };

struct Category;

// The category `name` (created on first use, the same one for every later call with that name).
Category *category(const char *name, const char *description);
bool enabled(Category *category, Level level);
void write(Category *category, Level level, const char *file, const char *function, int line, const char *format, ...)
    G_GNUC_PRINTF(6, 7);

} // namespace sluice::log

// SLUICE_LOG(category, Info, "video %s", id): nothing is formatted unless the category's level shows it.
#define SLUICE_LOG(cat, level, ...)                                                                                    \
  do {                                                                                                                 \
    ::sluice::log::Category *sluice_log_cat_ = (cat);                                                                  \
    if (::sluice::log::enabled(sluice_log_cat_, ::sluice::log::Level::level))                                          \
      ::sluice::log::write(sluice_log_cat_, ::sluice::log::Level::level, __FILE__, G_STRFUNC, __LINE__, __VA_ARGS__);  \
  } while (0)
