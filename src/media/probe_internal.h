// SPDX-License-Identifier: LGPL-2.1-or-later
// What the parts of the probe share: its debug category, and the watch for errors decodebin2 throws away.
#pragma once

#include <gst/pbutils/pbutils.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(sluice_probe_debug);

namespace sluice::media::detail {

// A discovery in progress: its pipeline, and the errors its elements posted.
struct ErrorWatch {
  GstObject *pipeline = nullptr; // owned by the discoverer, which outlives the watch
  std::mutex m;
  std::condition_variable cv;
  std::vector<GstMessage *> errors;
  bool done = false;
};

// Watches one discovery (from its source-setup signal until stop()): errors that no bin passed on are
// posted again on the discoverer's bus (see probe_errors.cpp).
class LostErrors {
public:
  LostErrors();
  ~LostErrors() { stop(); }
  LostErrors(const LostErrors &) = delete;
  LostErrors &operator=(const LostErrors &) = delete;

  // The "source-setup" signal of GstDiscoverer: the source is in the discoverer's pipeline.
  static void on_source_setup(GstDiscoverer *, GstElement *source, gpointer self) {
    static_cast<LostErrors *>(self)->start(GST_OBJECT(source));
  }

  void stop();

private:
  // How long the bins get to pass an error on, or to take the failed element out and try another.
  static constexpr std::chrono::milliseconds kGrace{300};

  void start(GstObject *source);
  // No lock is held while the bins are looked at or the bus is posted to.
  void run();

  ErrorWatch watch_;
  std::thread thread_;
};

} // namespace sluice::media::detail
