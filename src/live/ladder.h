// SPDX-License-Identifier: LGPL-2.1-or-later
// The ladder of a live stream: one pipeline, rendered from its description (pipelines/live-*.json), fed by appsrcs,
// that decodes once and encodes every rung into MPEG-TS cut into .ts segments (live-hls) or fragmented MP4 cut into
// CMAF (live-cmaf).
#pragma once

#include "core/gobj.h"
#include "live/playlist.h"
#include "pipeline/description.h"
#include "pipeline/render.h"

#include <gst/gst.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::live {

// The segment length when a description says none.
constexpr int kSegmentSeconds = 2;

struct LadderPlan {
  std::string dir; // the stream's folder
  int session = 1; // numbers this ladder's segment files: NAME-SESSION-INDEX.ts, NAME/SESSION-INDEX.m4s
  std::vector<pipeline::RenditionSpec> renditions;
  int fps_n = 30, fps_d = 1;
  int segment_seconds = kSegmentSeconds;
  int gop = 60; // frames: one keyframe per segment
  bool audio = false;
  bool cmaf = false;       // live-cmaf: every rung and the audio as CMAF tracks
  std::string description; // the name of the description it was rendered from
  std::string launch;      // the rendered gst-launch description

  double frame_rate() const { return static_cast<double>(fps_n) / fps_d; }
  // Tracks: the rungs, then (CMAF with audio) the audio track set, named "audio".
  std::size_t tracks() const { return renditions.size() + (cmaf && audio ? 1 : 0); }
  std::string track_name(std::size_t i) const { return i < renditions.size() ? renditions[i].name : "audio"; }
};

// The description of a stream's pipeline ("live-hls", "live-cmaf") with its parameters' defaults. Throws
// sluice::Error (NotFound, Invalid) when it is missing or is not a live one.
struct LiveDescription {
  pipeline::Description description;
  pipeline::Values values;
  int segment_seconds = kSegmentSeconds;
};
LiveDescription load_live_description(const std::string &name);

// Plans the ladder from the input's video caps (width, height, pixel aspect ratio, frame rate) and audio caps
// (null: no audio): `ladder` is the stream's ladder ("" for the default one), never upscaled; and renders the
// description with it. Throws sluice::Error when the caps have no picture size or the description cannot render.
LadderPlan plan_ladder(const LiveDescription &d, const std::string &ladder, const std::string &dir, int session,
                       const GstCaps *video, const GstCaps *audio);

// Why a built ladder cannot be run ("" when it can): appsrc `v` (and `a` with audio), and per track the element
// `{sink}` names: a muxer followed by an appsink (live-hls: an mpegtsmux).
std::string check_ladder_elements(GstElement *pipeline, const LadderPlan &plan);

// The appsink that takes what the element `name` makes: that element, or the first appsink downstream of it
// (a reference; nullptr when there is none).
GstElement *appsink_after(GstElement *pipeline, const std::string &name);

// The file name of segment `index` of a rendition in a session: "720p-2-00005.ts" (live-hls).
std::string segment_name(const std::string &rendition, int session, int index);
// The CMAF files of a track in a session: "720p/init-2.mp4", "720p/2-00005.m4s" (live-cmaf).
std::string cmaf_init_name(const std::string &track, int session);
std::string cmaf_segment_name(const std::string &track, int session, int number);

// Stops a pipeline on a thread of its own (stopping a live pipeline can block); `then` runs on the main loop
// once it has stopped.
void stop_off_loop(GstPtr<GstElement> pipeline, std::function<void()> then = {});
// The same, waiting at most timeout_ms (at shutdown, once the loop no longer runs); false when it did not stop
// in time (its thread is left behind).
bool stop_waiting(GstPtr<GstElement> pipeline, int timeout_ms);
// Waits at most timeout_ms until every stop_off_loop thread has ended (at shutdown, before the process exits: a
// pipeline still stopping while the libraries' exit handlers run crashes in libsrt); false when one has not.
bool wait_for_stops(int timeout_ms);

class Ladder {
public:
  using SegmentFn = std::function<void(std::size_t rendition, const LiveSegment &segment)>;
  using DoneFn = std::function<void(const std::string &error)>; // "" when it ended normally

  Ladder(LadderPlan plan, std::uint64_t claim);
  ~Ladder();
  Ladder(const Ladder &) = delete;
  Ladder &operator=(const Ladder &) = delete;

  // Builds and starts the pipeline (bus watched on the main loop). Throws sluice::Error (Pipeline).
  // on_segment is called on the main loop for every finished segment; on_done once, from a later main loop
  // iteration, after an error or after finish() drained it.
  void start(SegmentFn on_segment, DoneFn on_done);
  // The input has ended: EOS into the appsrcs, the open segments are closed and listed, then on_done("").
  void finish();
  // Stops it now, without on_done.
  void abort();
  // At shutdown (the main loop no longer runs): EOS, the last segments are listed, stopped; waits at most
  // timeout_ms. No on_done.
  void drain_blocking(int timeout_ms);

  GstElement *pipeline() const { return pipeline_.get(); }
  GstElement *video_src() const { return video_.get(); }
  GstElement *audio_src() const { return audio_.get(); }
  // Frames the frame-rate converter dropped (input faster than the planned rate, or late).
  std::int64_t dropped() const;
  const LadderPlan &plan() const { return plan_; }
  std::uint64_t claim() const { return claim_; }
  bool finishing() const { return finishing_; }

private:
  static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer self);
  // Returns false when the message ended the ladder.
  bool handle(GstMessage *msg);
  void done(const std::string &error);
  void unwatch();

  struct Cuts; // what the appsinks of a ladder share with the main loop
  void watch_cuts();
  void flush_cuts();

  LadderPlan plan_;
  std::uint64_t claim_;
  std::shared_ptr<Cuts> cuts_;
  GstPtr<GstElement> pipeline_, video_, audio_, rate_;
  GSource *watch_ = nullptr;
  guint finish_timer_ = 0;
  bool finishing_ = false;
  bool done_ = false;
  SegmentFn on_segment_;
  DoneFn on_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace sluice::live
