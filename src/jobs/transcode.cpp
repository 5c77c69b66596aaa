// SPDX-License-Identifier: LGPL-2.1-or-later
// Transcode planning, running and publishing.
#include "jobs/transcode.h"

#include "jobs/outputs.h"

#include "core/fs.h"
#include "core/mainloop.h"
#include "core/paths.h"
#include "media/h264.h"
#include "media/ladder.h"

#include <malloc.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

GST_DEBUG_CATEGORY_STATIC(sluice_transcode_debug);
#define GST_CAT_DEFAULT sluice_transcode_debug

namespace sluice::jobs {

namespace {
void init_debug() {
  static std::once_flag once;
  std::call_once(
      once, [] { GST_DEBUG_CATEGORY_INIT(sluice_transcode_debug, "sluice-transcode", 0, "sluice transcode jobs"); });
}

// Why the file at `path` may not be what `probed` describes any more, "" when it is unchanged since `probed_at`
// (its size is the probed size, and it was last modified before then).
std::string changed_since(const std::string &path, const media::ProbeResult &probed, std::int64_t probed_at) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    return std::string("it cannot be read: ") + g_strerror(errno);
  if (static_cast<std::int64_t>(st.st_size) != probed.size)
    return "it holds " + std::to_string(st.st_size) + " bytes, " + std::to_string(probed.size) + " when it was probed";
  std::int64_t modified = static_cast<std::int64_t>(st.st_mtim.tv_sec) * G_USEC_PER_SEC + st.st_mtim.tv_nsec / 1000;
  if (probed_at <= 0 || modified > probed_at)
    return "it was modified after it was probed";
  return "";
}

// The input's probe: the one the request hands over while the file is unchanged, else a new one.
media::ProbeResult probe_input(const TranscodeRequest &req) {
  if (req.probed) {
    std::string changed = changed_since(req.input, *req.probed, req.probed_at);
    if (changed.empty()) {
      GST_INFO("%s: unchanged since it was probed, not probed again", req.input.c_str());
      media::ProbeResult r = *req.probed;
      r.path = fs::absolute(req.input); // the stored probe names where the file was then (an upload's temporary file)
      return r;
    }
    GST_INFO("%s: probed again: %s", req.input.c_str(), changed.c_str());
  }
  return media::probe(req.input);
}
} // namespace

TranscodePlan plan_transcode(const TranscodeRequest &req, const std::string &out,
                             const pipeline::EncoderTable &encoders) {
  init_debug();
  TranscodePlan plan;
  plan.description = pipeline::find_description(req.pipeline);
  if (pipeline::output_info(plan.description.output).live)
    throw Error(ErrorCode::Invalid, "pipeline '" + req.pipeline + "' is the ladder of live streams, not for a file");
  plan.values = pipeline::resolve(plan.description.params, req.params);
  const bool streaming = pipeline::output_info(plan.description.output).streaming;
  auto ladder = req.ladder.empty() || !streaming ? media::default_ladder() : media::parse_ladder(req.ladder);
  if (req.input.empty() && req.fetch_input) {
    TranscodeRequest fetched = req;
    fetched.input = req.fetch_input();
    if (fetched.input.empty())
      throw Error(ErrorCode::NotFound, "the uploaded file is missing (neither here nor in storage)");
    plan.probe = probe_input(fetched);
  } else {
    plan.probe = probe_input(req);
  }

  auto &r = plan.render;
  r.input = plan.probe.path;
  r.out = fs::absolute(out);
  r.has_video = plan.probe.video.has_value();
  r.has_audio = plan.probe.audio.has_value();
  if (r.has_audio)
    r.audio_channels = std::clamp(plan.probe.audio->channels, 1, 2);
  r.duration = plan.probe.duration_ns > 0 ? plan.probe.duration_ns / 1e9 : 0.0;
  if (r.has_video) {
    const auto &v = *plan.probe.video;
    r.framerate = v.fps > 0 && v.fps < 1000 ? v.fps : 30.0;
    r.display_width = v.display_width;
    r.display_height = v.display_height;
    r.rotation = v.rotation;
    r.mirrored = v.mirrored;
    if (streaming)
      r.renditions = media::plan_ladder(ladder, v.display_width, v.display_height);
    bool encodes = streaming;
    if (auto it = plan.description.fragments.find("video"); it != plan.description.fragments.end())
      encodes = encodes || it->second.find("{encoder}") != std::string::npos;
    if (encodes)
      r.encoder = encoders.resolve(req.encoder, req.encoder_order, pipeline::rate_control_of(plan.values));
  }
  plan.launch = pipeline::render(plan.description, plan.values, r, encoders);
  plan.decoder_threads = pipeline::decoder_threads(r, encoders);
  return plan;
}

void check_output_length(const std::string &what, double got, double expected) {
  double tolerance = std::max(0.5, expected * 0.02);
  if (expected > 0 && expected - got > tolerance) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "the output of %s lasts %.2f s but the input should last %.2f s: the input is probably truncated "
                  "or damaged",
                  what.c_str(), got, expected);
    throw Error(ErrorCode::Truncated, msg);
  }
}

TranscodeResult finalize_hls(const TranscodePlan &plan, const std::string &dir) {
  TranscodeResult res;
  res.out = dir;
  std::vector<media::Variant> variants;
  std::vector<std::pair<std::string, std::pair<int, int>>> names;
  if (plan.render.has_video)
    for (const auto &r : plan.render.renditions)
      names.push_back({r.name, {r.width, r.height}});
  else
    names.push_back({"audio", {0, 0}});

  const double probed = plan.probe.duration_ns > 0 ? plan.probe.duration_ns / 1e9 : 0.0;
  for (const auto &[name, size] : names) {
    std::string pl_path = fs::join(dir, name + ".m3u8");
    if (!fs::exists(pl_path))
      throw Error(ErrorCode::Pipeline, "the pipeline wrote no playlist for rendition " + name);
    auto pl = media::parse_media_playlist(fs::read_file(pl_path));
    if (pl.segments.empty())
      throw Error(ErrorCode::Pipeline, "the pipeline wrote no segment for rendition " + name);
    media::complete_last_segment(pl, dir); // hlssink2 leaves out the last frame's duration
    RenditionResult rr;
    rr.name = name;
    rr.playlist = name + ".m3u8";
    rr.width = size.first;
    rr.height = size.second;
    rr.stats = media::measure(pl, dir);
    check_output_length("rendition " + name, rr.stats.duration, probed);
    std::vector<std::string> codecs;
    if (plan.render.has_video) {
      auto sps = media::find_sps_ts_file(fs::join(dir, pl.segments.front().uri));
      if (!sps)
        throw Error(ErrorCode::Pipeline, "no H.264 parameter set found in " + pl.segments.front().uri);
      codecs.push_back(media::avc1_codec(*sps));
    }
    if (plan.render.has_audio)
      codecs.push_back("mp4a.40.2");
    for (const auto &c : codecs)
      rr.codecs += (rr.codecs.empty() ? "" : ",") + c;
    fs::write_atomic(pl_path, media::write_media_playlist(pl, "VOD"));
    media::Variant v;
    v.uri = rr.playlist;
    v.bandwidth = rr.stats.peak_bps;
    v.average_bandwidth = rr.stats.average_bps;
    v.width = rr.width;
    v.height = rr.height;
    v.frame_rate = plan.render.has_video ? plan.render.framerate : 0.0;
    v.codecs = rr.codecs;
    variants.push_back(v);
    res.duration = std::max(res.duration, rr.stats.duration);
    res.renditions.push_back(rr);
  }
  res.master = pipeline::output_info(pipeline::OutputKind::Hls).master;
  fs::write_atomic(fs::join(dir, res.master), media::write_master_playlist(variants));
  return res;
}

namespace {

// A sibling of the output folder: out (absolute, without a trailing slash) + suffix.
std::string sibling_of(const std::string &out, const char *suffix) {
  std::string abs = fs::absolute(out);
  while (abs.size() > 1 && abs.back() == '/')
    abs.pop_back();
  return abs + suffix;
}

// Where a replaced package waits while the new one is renamed into place.
std::string old_dir_for(const std::string &out) {
  return sibling_of(out, ".old");
}

} // namespace

std::string work_dir_for(const std::string &out) {
  return sibling_of(out, ".partial");
}

Transcode::Transcode(TranscodePlan plan, std::string out, std::string work, bool replace)
    : plan_(std::move(plan)), out_(std::move(out)), work_(std::move(work)), replace_(replace) {}

void recover_output(const std::string &out) {
  std::string old = old_dir_for(out);
  fs::remove_all(work_dir_for(out));
  if (fs::exists(old)) {
    if (!fs::exists(out) && rename(old.c_str(), out.c_str()) == 0)
      return;
    fs::remove_all(old);
  }
}

void Transcode::start(Runner::ProgressFn on_progress, DoneFn on_done, Runner::SegmentFn on_segment) {
  init_debug();
  on_done_ = std::move(on_done);
  fs::remove_all(work_);
  fs::make_dirs(work_);
  // Planning decoded and encoded a few frames in pipelines of its own (probe, encoder check):
  // hand what they freed back to the system before the real pipeline allocates its frames.
  malloc_trim(0);
  runner_ = std::make_unique<Runner>(plan_.launch);
  runner_->set_decoder_threads(plan_.decoder_threads);
  try {
    runner_->start(
        std::move(on_progress), [this](std::optional<Error> err) { done(std::move(err)); }, std::move(on_segment));
  } catch (...) {
    fs::remove_all(work_);
    throw;
  }
}

void Transcode::cancel() {
  if (runner_)
    runner_->cancel();
}

namespace {

// Finishes the output and publishes it; runs on a worker thread (splitting segments and encoding
// sprite sheets take a while).
TranscodeResult publish(const TranscodePlan &plan, const std::string &work, const std::string &out, bool replace,
                        const std::map<std::string, std::int64_t> &track_starts, const Transcode::Publisher &publisher,
                        const Transcode::Fence &fence) {
  TranscodeResult res = finalize_output(plan, work, track_starts);
  if (publisher) {
    // Object storage holds the package: the working folder is not kept (see Transcode::Publisher).
    res.storage_prefix = publisher(work);
    fs::remove_all(work);
    res.out = out;
    return res;
  }
  // Everything written reaches the disk before the package is renamed into place: after a power cut
  // a published package is whole.
  if (int dfd = open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    syncfs(dfd);
    close(dfd);
  }
  // A run whose job was taken by another process meanwhile (its lease ran out) publishes nothing.
  if (fence && !fence())
    throw Error(ErrorCode::Canceled, "the job's lease was lost before its package was published: nothing published");
  // Publish: an empty (or missing) output folder is replaced by the finished package in one rename.
  if (fs::is_dir(out) && fs::list_dir(out).empty())
    fs::remove_all(out);
  std::string old;
  if (replace && fs::exists(out)) {
    old = old_dir_for(out);
    fs::remove_all(old);
    if (rename(out.c_str(), old.c_str()) != 0)
      throw Error(ErrorCode::Io, "cannot move the previous output " + out + " aside: " + g_strerror(errno));
  }
  if (rename(work.c_str(), out.c_str()) != 0)
    throw Error(ErrorCode::Io, "cannot move the output into " + out + ": " + g_strerror(errno));
  if (!old.empty())
    fs::remove_all(old);
  res.out = out;
  return res;
}

} // namespace

Transcode::~Transcode() {
  *alive_ = false;
}

bool Transcode::update_live() {
  if (plan_.description.output != pipeline::OutputKind::Cmaf || finishing_ || !runner_)
    return live_master_;
  std::int64_t now = g_get_monotonic_time();
  if (now - live_checked_us_ < 200000)
    return live_master_;
  live_checked_us_ = now;
  try {
    if (!live_)
      live_ = std::make_unique<CmafLive>(plan_, work_);
    live_master_ = live_->update(runner_->track_starts());
  } catch (const Error &e) {
    // The finishing step reads the files again and reports what is wrong with them.
    GST_WARNING("live CMAF output of %s: %s", work_.c_str(), e.what());
  }
  return live_master_;
}

void Transcode::done(std::optional<Error> err) {
  if (err) {
    report(std::move(err), {});
    return;
  }
  // Off the main loop; the result comes back through it. The thread works on copies, so that the
  // Transcode may go away meanwhile (its callback is then not called).
  finishing_ = true;
  live_.reset();
  auto alive = alive_;
  auto starts = runner_ ? runner_->track_starts() : std::map<std::string, std::int64_t>{};
  try {
    std::thread([this, alive, plan = plan_, work = work_, out = out_, replace = replace_, starts,
                 publisher = publisher_, fence = fence_] {
      std::optional<Error> e;
      TranscodeResult res;
      try {
        res = publish(plan, work, out, replace, starts, publisher, fence);
      } catch (const Error &x) {
        e = x;
      } catch (const std::exception &x) {
        e = Error(ErrorCode::Internal, x.what());
      }
      if (e)
        fs::remove_all(work);
      post([this, alive, e, res] {
        if (!*alive)
          return;
        try {
          report(e, res);
        } catch (const std::exception &x) {
          g_warning("transcode: finishing the run failed: %s", x.what()); // (not into GLib)
        }
      });
    }).detach();
  } catch (const std::exception &x) {
    // No thread to finish the output on (std::system_error): the run fails, and may be tried again.
    report(Error(ErrorCode::Internal, std::string("cannot finish the output: ") + x.what()), {});
  }
}

void Transcode::report(std::optional<Error> err, const TranscodeResult &res) {
  finishing_ = false;
  if (err) {
    GST_WARNING("transcode of %s failed: %s", plan_.probe.path.c_str(), err->what());
    fs::remove_all(work_);
  }
  if (on_done_)
    on_done_(std::move(err), res);
}

TranscodeResult transcode_sync(const TranscodeRequest &req, const std::string &out,
                               const Runner::ProgressFn &on_progress) {
  if (fs::exists(out) && (!fs::is_dir(out) || !fs::list_dir(out).empty()))
    throw Error(ErrorCode::Invalid, "the output folder " + out + " exists and is not empty");
  auto encoders = pipeline::EncoderTable::load_default();
  std::string work = work_dir_for(out);
  auto plan = plan_transcode(req, work, encoders);
  g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
  std::optional<Error> error;
  TranscodeResult result;
  Transcode t(std::move(plan), fs::absolute(out), work);
  t.start(on_progress, [&](std::optional<Error> err, const TranscodeResult &res) {
    error = std::move(err);
    result = res;
    g_main_loop_quit(loop);
  });
  auto on_signal = +[](gpointer data) -> gboolean {
    static_cast<Transcode *>(data)->cancel();
    return G_SOURCE_CONTINUE;
  };
  run_main_loop(loop, on_signal, &t);
  if (error)
    throw *error;
  return result;
}

JsonNode *result_to_json(const TranscodeResult &r) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "out");
  json_builder_add_string_value(b, r.out.c_str());
  json_builder_set_member_name(b, "output");
  json_builder_add_string_value(b, pipeline::output_name(r.output).c_str());
  if (!r.master.empty()) {
    json_builder_set_member_name(b, "master");
    json_builder_add_string_value(b, fs::join(r.out, r.master).c_str());
  }
  json_builder_set_member_name(b, "duration");
  json_builder_add_double_value(b, r.duration);
  if (!r.storage_prefix.empty()) {
    json_builder_set_member_name(b, "storage_prefix");
    json_builder_add_string_value(b, r.storage_prefix.c_str());
  }
  json_builder_set_member_name(b, "files");
  json_builder_begin_object(b);
  for (const auto &[role, file] : r.files) {
    json_builder_set_member_name(b, role.c_str());
    json_builder_add_string_value(b, file.c_str());
  }
  json_builder_end_object(b);
  if (r.width > 0) {
    json_builder_set_member_name(b, "width");
    json_builder_add_int_value(b, r.width);
    json_builder_set_member_name(b, "height");
    json_builder_add_int_value(b, r.height);
  }
  if (r.time >= 0) {
    json_builder_set_member_name(b, "time");
    json_builder_add_double_value(b, r.time);
  }
  if (r.tiles > 0) {
    json_builder_set_member_name(b, "tiles");
    json_builder_add_int_value(b, r.tiles);
  }
  json_builder_set_member_name(b, "renditions");
  json_builder_begin_array(b);
  for (const auto &rr : r.renditions) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, rr.name.c_str());
    json_builder_set_member_name(b, "playlist");
    json_builder_add_string_value(b, rr.playlist.c_str());
    json_builder_set_member_name(b, "width");
    json_builder_add_int_value(b, rr.width);
    json_builder_set_member_name(b, "height");
    json_builder_add_int_value(b, rr.height);
    json_builder_set_member_name(b, "codecs");
    json_builder_add_string_value(b, rr.codecs.c_str());
    json_builder_set_member_name(b, "bandwidth");
    json_builder_add_int_value(b, rr.stats.peak_bps);
    json_builder_set_member_name(b, "average_bandwidth");
    json_builder_add_int_value(b, rr.stats.average_bps);
    json_builder_set_member_name(b, "duration");
    json_builder_add_double_value(b, rr.stats.duration);
    if (rr.frames >= 0) {
      json_builder_set_member_name(b, "frames");
      json_builder_add_int_value(b, rr.frames);
    }
    if (rr.segments > 0) {
      json_builder_set_member_name(b, "segments");
      json_builder_add_int_value(b, rr.segments);
      json_builder_set_member_name(b, "start");
      json_builder_add_double_value(b, rr.start);
      json_builder_set_member_name(b, "end");
      json_builder_add_double_value(b, rr.end);
    }
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

} // namespace sluice::jobs
