// SPDX-License-Identifier: LGPL-2.1-or-later
// Runs one gst-launch description as a GstPipeline, watched from the main loop.
#pragma once

#include "core/error.h"
#include "core/gobj.h"

#include <gst/gst.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace sluice::jobs {

// One `sluice-progress` message of the sluiceprogress element.
struct Progress {
  int percent = -1; // -1 while the duration is unknown
  double percent_double = -1.0;
  std::int64_t position_ns = 0;
  std::int64_t duration_ns = -1;
  std::uint64_t frames = 0;
  double fps = 0.0;
  double speed = 0.0;
  std::int64_t eta_ns = -1;
  bool final = false;
};

// Parses a sluice-progress element message; false if it is not one.
bool parse_progress(GstMessage *msg, Progress &out);

class Runner {
public:
  using ProgressFn = std::function<void(const Progress &)>;
  // Called exactly once, on the main context that was current at start(): no error means EOS.
  using DoneFn = std::function<void(std::optional<Error>)>;
  // A sink has completed a segment and written the playlist that lists it (an hlssink2 cut by sluice, see
  // cut_hls_sinks(); or splitmuxsink's fragment-closed of an hlssink2 left as it is); on the main context, like the
  // others.
  using SegmentFn = std::function<void()>;

  explicit Runner(std::string description);
  ~Runner();
  Runner(const Runner &) = delete;
  Runner &operator=(const Runner &) = delete;

  // Builds and starts the pipeline: each hlssink2 that takes video runs as mpegtsmux ! appsink, its segments cut by
  // cut_hls_sinks(). Throws sluice::Error (Pipeline) when the description does not parse.
  // An exception thrown by a callback does not reach GLib: it is logged and fails the run.
  void start(ProgressFn on_progress, DoneFn on_done, SegmentFn on_segment = {});
  // Before start(): every video decoder the pipeline makes (decodebin's) that has a max-threads property (avdec_*)
  // gets `threads`; 0 leaves the decoders' own choice. The description cannot say it: decodebin picks its decoder
  // only once the stream is known.
  void set_decoder_threads(int threads) { decoder_threads_ = threads; }
  // Stops the pipeline; on_done gets a Canceled error (if not already done), from the main context once
  // the pipeline has stopped (or after a timeout if it does not).
  void cancel();
  bool running() const { return pipeline_ != nullptr && !finished_; }
  // The running time (ns) of the first buffer each MP4 muxer received, by the file name (not the
  // folder) its filesink writes. mp4mux starts every fragmented track at 0; this keeps what was lost:
  // how the tracks were placed against each other.
  std::map<std::string, std::int64_t> track_starts() const;
  const std::string &description() const { return description_; }
  // The pipeline while it runs (nullptr before start() and once it has ended).
  GstElement *pipeline() const { return pipeline_.get(); }

private:
  static gboolean on_bus_message(GstBus *bus, GstMessage *msg, gpointer self);
  static void on_element_added(GstBin *bin, GstBin *sub_bin, GstElement *element, gpointer threads);
  void handle_message(GstMessage *msg);
  void finish(std::optional<Error> err);
  void stop_pipeline();

  std::string description_;
  GstPtr<GstElement> pipeline_;
  guint watch_id_ = 0;
  bool finished_ = false;
  int decoder_threads_ = 0;
  std::set<std::string> clips_recording_; // avwait elements that have started their clip
  bool eos_sent_ = false;
  ProgressFn on_progress_;
  DoneFn on_done_;
  SegmentFn on_segment_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  struct TrackStarts {
    mutable std::mutex mutex;
    std::map<std::string, std::int64_t> by_file;
  };
  std::shared_ptr<TrackStarts> starts_ = std::make_shared<TrackStarts>();
  void watch_track_starts();
  static constexpr int kStopTimeoutS = 10;
};

// BadInput for errors of demuxers and decoders reading the input, Pipeline for the rest.
ErrorCode classify_error(GstMessage *msg);

// Formats a GStreamer error message as "element: message (debug)" for a person to act on.
std::string describe_error(GstMessage *msg);

} // namespace sluice::jobs
