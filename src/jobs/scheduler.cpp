// SPDX-License-Identifier: LGPL-2.1-or-later
// The job scheduler: the requests it takes (jobs queued, canceled, a video's jobs stopped), its start and shutdown.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "core/json.h"
#include "core/mainloop.h"
#include "media/ladder.h"
#include "pipeline/description.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <set>

GST_DEBUG_CATEGORY(sluice_jobs_debug);
#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

void init_debug() {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_jobs_debug, "sluice-jobs", 0, "sluice job scheduler"); });
}

// The encoders of the workers heard from within a lease (GET /api/v1/workers calls them alive).
std::set<std::string> live_worker_encoders(store::Store &store, std::int64_t lease_us) {
  std::set<std::string> out;
  const std::int64_t now = g_get_real_time();
  for (const auto &w : store.workers())
    if (now - w.heartbeat < lease_us)
      out.insert(w.encoders.begin(), w.encoders.end());
  return out;
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

Scheduler::Scheduler(store::Store &store, EventHub &events, const ServerConfig &config, Layout layout)
    : store_(store), events_(events), config_(config), layout_(std::move(layout)),
      encoders_(pipeline::EncoderTable::load_default()), own_executor_(std::make_unique<store::Executor>(store)),
      executor_(own_executor_.get()), alive_(std::make_shared<std::atomic<bool>>(true)) {
  init_debug();
  shared_ = store::check_url(config_.store_url) == store::Backend::Postgres;
  worker_name_ = config_.worker_name.empty()
                     ? std::string(g_get_host_name()) + "-" + std::to_string(static_cast<long>(getpid()))
                     : config_.worker_name;
}

Scheduler::~Scheduler() {
  *alive_ = false;
  if (timer_)
    g_source_remove(timer_);
  if (save_timer_)
    g_source_remove(save_timer_);
  if (heartbeat_timer_)
    g_source_remove(heartbeat_timer_);
  if (deletions_)
    events_.unsubscribe(deletions_);
  for (auto &[id, a] : active_)
    if (a->transcode)
      a->transcode->cancel();
}

void Scheduler::start() {
  started_at_ = g_get_real_time();
  recover();
  heartbeat_timer_ = g_timeout_add_seconds(
      static_cast<guint>(config_.heartbeat_s),
      [](gpointer self) -> gboolean {
        auto *s = static_cast<Scheduler *>(self);
        s->guarded("", "the jobs' heartbeat", [s] { s->heartbeat(); });
        return G_SOURCE_CONTINUE;
      },
      this);
  if (!runs_jobs())
    return;
  // Find out once, off the request path, which encoder `auto` means here, and which encoders this worker runs.
  try {
    GST_INFO("auto encoder: %s", encoders_.resolve("auto").c_str());
  } catch (const Error &e) {
    GST_WARNING("no H.264 encoder can run here: %s", e.what());
  }
  for (const auto &p : encoders_.profiles())
    if (encoders_.check(p.name).runs)
      runnable_encoders_.push_back(p.name);
  guarded("", "registering the worker", [this] { register_worker(g_get_real_time()); });
  if (storage_ && config_.role == "worker")
    deletions_ = events_.subscribe([this](const Event &e) {
      if (e.name == "video")
        guarded("", "forgetting a deleted video's files", [this, &e] { forget_deleted_video(e); });
    });
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

void Scheduler::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  if (timer_) {
    g_source_remove(timer_);
    timer_ = 0;
  }
  if (runs_jobs()) {
    try {
      store_.remove_worker(worker_name_);
    } catch (const Error &e) {
      GST_WARNING("cannot remove worker %s from the catalog: %s", worker_name_.c_str(), e.what());
    }
  }
  on_shutdown_ = std::move(done);
  if (active_.empty()) {
    stop_if_idle(); // once the job states and claims on the executor are back
    return;
  }
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

bool Scheduler::check(const JobSpec &spec) const {
  pipeline::Description d;
  try {
    d = pipeline::find_description(spec.pipeline);
  } catch (const Error &e) {
    throw Error(ErrorCode::Invalid, "pipeline: " + std::string(e.what()));
  }
  if (pipeline::output_info(d.output).live)
    throw Error(ErrorCode::Invalid, "pipeline: '" + spec.pipeline + "' is the ladder of live streams (POST /streams)");
  const std::string rate_control = pipeline::rate_control_of(pipeline::resolve(d.params, spec.params));
  if (!spec.ladder.empty()) {
    try {
      media::parse_ladder(spec.ladder);
    } catch (const Error &e) {
      throw Error(ErrorCode::Invalid, "ladder: " + std::string(e.what()));
    }
  }
  // `auto` is whatever H.264 encoder the worker that claims the job has; an api process encodes nothing itself.
  const bool any = spec.encoder.empty() || spec.encoder == "auto";
  if (!runs_jobs() && any)
    return false;
  try {
    if (runs_jobs() || !encoders_.find(spec.encoder)) {
      // An unknown name is refused, saying which encoders exist; so is one without the asked rate control.
      encoders_.resolve(spec.encoder, {}, rate_control);
      return false;
    }
  } catch (const Error &e) {
    if (any || !shared_ || !encoders_.find(spec.encoder))
      throw Error(ErrorCode::Invalid, "encoder: " + std::string(e.what()));
  }
  return true;
}

void Scheduler::check_workers(const JobSpec &spec, const std::set<std::string> &live) const {
  // On a shared catalog the job is claimed by a worker that lists its encoder, on any machine: it is taken when a
  // live one does, even where this process cannot run it.
  if (live.count(spec.encoder))
    return;
  // Why this process cannot run it, when it runs jobs at all (the same resolve that check() made).
  std::string why;
  if (runs_jobs()) {
    try {
      encoders_.resolve(
          spec.encoder, {},
          pipeline::rate_control_of(pipeline::resolve(pipeline::find_description(spec.pipeline).params, spec.params)));
    } catch (const Error &e) {
      why = e.what();
    }
  }
  std::string have;
  for (const auto &name : live)
    have += (have.empty() ? "" : ", ") + name;
  throw Error(ErrorCode::Invalid, "encoder: no live worker can run '" + spec.encoder + "' (live workers run: " +
                                      (have.empty() ? "none" : have) + ")" + (why.empty() ? "" : "; " + why));
}

std::function<std::set<std::string>(store::Store &)> Scheduler::live_encoders_reader() const {
  const std::int64_t lease_us = static_cast<std::int64_t>(config_.lease_s) * G_USEC_PER_SEC;
  return [lease_us](store::Store &s) { return live_worker_encoders(s, lease_us); };
}

void Scheduler::validate(const JobSpec &spec) const {
  if (check(spec))
    check_workers(spec, live_encoders_reader()(store_));
}

JobSpec Scheduler::with_defaults(JobSpec spec) const {
  if (spec.pipeline.empty())
    spec.pipeline = config_.pipeline;
  if (spec.encoder.empty())
    spec.encoder = config_.encoder;
  return spec;
}

int Scheduler::unfinished_jobs(store::Store &s) {
  return s.count_jobs(store::JobState::Queued) + s.count_jobs(store::JobState::Running);
}

bool Scheduler::queue_full(int unfinished) const {
  return unfinished >= config_.queue_limit;
}

store::Job Scheduler::new_job(const std::string &video_id, const JobSpec &spec) const {
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
  job.weight = pipeline_weight(spec.pipeline); // kept in its row: a claim compares it with the free capacity
  job.max_attempts = config_.max_attempts;
  job.created = g_get_real_time();
  job.state = store::JobState::Queued;
  return job;
}

void Scheduler::enqueued(const store::Job &job) {
  publish_job(job);
  post([this, alive = alive_] {
    if (*alive)
      guarded("", "running the job queue", [this] { pump(); });
  });
}

namespace {

store::Job canceled(store::Job job) {
  job.state = store::JobState::Canceled;
  job.finished = g_get_real_time();
  job.error_code = error_code_name(ErrorCode::Canceled);
  job.error = "canceled on request";
  return job;
}

} // namespace

void Scheduler::cancel(const std::string &job_id, std::function<void(store::Outcome<bool> &)> done) {
  auto it = active_.find(job_id);
  if (it != active_.end()) {
    Active &a = *it->second;
    a.cancel_requested = true;
    if (a.transcode)
      a.transcode->cancel(); // planned() cancels a job that is still being planned
    store::Outcome<bool> yes;
    yes.value = true;
    return done(yes);
  }
  // A job waiting for a retry whose state the catalog refused is what the scheduler knows of it.
  std::optional<store::Job> unsaved;
  if (auto u = unsaved_.find(job_id); u != unsaved_.end())
    unsaved = u->second;
  // Written now or not at all: a client that asked is told when the catalog refuses (Io, 503), and the job is left
  // as it was. The row is read and written on the executor; what follows from it is applied on the loop after.
  executor_->run(
      [job_id, unsaved](store::Store &s) -> std::optional<store::Job> {
        std::optional<store::Job> job = unsaved ? unsaved : s.job(job_id);
        if (!job || store::is_terminal(job->state))
          return std::nullopt;
        job = canceled(*job);
        s.update_job(*job);
        return job;
      },
      [this, alive = alive_, job_id, done = std::move(done)](store::Outcome<std::optional<store::Job>> &o) {
        store::Outcome<bool> out;
        out.error = o.error;
        if (o.ok())
          out.value = o.value->has_value();
        if (*alive && o.ok() && *o.value) {
          const store::Job &job = **o.value;
          unsaved_.erase(job_id);
          publish_job(job);
          if (metrics_)
            metrics_->job_ended(job.pipeline, "canceled");
        }
        done(out);
      });
}

bool Scheduler::has_unfinished_job(const std::string &video_id, const std::string &pipeline) {
  store::JobFilter f;
  f.video_id = video_id;
  return has_unfinished_job(store_.jobs(f), pipeline);
}

bool Scheduler::has_unfinished_job(const std::vector<store::Job> &jobs, const std::string &pipeline) const {
  for (const auto &j : jobs)
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

void Scheduler::stop_video(const std::string &video_id, const std::vector<store::Job> &jobs,
                           std::function<void()> done) {
  std::vector<store::Job> queued;
  for (const auto &j : jobs)
    if (state_of(j) == store::JobState::Queued) {
      auto u = unsaved_.find(j.id);
      queued.push_back(canceled(u == unsaved_.end() ? j : u->second));
    }
  // Then the running ones: asked to stop, `done` once the last has.
  auto stop_running = [this, video_id, done = std::move(done)]() mutable {
    std::vector<Active *> running;
    for (auto &[id, a] : active_)
      if (a->job.video_id == video_id)
        running.push_back(a.get());
    if (running.empty())
      return done();
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
  };
  if (queued.empty())
    return stop_running();
  // The queued ones' cancels are written on the executor, then announced on the loop.
  executor_->run(
      [queued](store::Store &s) {
        // After a failure the rest is not tried: each would wait as long for a catalog that is not answering.
        std::vector<bool> written(queued.size(), false);
        for (std::size_t i = 0; i < queued.size(); i++) {
          try {
            s.update_job(queued[i]);
            written[i] = true;
          } catch (const Error &) {
            break;
          }
        }
        return written;
      },
      [this, alive = alive_, queued,
       stop_running = std::move(stop_running)](store::Outcome<std::vector<bool>> &o) mutable {
        if (!*alive)
          return;
        for (std::size_t i = 0; i < queued.size(); i++) {
          const store::Job &c = queued[i];
          if (o.ok() && (*o.value)[i]) {
            unsaved_.erase(c.id);
            publish_job(c);
          } else {
            // The catalog refuses the cancel: it is kept and written again from arm_save_retry()'s timer until it lands
            // (no job starts meanwhile), so that stopping a video's jobs never stops halfway, with a caller waiting for
            // `done`. Not tried again at once: it has just failed, and the loop would wait for it.
            g_warning("cannot write the cancel of job %s to the catalog; trying again until it lands", c.id.c_str());
            unsaved_[c.id] = c;
            arm_save_retry();
          }
          if (metrics_)
            metrics_->job_ended(c.pipeline, "canceled");
        }
        stop_running();
      });
}

void Scheduler::forget_deleted_video(const Event &e) {
  json::Node node = json::parse(e.data, "a video event");
  JsonObject *obj = json::require_object(node.get(), "a video event");
  if (g_strcmp0(json_object_get_string_member_with_default(obj, "action", ""), "deleted") != 0 ||
      !store::is_id(e.video_id))
    return;
  for (const auto &[id, a] : active_)
    if (a->job.video_id == e.video_id)
      return;
  const std::string dir = layout_.video_dir(e.video_id);
  if (!fs::exists(dir))
    return;
  fs::remove_all(dir);
  GST_INFO("video %s deleted: its local files removed", e.video_id.c_str());
}

} // namespace sluice::jobs
