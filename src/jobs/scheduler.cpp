// SPDX-License-Identifier: LGPL-2.1-or-later
// The job scheduler: claims queued jobs into slots, plans them off the main loop, runs, retries, recovers.
#include "jobs/scheduler.h"

#include "core/fs.h"
#include "core/json.h"
#include "core/mainloop.h"
#include "media/hls.h"
#include "media/ladder.h"
#include "media/probe_json.h"
#include "pipeline/description.h"

#include <gst/gst.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <mutex>
#include <system_error>
#include <thread>

GST_DEBUG_CATEGORY_STATIC(sluice_jobs_debug);
#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

constexpr const char *kSourceName = "source";
// Rewriting a job's state the catalog refused: first after this, doubled each time, up to kMaxSaveRetryMs.
constexpr guint kFirstSaveRetryMs = 500;
constexpr guint kMaxSaveRetryMs = 10000;
// After a job's start could not be written, no job starts for this long at first (doubled up to the maximum).
constexpr int kMaxLaunchBackoffS = 30;
// A job that failed for lack of space waits at most this many times [jobs] no-space-retry-delay (as a shift).
constexpr int kMaxNoSpaceShift = 4;

void init_debug() {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_jobs_debug, "sluice-jobs", 0, "sluice job scheduler"); });
}

// The progress members of a job's JSON and of a "progress" event: seconds, rounded for people.
void set_progress_members(JsonObject *o, const Progress &p) {
  json_object_set_int_member(o, "percent", p.percent);
  json_object_set_double_member(o, "position", p.position_ns / 1e9);
  if (p.duration_ns >= 0)
    json_object_set_double_member(o, "duration", p.duration_ns / 1e9);
  else
    json_object_set_null_member(o, "duration");
  json_object_set_double_member(o, "fps", std::round(p.fps * 10) / 10);
  json_object_set_double_member(o, "speed", std::round(p.speed * 100) / 100);
  if (p.eta_ns >= 0)
    json_object_set_double_member(o, "eta", std::round(p.eta_ns / 1e8) / 10);
  else
    json_object_set_null_member(o, "eta");
}

// An EVENT master playlist for a job that is still running: bandwidths are the encoder's maximum
// rates; the finished package replaces it with measured ones and the real codecs.
std::string interim_master(const TranscodePlan &plan) {
  std::vector<media::Variant> variants;
  int audio_bps = plan.render.has_audio ? media::kDefaultAudioKbps * 1000 : 0;
  if (plan.render.has_video) {
    for (const auto &r : plan.render.renditions) {
      media::Variant v;
      v.uri = r.name + ".m3u8";
      v.bandwidth = static_cast<std::int64_t>(std::max(r.maxrate_kbps, r.bitrate_kbps)) * 1000 + audio_bps;
      v.width = r.width;
      v.height = r.height;
      v.frame_rate = plan.render.framerate;
      variants.push_back(v);
    }
  } else {
    media::Variant v;
    v.uri = "audio.m3u8";
    v.bandwidth = audio_bps;
    variants.push_back(v);
  }
  return media::write_master_playlist(variants);
}

std::string find_source(const std::string &video_dir) {
  if (!fs::is_dir(video_dir))
    return {};
  for (const auto &name : fs::list_dir(video_dir))
    if (name == kSourceName || g_str_has_prefix(name.c_str(), (std::string(kSourceName) + ".").c_str()))
      return fs::join(video_dir, name);
  return {};
}

} // namespace

bool is_transient(ErrorCode code) {
  switch (code) {
  case ErrorCode::Pipeline:
  case ErrorCode::Io:
  case ErrorCode::NoSpace:
  case ErrorCode::Internal: return true;
  default: return false;
  }
}

bool is_no_space(const Error &err) {
  if (err.code() == ErrorCode::NoSpace)
    return true;
  if (!is_transient(err.code()))
    return false;
  // GStreamer's sinks: "No space left on the resource." with strerror's "No space left on device" in the details;
  // our own writes: strerror's words. Both in English, and strerror's also in the words of the locale.
  std::string m = err.what();
  for (const char *words : {"No space left", "Disk quota exceeded", g_strerror(ENOSPC), g_strerror(EDQUOT)})
    if (m.find(words) != std::string::npos)
      return true;
  return false;
}

std::string iso_time(std::int64_t us) {
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
  if (!dt)
    return {};
  g_autofree gchar *s = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
  return s;
}

std::string Layout::videos_dir() const {
  return fs::join(data_dir, "videos");
}
std::string Layout::video_dir(const std::string &video_id) const {
  return fs::join(videos_dir(), video_id);
}
std::string Layout::output_dir(const std::string &video_id, const std::string &pipeline) const {
  return fs::join(video_dir(video_id), pipeline);
}
std::string Layout::uploads_dir() const {
  return fs::join(data_dir, "uploads");
}

struct Scheduler::Active {
  store::Job job;
  std::string out, work;
  std::unique_ptr<Transcode> transcode; // null while planning
  std::optional<Progress> progress;
  bool cancel_requested = false;
  bool shutdown_requested = false;
  bool done = false;
  bool master_written = false;
  std::vector<std::function<void()>> on_stopped;
};

Scheduler::Scheduler(store::Store &store, EventHub &events, const ServerConfig &config, Layout layout)
    : store_(store), events_(events), config_(config), layout_(std::move(layout)),
      encoders_(pipeline::EncoderTable::load_default()), alive_(std::make_shared<std::atomic<bool>>(true)) {
  init_debug();
}

Scheduler::~Scheduler() {
  *alive_ = false;
  if (timer_)
    g_source_remove(timer_);
  if (save_timer_)
    g_source_remove(save_timer_);
  for (auto &[id, a] : active_)
    if (a->transcode)
      a->transcode->cancel();
}

void Scheduler::recover() {
  fs::make_dirs(layout_.videos_dir());
  fs::make_dirs(layout_.uploads_dir());
  // Uploads that never got an answer: nothing was promised for them.
  for (const auto &name : fs::list_dir(layout_.uploads_dir()))
    fs::remove_all(fs::join(layout_.uploads_dir(), name));
  auto requeued = store_.requeue_running();
  for (const auto &j : requeued)
    g_message("job %s of video %s was running when the server stopped: queued again", j.id.c_str(), j.video_id.c_str());
  for (const auto &vid : fs::list_dir(layout_.videos_dir())) {
    std::string dir = layout_.video_dir(vid);
    if (!store::is_id(vid) || !store_.video(vid)) {
      // A folder without a catalog row: an upload cut between its move and its insert.
      g_message("removing %s: no such video in the catalog", dir.c_str());
      fs::remove_all(dir);
      continue;
    }
    for (const auto &name : fs::list_dir(dir)) {
      if (g_str_has_suffix(name.c_str(), ".partial") || g_str_has_suffix(name.c_str(), ".old")) {
        std::string base = name.substr(0, name.rfind('.'));
        recover_output(fs::join(dir, base));
      }
    }
  }
}

void Scheduler::start() {
  recover();
  // Find out once, off the request path, which encoder `auto` means here.
  try {
    GST_INFO("auto encoder: %s", encoders_.resolve("auto").c_str());
  } catch (const Error &e) {
    GST_WARNING("no H.264 encoder can run here: %s", e.what());
  }
  timer_ = g_timeout_add_seconds(
      1,
      [](gpointer self) -> gboolean {
        auto *s = static_cast<Scheduler *>(self);
        s->guarded("", "running the job queue", [s] { s->pump(); });
        return G_SOURCE_CONTINUE;
      },
      this);
  pump();
}

int Scheduler::running_count() const {
  return static_cast<int>(active_.size());
}

std::int64_t Scheduler::free_space() const {
  struct statvfs st {};
  if (statvfs(layout_.data_dir.c_str(), &st) != 0)
    return -1;
  return static_cast<std::int64_t>(st.f_bavail) * static_cast<std::int64_t>(st.f_frsize);
}

bool Scheduler::space_low() const {
  std::int64_t free = free_space();
  return free >= 0 && free < config_.min_free_space;
}

bool Scheduler::save(const store::Job &job) {
  unsaved_.erase(job.id);
  try {
    store_.update_job(job);
    publish_job(job);
    return true;
  } catch (const Error &e) {
    if (e.code() == ErrorCode::NotFound) {
      GST_INFO("job %s is gone from the catalog (its video was deleted): its state is not written", job.id.c_str());
      return false;
    }
    g_warning("cannot write the state of job %s (%s) to the catalog; trying again until it lands: %s", job.id.c_str(),
              store::job_state_name(job.state), e.what());
    unsaved_[job.id] = job;
  }
  arm_save_retry();
  return false;
}

void Scheduler::arm_save_retry() {
  if (save_timer_)
    return;
  guint delay = std::min<guint>(kFirstSaveRetryMs << std::min(save_failures_, 8), kMaxSaveRetryMs);
  save_failures_++;
  save_timer_ = g_timeout_add(
      delay,
      [](gpointer self) -> gboolean {
        auto *s = static_cast<Scheduler *>(self);
        s->save_timer_ = 0;
        s->guarded("", "writing job states again", [s] { s->retry_saves(); });
        return G_SOURCE_REMOVE;
      },
      this);
}

void Scheduler::retry_saves() {
  auto pending = std::move(unsaved_);
  unsaved_.clear();
  bool refused = false;
  for (auto &[id, job] : pending) {
    // Once the catalog refuses one, the others wait for the next try without a try of their own each.
    if (refused) {
      unsaved_[id] = job;
      continue;
    }
    try {
      store_.update_job(job);
      g_message("job %s: its state (%s) is written to the catalog at last", id.c_str(),
                store::job_state_name(job.state));
      publish_job(job);
    } catch (const Error &e) {
      if (e.code() == ErrorCode::NotFound)
        continue; // its video was deleted meanwhile
      GST_INFO("the catalog still refuses the state of job %s: %s", id.c_str(), e.what());
      refused = true;
      unsaved_[id] = job;
    }
  }
  if (!unsaved_.empty()) {
    arm_save_retry();
    return;
  }
  save_failures_ = 0;
  pump();
}

store::JobState Scheduler::state_of(const store::Job &job) const {
  auto it = unsaved_.find(job.id);
  return it == unsaved_.end() ? job.state : it->second.state;
}

void Scheduler::pump() {
  if (shutting_down_)
    return;
  // A job's start is written before it runs: while the catalog refuses writes, none starts.
  if (!unsaved_.empty() || g_get_real_time() < launch_not_before_)
    return;
  while (static_cast<int>(active_.size()) < config_.slots()) {
    std::optional<store::Job> next;
    try {
      next = store_.next_queued(g_get_real_time());
    } catch (const Error &e) {
      GST_ERROR("cannot read the job queue: %s", e.what());
      return;
    }
    if (!next)
      return;
    std::string id = next->id;
    try {
      launch(std::move(*next));
      launch_failures_ = 0;
    } catch (const Error &e) {
      // Its start could not be written (the catalog refuses writes): it stays queued, and no start is tried for a
      // while, so that a catalog that stays read-only costs a log line now and then, not one a second.
      int backoff = std::min(1 << std::min(launch_failures_, 5), kMaxLaunchBackoffS);
      launch_failures_++;
      launch_not_before_ = g_get_real_time() + backoff * G_USEC_PER_SEC;
      g_warning("cannot start job %s (trying again in %d s): %s", id.c_str(), backoff, e.what());
      return;
    }
  }
}

void Scheduler::publish_job(const store::Job &job) {
  json::Node node(job_to_json(job));
  events_.publish("job", job.id, job.video_id, json::to_string(node.get(), false));
}

void Scheduler::launch(store::Job job) {
  auto now = g_get_real_time();
  if (job.attempts >= job.max_attempts) {
    // Only a job that was running when the server died gets here: do not let it kill the server forever.
    job.state = store::JobState::Failed;
    job.finished = now;
    job.error_code = error_code_name(ErrorCode::Internal);
    job.error = "the job was interrupted " + std::to_string(job.attempts) +
                " times (the server stopped or crashed while it ran); giving up";
    store_.update_job(job);
    publish_job(job);
    if (metrics_) {
      metrics_->job_failed(job.pipeline, job.error_code);
      metrics_->job_ended(job.pipeline, "failed");
    }
    return;
  }
  // Waiting since it was queued, or since its retry was due.
  const std::int64_t ready = std::max(job.created, job.not_before);
  job.state = store::JobState::Running;
  job.attempts += 1;
  job.started = now;
  job.finished = 0;
  job.not_before = 0;
  store_.update_job(job);

  auto a = std::make_unique<Active>();
  a->job = job;
  a->out = layout_.output_dir(job.video_id, job.pipeline);
  a->work = work_dir_for(a->out);
  std::string job_id = job.id;
  active_[job_id] = std::move(a);
  publish_job(job);
  if (metrics_)
    metrics_->job_started(job.pipeline, ready > 0 ? static_cast<double>(now - ready) / G_USEC_PER_SEC : 0.0);
  GST_INFO("job %s (video %s, %s): attempt %d of %d", job.id.c_str(), job.video_id.c_str(), job.pipeline.c_str(),
           job.attempts, job.max_attempts);

  TranscodeRequest req;
  req.input = find_source(layout_.video_dir(job.video_id));
  req.pipeline = job.pipeline;
  req.encoder = job.encoder;
  req.ladder = job.ladder;
  try {
    json::Node params = json::parse(job.params_json.empty() ? "{}" : job.params_json, "job parameters");
    JsonObject *obj = json::require_object(params.get(), "job parameters");
    g_autoptr(GList) members = json_object_get_members(obj);
    for (GList *m = members; m; m = m->next) {
      auto name = static_cast<const char *>(m->data);
      req.params[name] = json::get_string(obj, name, "job parameters");
    }
  } catch (const Error &e) {
    finished(job_id, e, {});
    return;
  }
  if (req.input.empty()) {
    finished(job_id, Error(ErrorCode::NotFound, "the uploaded file of video " + job.video_id + " is missing"), {});
    return;
  }
  // The upload was probed when it arrived, and its probe kept in the catalog: the job plans with it, and probes
  // the file again only if it changed since (see TranscodeRequest::probed).
  try {
    if (auto v = store_.video(job.video_id); v && !v->probe_json.empty()) {
      req.probed = media::probe_from_json(v->probe_json, "the stored probe of video " + job.video_id);
      req.probed_at = v->created;
    }
  } catch (const Error &e) {
    GST_INFO("job %s: the file is probed again: %s", job_id.c_str(), e.what());
  }

  // Planning may probe the file and test-encode: keep it off the main loop.
  std::string work = active_[job_id]->work;
  auto alive = alive_;
  const pipeline::EncoderTable *encoders = &encoders_;
  try {
    std::thread([this, alive, req, work, job_id, encoders] {
      std::shared_ptr<TranscodePlan> plan;
      std::optional<Error> err;
      try {
        plan = std::make_shared<TranscodePlan>(plan_transcode(req, work, *encoders));
      } catch (const Error &e) {
        err = e;
      } catch (const std::exception &e) {
        err = Error(ErrorCode::Internal, e.what());
      }
      post([this, alive, job_id, plan, err] {
        if (*alive)
          guarded(job_id, "starting the job", [&] { planned(job_id, plan, err); });
      });
    }).detach();
  } catch (const std::system_error &e) {
    finished(job_id, Error(ErrorCode::Internal, std::string("cannot plan the job: ") + e.what()), {});
  }
}

void Scheduler::guarded(const std::string &job_id, const char *what, const std::function<void()> &fn) noexcept {
  std::string message;
  try {
    fn();
    return;
  } catch (const std::exception &e) {
    message = e.what();
  } catch (...) {
    message = "an unknown exception";
  }
  g_warning("%s failed%s%s: %s", what, job_id.empty() ? "" : " for job ", job_id.c_str(), message.c_str());
  if (job_id.empty() || !active_.count(job_id))
    return;
  try {
    finished(job_id, Error(ErrorCode::Internal, std::string(what) + " failed: " + message), {});
  } catch (const std::exception &e) {
    g_warning("cannot end job %s: %s", job_id.c_str(), e.what());
  }
}

void Scheduler::planned(const std::string &job_id, std::shared_ptr<TranscodePlan> plan, std::optional<Error> err) {
  auto it = active_.find(job_id);
  if (it == active_.end())
    return;
  Active &a = *it->second;
  if (a.cancel_requested || a.shutdown_requested) {
    finished(job_id, Error(ErrorCode::Canceled, "canceled"), {});
    return;
  }
  if (err) {
    finished(job_id, err, {});
    return;
  }
  a.transcode = std::make_unique<Transcode>(std::move(*plan), a.out, a.work, true);
  // The callbacks run inside the runner's bus watch, which fails the run when one of them throws.
  try {
    a.transcode->start([this, job_id](const Progress &p) { progressed(job_id, p); },
                       [this, job_id](std::optional<Error> e, const TranscodeResult &res) {
                         // Called from inside the runner: finish from a fresh main-loop iteration, when it is
                         // safe to destroy the transcode.
                         auto alive = alive_;
                         post([this, alive, job_id, e, res] {
                           if (*alive)
                             guarded(job_id, "ending the job", [&] { finished(job_id, e, res); });
                         });
                       },
                       [this, job_id] {
                         // hlssink2 has listed a new segment: the live master may be complete now.
                         if (auto i = active_.find(job_id); i != active_.end())
                           write_live_master(*i->second);
                       });
  } catch (const Error &e) {
    finished(job_id, e, {});
  } catch (const std::exception &e) {
    finished(job_id, Error(ErrorCode::Internal, e.what()), {});
  }
}

void Scheduler::progressed(const std::string &job_id, const Progress &p) {
  auto i = active_.find(job_id);
  if (i == active_.end())
    return;
  i->second->progress = p;
  write_live_master(*i->second);
  g_autoptr(JsonObject) o = json_object_new();
  json_object_set_string_member(o, "job", job_id.c_str());
  json_object_set_string_member(o, "video", i->second->job.video_id.c_str());
  set_progress_members(o, p);
  json::Node n(json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o))));
  events_.publish("progress", job_id, i->second->job.video_id, json::to_string(n.get(), false));
}

void Scheduler::announce_playable(const Active &a) {
  // Tell pages and players that the video can be watched now, while it is still being transcoded.
  g_autoptr(JsonObject) o = json_object_new();
  json_object_set_string_member(o, "id", a.job.video_id.c_str());
  json_object_set_string_member(o, "action", "playable");
  json_object_set_string_member(o, "job", a.job.id.c_str());
  if (url_speller_) {
    const std::string master(pipeline::output_info(a.transcode->plan().description.output).master);
    json_object_set_string_member(o, "hls", url_speller_(a.job.video_id, a.job.pipeline, master).c_str());
  }
  json::Node n(json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o))));
  // A video event: streams filtered to the video get it, streams filtered to a job do not.
  events_.publish("video", "", a.job.video_id, json::to_string(n.get(), false));
}

void Scheduler::write_live_master(Active &a) {
  // The master of a running job appears once every media playlist it lists exists (each has its
  // first segment): a player that finds the master never meets a 404 for a rendition.
  if (a.master_written || !a.transcode || a.transcode->finishing())
    return;
  const auto &plan = a.transcode->plan();
  const pipeline::OutputInfo &output = pipeline::output_info(plan.description.output);
  const std::string master(output.master);
  if (output.kind == pipeline::OutputKind::Cmaf) {
    // The transcode splits what is complete and writes the master itself; not while a finished
    // package is still what is served (see live_dir()).
    if (fs::exists(fs::join(a.out, master)))
      return;
    if (a.transcode->update_live()) {
      a.master_written = true;
      announce_playable(a);
    }
    return;
  }
  if (output.kind != pipeline::OutputKind::Hls)
    return;
  std::vector<std::string> names;
  if (plan.render.has_video)
    for (const auto &r : plan.render.renditions)
      names.push_back(r.name);
  else
    names.push_back("audio");
  for (const auto &n : names)
    if (!fs::exists(fs::join(a.work, n + ".m3u8")))
      return;
  try {
    fs::write_atomic(fs::join(a.work, master), interim_master(plan));
    a.master_written = true;
    announce_playable(a);
  } catch (const Error &e) {
    GST_WARNING("cannot write the live master playlist of job %s: %s", a.job.id.c_str(), e.what());
  }
}

void Scheduler::finished(const std::string &job_id, std::optional<Error> err, const TranscodeResult &res) {
  auto it = active_.find(job_id);
  if (it == active_.end())
    return;
  std::unique_ptr<Active> a = std::move(it->second);
  active_.erase(it);
  if (a->transcode)
    a->transcode->cancel(); // no-op when it has finished; stops it when we fail it ourselves
  a->transcode.reset();
  fs::remove_all(a->work);

  store::Job job = a->job;
  auto now = g_get_real_time();
  if (metrics_ && !a->shutdown_requested && job.started > 0)
    metrics_->job_ran(job.pipeline, static_cast<double>(now - job.started) / G_USEC_PER_SEC);
  if (metrics_ && err && (err->code() == ErrorCode::Pipeline || err->code() == ErrorCode::BadInput) &&
      !a->cancel_requested && !a->shutdown_requested)
    metrics_->pipeline_error(job.pipeline, metrics::failing_element(err->what()));
  if (a->shutdown_requested) {
    // Stopped by a shutdown: not the job's fault, so the attempt does not count.
    job.state = store::JobState::Queued;
    job.attempts = std::max(0, job.attempts - 1);
    job.started = 0;
    GST_INFO("job %s stopped by the shutdown: queued again", job.id.c_str());
  } else if (!err) {
    job.state = store::JobState::Succeeded;
    job.finished = now;
    job.error.clear();
    job.error_code.clear();
    json::Node r(result_to_json(res));
    // The result's paths are server paths; clients get URLs instead.
    JsonObject *ro = json_node_get_object(r.get());
    json_object_remove_member(ro, "out");
    json_object_remove_member(ro, "master");
    job.result_json = json::to_string(r.get(), false);
    GST_INFO("job %s succeeded: %s", job.id.c_str(), job.result_json.c_str());
    if (metrics_) {
      metrics_->job_ended(job.pipeline, "succeeded");
      if (a->progress && a->progress->speed > 0)
        metrics_->transcode_speed(job.pipeline, a->progress->speed);
    }
  } else if (err->code() == ErrorCode::Canceled || a->cancel_requested) {
    job.state = store::JobState::Canceled;
    job.finished = now;
    job.error_code = error_code_name(ErrorCode::Canceled);
    job.error = "canceled on request";
    if (metrics_)
      metrics_->job_ended(job.pipeline, "canceled");
  } else {
    job.error_code = error_code_name(err->code());
    job.error = err->what();
    if (is_no_space(*err)) {
      // The disk is full: not the job's fault, and gone once space is freed. Retried without an attempt limit (each
      // such failure adds the attempt it took), after a longer delay, doubled up to 16 times.
      job.error_code = error_code_name(ErrorCode::NoSpace);
      std::int64_t delay = static_cast<std::int64_t>(config_.no_space_retry_delay_s)
                           << std::clamp(job.attempts - 1, 0, kMaxNoSpaceShift);
      job.max_attempts = std::max(job.max_attempts, job.attempts + 1);
      job.state = store::JobState::Queued;
      job.not_before = now + delay * G_USEC_PER_SEC;
      job.started = 0;
      g_message("job %s failed for lack of disk space (attempt %d), trying again in %" G_GINT64_FORMAT " s: %s",
                job.id.c_str(), job.attempts, delay, err->what());
      if (metrics_)
        metrics_->job_retried(job.pipeline, job.error_code);
    } else if (is_transient(err->code()) && job.attempts < job.max_attempts) {
      std::int64_t delay = static_cast<std::int64_t>(config_.retry_delay_s) << std::min(job.attempts - 1, 16);
      job.state = store::JobState::Queued;
      job.not_before = now + delay * G_USEC_PER_SEC;
      job.started = 0;
      g_message("job %s failed (attempt %d of %d), retrying in %" G_GINT64_FORMAT " s: %s", job.id.c_str(),
                job.attempts, job.max_attempts, delay, err->what());
      if (metrics_)
        metrics_->job_retried(job.pipeline, job.error_code);
    } else {
      job.state = store::JobState::Failed;
      job.finished = now;
      g_message("job %s failed: %s", job.id.c_str(), err->what());
      if (metrics_) {
        metrics_->job_failed(job.pipeline, job.error_code);
        metrics_->job_ended(job.pipeline, "failed");
      }
    }
  }
  a->job = job;
  a->progress.reset();
  // Announced once written: a published package whose job's end the catalog refuses stays, and the job ends
  // succeeded when its state lands (see save()), never by running it again.
  save(job);
  for (auto &fn : a->on_stopped)
    fn();
  if (shutting_down_) {
    if (active_.empty() && on_shutdown_) {
      // A last try for states the catalog refused; those still refused are of jobs left running, queued again at
      // the next start.
      if (!unsaved_.empty())
        retry_saves();
      auto fn = std::move(on_shutdown_);
      on_shutdown_ = nullptr;
      fn();
    }
    return;
  }
  pump();
}

void Scheduler::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  if (timer_) {
    g_source_remove(timer_);
    timer_ = 0;
  }
  if (active_.empty()) {
    done();
    return;
  }
  on_shutdown_ = std::move(done);
  std::vector<std::string> ids;
  for (auto &[id, a] : active_) {
    a->shutdown_requested = true;
    ids.push_back(id);
  }
  for (const auto &id : ids) {
    auto it = active_.find(id);
    if (it != active_.end() && it->second->transcode)
      it->second->transcode->cancel();
  }
}

void Scheduler::validate(const JobSpec &spec) const {
  pipeline::Description d;
  try {
    d = pipeline::find_description(spec.pipeline);
  } catch (const Error &e) {
    throw Error(ErrorCode::Invalid, "pipeline: " + std::string(e.what()));
  }
  pipeline::resolve(d.params, spec.params);
  if (!spec.ladder.empty()) {
    try {
      media::parse_ladder(spec.ladder);
    } catch (const Error &e) {
      throw Error(ErrorCode::Invalid, "ladder: " + std::string(e.what()));
    }
  }
  try {
    encoders_.resolve(spec.encoder);
  } catch (const Error &e) {
    throw Error(ErrorCode::Invalid, "encoder: " + std::string(e.what()));
  }
}

JobSpec Scheduler::with_defaults(JobSpec spec) const {
  if (spec.pipeline.empty())
    spec.pipeline = config_.pipeline;
  if (spec.encoder.empty())
    spec.encoder = config_.encoder;
  return spec;
}

bool Scheduler::queue_full() {
  return store_.count_jobs(store::JobState::Queued) + store_.count_jobs(store::JobState::Running) >=
         config_.queue_limit;
}

store::Job Scheduler::enqueue(const std::string &video_id, const JobSpec &spec) {
  store::Job job;
  job.id = store::new_id();
  job.video_id = video_id;
  job.pipeline = spec.pipeline;
  job.encoder = spec.encoder;
  job.ladder = spec.ladder;
  JsonObject *o = json_object_new();
  for (const auto &[k, v] : spec.params)
    json_object_set_string_member(o, k.c_str(), v.c_str());
  json::Node n(json::object_node(o));
  job.params_json = json::to_string(n.get(), false);
  job.priority = spec.priority;
  job.max_attempts = config_.max_attempts;
  job.created = g_get_real_time();
  job.state = store::JobState::Queued;
  job.seq = store_.add_job(job);
  publish_job(job);
  post([this, alive = alive_] {
    if (*alive)
      guarded("", "running the job queue", [this] { pump(); });
  });
  return job;
}

bool Scheduler::cancel(const std::string &job_id) {
  auto it = active_.find(job_id);
  if (it != active_.end()) {
    Active &a = *it->second;
    a.cancel_requested = true;
    if (a.transcode)
      a.transcode->cancel(); // planned() cancels a job that is still being planned
    return true;
  }
  // A job waiting for a retry whose state the catalog refused is what the scheduler knows of it.
  std::optional<store::Job> job;
  if (auto u = unsaved_.find(job_id); u != unsaved_.end())
    job = u->second;
  else
    job = store_.job(job_id);
  if (!job || store::is_terminal(job->state))
    return false;
  job->state = store::JobState::Canceled;
  job->finished = g_get_real_time();
  job->error_code = error_code_name(ErrorCode::Canceled);
  job->error = "canceled on request";
  // Written now or not at all: a client that asked is told when the catalog refuses (Io, 503), and the job is left
  // as it was.
  store_.update_job(*job);
  unsaved_.erase(job_id);
  publish_job(*job);
  if (metrics_)
    metrics_->job_ended(job->pipeline, "canceled");
  return true;
}

bool Scheduler::has_unfinished_job(const std::string &video_id, const std::string &pipeline) {
  store::JobFilter f;
  f.video_id = video_id;
  for (const auto &j : store_.jobs(f))
    if (!store::is_terminal(state_of(j)) && (pipeline.empty() || j.pipeline == pipeline))
      return true;
  return false;
}

std::optional<pipeline::OutputKind> Scheduler::output_kind(const std::string &pipeline) const {
  if (auto it = output_kinds_.find(pipeline); it != output_kinds_.end())
    return it->second;
  pipeline::OutputKind kind;
  try {
    kind = pipeline::find_description(pipeline).output;
  } catch (const Error &) {
    return std::nullopt; // not remembered: the description may be added later
  }
  output_kinds_[pipeline] = kind;
  return kind;
}

std::vector<store::Job> Scheduler::enqueue_profile(const std::string &video_id, const JobSpec &spec, bool has_picture) {
  std::vector<store::Job> jobs;
  jobs.push_back(enqueue(video_id, spec));
  if (!has_picture)
    return jobs;
  for (const auto &extra : config_.extras) {
    if (extra == spec.pipeline)
      continue;
    JobSpec e;
    e.pipeline = extra;
    e.priority = spec.priority;
    e = with_defaults(e);
    try {
      validate(e);
    } catch (const Error &err) {
      g_warning("[jobs] extras: %s is skipped: %s", extra.c_str(), err.what());
      continue;
    }
    jobs.push_back(enqueue(video_id, e));
  }
  return jobs;
}

void Scheduler::stop_video(const std::string &video_id, std::function<void()> done) {
  store::JobFilter f;
  f.video_id = video_id;
  for (const auto &j : store_.jobs(f)) {
    if (state_of(j) != store::JobState::Queued)
      continue;
    try {
      cancel(j.id);
    } catch (const Error &e) {
      // The catalog refuses the cancel: it is kept and written again until it lands (no job starts meanwhile),
      // so that stopping a video's jobs never stops halfway, with a caller waiting for `done`.
      auto u = unsaved_.find(j.id);
      store::Job c = u == unsaved_.end() ? j : u->second;
      c.state = store::JobState::Canceled;
      c.finished = g_get_real_time();
      c.error_code = error_code_name(ErrorCode::Canceled);
      c.error = "canceled on request";
      save(c);
      if (metrics_)
        metrics_->job_ended(c.pipeline, "canceled");
    }
  }
  std::vector<Active *> running;
  for (auto &[id, a] : active_)
    if (a->job.video_id == video_id)
      running.push_back(a.get());
  if (running.empty()) {
    done();
    return;
  }
  auto remaining = std::make_shared<int>(static_cast<int>(running.size()));
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  for (Active *a : running) {
    a->on_stopped.push_back([remaining, shared_done] {
      if (--*remaining == 0)
        (*shared_done)();
    });
    a->cancel_requested = true;
    if (a->transcode)
      a->transcode->cancel();
  }
}

std::optional<std::string> Scheduler::live_dir(const std::string &video_id, const std::string &pipeline) const {
  for (const auto &[id, a] : active_)
    if (a->job.video_id == video_id && a->job.pipeline == pipeline && a->transcode) {
      // Streaming outputs (hls, cmaf) can be watched while they are written; others are shown once finished.
      // A cmaf job that replaces a finished package leaves that one served (HLS and DASH) until the new
      // one is done.
      const pipeline::OutputInfo &output = pipeline::output_info(a->transcode->plan().description.output);
      if (!output.streaming)
        return std::nullopt;
      if (output.kind == pipeline::OutputKind::Cmaf && fs::exists(fs::join(a->out, std::string(output.master))))
        return std::nullopt;
      // Being finished: served from the working folder until it is renamed into place.
      if (a->transcode->finishing() && !fs::exists(a->work))
        return std::nullopt;
      return a->work;
    }
  return std::nullopt;
}

JsonNode *Scheduler::job_to_json(const store::Job &job) const {
  g_autoptr(JsonObject) o = json_object_new();
  auto set_time = [&](const char *name, std::int64_t us) {
    if (us > 0)
      json_object_set_string_member(o, name, iso_time(us).c_str());
    else
      json_object_set_null_member(o, name);
  };
  json_object_set_string_member(o, "id", job.id.c_str());
  json_object_set_string_member(o, "video_id", job.video_id.c_str());
  json_object_set_string_member(o, "pipeline", job.pipeline.c_str());
  // What the pipeline makes (hls, cmaf, poster, storyboard, preview): clients tell the streaming job
  // of a video from its extras by it.
  if (auto kind = output_kind(job.pipeline))
    json_object_set_string_member(o, "output", pipeline::output_name(*kind).c_str());
  else
    json_object_set_null_member(o, "output");
  json_object_set_string_member(o, "encoder", job.encoder.c_str());
  json_object_set_string_member(o, "ladder", job.ladder.c_str());
  try {
    json::Node p = json::parse(job.params_json.empty() ? "{}" : job.params_json, "params");
    json_object_set_member(o, "params", p.release());
  } catch (const Error &) {
    json_object_set_object_member(o, "params", json_object_new());
  }
  json_object_set_string_member(o, "state", store::job_state_name(job.state));
  json_object_set_int_member(o, "priority", job.priority);
  json_object_set_int_member(o, "attempts", job.attempts);
  json_object_set_int_member(o, "max_attempts", job.max_attempts);
  set_time("created", job.created);
  set_time("started", job.started);
  set_time("finished", job.finished);
  set_time("next_attempt", job.state == store::JobState::Queued ? job.not_before : 0);

  const Progress *p = nullptr;
  if (auto it = active_.find(job.id); it != active_.end() && it->second->progress)
    p = &*it->second->progress;
  if (p) {
    JsonObject *po = json_object_new();
    set_progress_members(po, *p);
    json_object_set_object_member(o, "progress", po);
  } else if (job.state == store::JobState::Succeeded) {
    JsonObject *po = json_object_new();
    json_object_set_int_member(po, "percent", 100);
    json_object_set_object_member(o, "progress", po);
  } else {
    json_object_set_null_member(o, "progress");
  }
  if (!job.error.empty() && job.state != store::JobState::Succeeded) {
    JsonObject *eo = json_object_new();
    json_object_set_string_member(eo, "code", job.error_code.c_str());
    json_object_set_string_member(eo, "message", job.error.c_str());
    json_object_set_object_member(o, "error", eo);
  } else {
    json_object_set_null_member(o, "error");
  }
  if (!job.result_json.empty()) {
    try {
      json::Node r = json::parse(job.result_json, "result");
      json_object_set_member(o, "result", r.release());
    } catch (const Error &) {
      json_object_set_null_member(o, "result");
    }
  } else {
    json_object_set_null_member(o, "result");
  }
  return json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o)));
}

} // namespace sluice::jobs
