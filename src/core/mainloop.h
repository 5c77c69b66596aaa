// SPDX-License-Identifier: LGPL-2.1-or-later
// Running the default main loop until it is quit, with SIGINT and SIGTERM delivered on it.
#pragma once

#include <glib.h>

#include <functional>

namespace sluice {

// Runs a main loop on the default context until something quits it. While it runs, SIGINT and SIGTERM
// call on_signal(data) on the loop (as a GLib source: return G_SOURCE_CONTINUE to keep handling them).
void run_main_loop(GMainLoop *loop, GSourceFunc on_signal, gpointer data);

// SIGINT and SIGTERM call on_signal(data) on the default main loop from construction to destruction: made
// before a server says it is up, a signal that comes before its loop runs waits for the loop instead of
// ending the process.
class SignalSources {
public:
  SignalSources(GSourceFunc on_signal, gpointer data);
  ~SignalSources();
  SignalSources(const SignalSources &) = delete;
  SignalSources &operator=(const SignalSources &) = delete;

private:
  guint sigint_ = 0, sigterm_ = 0;
};

// Runs fn once on context (nullptr: the default context) in a later iteration, after delay_s seconds
// (0: as soon as it is idle), never right away, even when called from that context's own thread.
// Safe to call from any thread; the source owns fn and what it captures.
void post(std::function<void()> fn, GMainContext *context = nullptr, guint delay_s = 0);

} // namespace sluice
