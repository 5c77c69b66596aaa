// SPDX-License-Identifier: LGPL-2.1-or-later
// The main loop with SIGINT/SIGTERM handled as GLib sources.
#include "core/mainloop.h"

#include <glib-unix.h>

#include <csignal>

namespace sluice {

void run_main_loop(GMainLoop *loop, GSourceFunc on_signal, gpointer data) {
  guint sigint = g_unix_signal_add(SIGINT, on_signal, data);
  guint sigterm = g_unix_signal_add(SIGTERM, on_signal, data);
  g_main_loop_run(loop);
  g_source_remove(sigint);
  g_source_remove(sigterm);
}

} // namespace sluice
