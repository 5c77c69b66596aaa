// SPDX-License-Identifier: LGPL-2.1-or-later
// A transcode: probe -> plan the ladder -> render the description -> run -> finalize the HLS package.
#pragma once

#include "jobs/runner.h"
#include "media/hls.h"
#include "media/probe.h"
#include "pipeline/description.h"
#include "pipeline/encoders.h"
#include "pipeline/render.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::jobs {

struct TranscodeRequest {
  std::string input;
  std::string pipeline = "hls";
  std::string encoder = "auto";
  std::string ladder; // "" = the default ladder
  std::map<std::string, std::string> params;
  std::vector<std::string> encoder_order; // overrides encoders.json's order for `auto`
  // A probe of `input` made before (the catalog keeps the upload's as the video's probe_json), used instead of
  // probing the input again unless the file changed since: its size differs from the probed size, or it was
  // modified after `probed_at` (microseconds since the epoch, taken after the file was last written: the video's
  // `created`). Without it, planning probes the input (the CLI does).
  std::optional<media::ProbeResult> probed;
  std::int64_t probed_at = 0;
  // When `input` is empty: makes the input a local file (fetched from object storage) and returns its path, or ""
  // when there is none. Called by plan_transcode, off the main loop.
  std::function<std::string()> fetch_input;
};

struct TranscodePlan {
  media::ProbeResult probe;
  pipeline::Description description;
  pipeline::Values values;
  pipeline::RenderInput render;
  std::string launch;      // the gst-launch description
  int decoder_threads = 0; // pipeline::decoder_threads, given to the Runner (0: the decoder's own choice)
};

// Validates everything that can be validated before running: the input (probed, or req.probed while the file is
// unchanged), the pipeline name, the parameters, the ladder and the encoder. `out` is where the pipeline writes.
// Throws sluice::Error.
TranscodePlan plan_transcode(const TranscodeRequest &req, const std::string &out,
                             const pipeline::EncoderTable &encoders);

struct RenditionResult {
  std::string name;
  std::string playlist;
  int width = 0, height = 0;
  std::string codecs;
  media::VariantStats stats;
  std::int64_t frames = -1; // video samples (CMAF), -1 when not counted
  int segments = 0;
  double start = 0.0, end = 0.0; // of the track on the presentation timeline (CMAF)
};

struct TranscodeResult {
  std::string out;
  pipeline::OutputKind output = pipeline::OutputKind::Hls; // the description's
  std::string master;                                      // "" when the output is not a streaming package
  double duration = 0.0;
  std::vector<RenditionResult> renditions;
  // Files a client fetches, relative to `out`, by role: "hls", "dash", "poster", "storyboard",
  // "preview".
  std::map<std::string, std::string> files;
  int width = 0, height = 0; // of a poster, storyboard tile or preview
  double time = -1.0;        // of the frame a poster shows
  int tiles = 0;             // of a storyboard
  // Where a Publisher put the package in object storage ("videos/ID/PIPELINE/vN/"); "" when it is in `out`.
  std::string storage_prefix;
};

// A truncated input can end "successfully" with a short output: throws Truncated when `got` seconds of
// output fall short of the `expected` seconds by more than 0.5 s or 2 %.
void check_output_length(const std::string &what, double got, double expected);

// Turns hlssink2's output in dir into a finished package: media playlists rewritten as VOD,
// master.m3u8 with measured BANDWIDTH and the encoded CODECS. Throws Truncated when the output is
// shorter than the probed input.
TranscodeResult finalize_hls(const TranscodePlan &plan, const std::string &dir);

class CmafLive;

// Runs a plan into a private working folder next to `out` and publishes it atomically on success;
// on failure or cancel nothing is left behind.
class Transcode {
public:
  using DoneFn = std::function<void(std::optional<Error>, const TranscodeResult &)>;
  // Publishes a finished package folder somewhere else than `out` (object storage), off the main loop: returns
  // where it went (TranscodeResult::storage_prefix), or throws, and the folder is then removed either way.
  using Publisher = std::function<std::string(const std::string &dir)>;
  // Asked off the main loop right before a finished package is renamed into `out` (a local folder several processes
  // may share): whether this run may still publish (its job's lease holds). False: nothing is published, and the run
  // ends with a Canceled error.
  using Fence = std::function<bool()>;
  // With replace, a finished package already in `out` is swapped for the new one when it succeeds
  // (through `out`.old, which recover_output() cleans up after a crash).
  Transcode(TranscodePlan plan, std::string out, std::string work, bool replace = false);
  ~Transcode();
  Transcode(const Transcode &) = delete;
  Transcode &operator=(const Transcode &) = delete;
  // on_segment: a sink has completed a segment (see Runner::start). on_done is called exactly once, on the main
  // loop.
  void start(Runner::ProgressFn on_progress, DoneFn on_done, Runner::SegmentFn on_segment = {});
  void cancel();
  // Set before start(): the finished package goes through publisher instead of being renamed into `out`.
  void set_publisher(Publisher publisher) { publisher_ = std::move(publisher); }
  // Set before start(): asked before the rename into `out` (not used with a publisher, which publishes under a version
  // that only the job's fenced end makes current).
  void set_fence(Fence fence) { fence_ = std::move(fence); }
  const TranscodePlan &plan() const { return plan_; }
  // The pipeline has ended and its output is being finished (split, indexed, published).
  bool finishing() const { return finishing_; }
  // For a CMAF output: splits what the muxers have completed and writes its EVENT playlists (at most
  // every 200 ms). True once its master playlist exists; always false for other outputs.
  bool update_live();

private:
  void done(std::optional<Error> err);
  void report(std::optional<Error> err, const TranscodeResult &res);
  TranscodePlan plan_;
  std::string out_, work_;
  bool replace_ = false;
  Publisher publisher_;
  Fence fence_;
  std::unique_ptr<Runner> runner_;
  DoneFn on_done_;
  bool finishing_ = false;
  std::unique_ptr<CmafLive> live_;
  std::int64_t live_checked_us_ = 0;
  bool live_master_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The working folder used for an output folder.
std::string work_dir_for(const std::string &out);

// After a crash: removes the working folder of `out` and finishes an interrupted replacement
// (restores `out` from `out`.old if the swap was cut between its two renames).
void recover_output(const std::string &out);

// Blocking helper (CLI, tests): plans, runs with a main loop, publishes. `cancel` may be set by a
// signal handler through the returned hook.
TranscodeResult transcode_sync(const TranscodeRequest &req, const std::string &out,
                               const Runner::ProgressFn &on_progress = {});

JsonNode *result_to_json(const TranscodeResult &r);

} // namespace sluice::jobs
