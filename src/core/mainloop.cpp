// SPDX-License-Identifier: LGPL-2.1-or-later
// The main loop with SIGINT/SIGTERM handled as GLib sources.
#include "core/mainloop.h"

#include <glib-unix.h>

#include <csignal>
#include <exception>

namespace sluice {

SignalSources::SignalSources(GSourceFunc on_signal, gpointer data)
    : sigint_(g_unix_signal_add(SIGINT, on_signal, data)), sigterm_(g_unix_signal_add(SIGTERM, on_signal, data)) {}

SignalSources::~SignalSources() {
  g_source_remove(sigint_);
  g_source_remove(sigterm_);
}

void run_main_loop(GMainLoop *loop, GSourceFunc on_signal, gpointer data) {
  SignalSources signals(on_signal, data);
  g_main_loop_run(loop);
}

void post(std::function<void()> fn, GMainContext *context, guint delay_s) {
  using Closure = std::function<void()>;
  GSource *src = delay_s ? g_timeout_source_new_seconds(delay_s) : g_idle_source_new();
  g_source_set_priority(src, G_PRIORITY_DEFAULT);
  g_source_set_callback(
      src,
      [](gpointer d) -> gboolean {
        // The last line of defence: nothing thrown crosses GLib's callback (that would end the
        // process). Callers catch what they can answer; what gets here is logged and the loop goes on.
        try {
          (*static_cast<Closure *>(d))();
        } catch (const std::exception &e) {
          g_warning("sluice: a task on the main loop failed: %s", e.what());
        } catch (...) {
          g_warning("sluice: a task on the main loop failed");
        }
        return G_SOURCE_REMOVE;
      },
      new Closure(std::move(fn)), [](gpointer d) { delete static_cast<Closure *>(d); });
  g_source_attach(src, context);
  g_source_unref(src);
}

} // namespace sluice
