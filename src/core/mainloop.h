// SPDX-License-Identifier: LGPL-2.1-or-later
// Running the default main loop until it is quit, with SIGINT and SIGTERM delivered on it.
#pragma once

#include <glib.h>

namespace sluice {

// Runs a main loop on the default context until something quits it. While it runs, SIGINT and SIGTERM
// call on_signal(data) on the loop (as a GLib source: return G_SOURCE_CONTINUE to keep handling them).
void run_main_loop(GMainLoop *loop, GSourceFunc on_signal, gpointer data);

} // namespace sluice
