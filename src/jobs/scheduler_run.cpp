// SPDX-License-Identifier: LGPL-2.1-or-later
// Running jobs: claiming queued jobs that fit the free capacity, planning them off the main loop, running them and
// ending each one, with its retry.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "core/json.h"
#include "core/mainloop.h"
#include "jobs/stored.h"
#include "media/probe_json.h"
#include "pipeline/description.h"

#include <algorithm>
#include <system_error>
#include <thread>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

constexpr const char *kSourceName = "source";
// After a job's start could not be written, no job starts for this long at first (doubled up to the maximum).
constexpr int kMaxLaunchBackoffS = 30;
// A job that failed for lack of space waits at most this many times [jobs] no-space-retry-delay (as a shift).
constexpr int kMaxNoSpaceShift = 4;

std::string find_source(const std::string &video_dir) {
  if (!fs::is_dir(video_dir))
    return {};
  for (const auto &name : fs::list_dir(video_dir))
    if (name == kSourceName || g_str_has_prefix(name.c_str(), (std::string(kSourceName) + ".").c_str()))
      return fs::join(video_dir, name);
  return {};
}

// The parameters of a job (a JSON object of strings). Throws sluice::Error.
std::map<std::string, std::string> job_params(const store::Job &job) {
  std::map<std::string, std::string> params;
  json::Node node = json::parse(job.params_json.empty() ? "{}" : job.params_json, "job parameters");
  JsonObject *obj = json::require_object(node.get(), "job parameters");
  g_autoptr(GList) members = json_object_get_members(obj);
  for (GList *m = members; m; m = m->next) {
    auto name = static_cast<const char *>(m->data);
    params[name] = json::get_string(obj, name, "job parameters");
  }
  return params;
}

} // namespace

int Scheduler::weight_of(const store::Job &job) const {
  return std::min(job.weight <= 0 ? cores() : job.weight, capacity());
}

int Scheduler::cores() {
  // As the renderer counts them when it spreads a ladder's encoder threads (pipeline::encoder_threads).
  return std::max(1, static_cast<int>(g_get_num_processors()));
}

int Scheduler::used_weight() const {
  int used = 0;
  for (const auto &[id, a] : active_)
    used += weight_of(a->job);
  return used;
}

int Scheduler::free_weight() const {
  return std::max(0, capacity() - used_weight() - reserved_);
}

store::Room Scheduler::reserve_room() {
  store::Room room;
  room.capacity = capacity();
  room.cores = cores();
  room.free = free_weight();
  room.hold_due_before = g_get_real_time() - static_cast<std::int64_t>(config_.hold_after_s) * G_USEC_PER_SEC;
  reserved_ += room.free;
  return room;
}

int Scheduler::pipeline_weight(const std::string &pipeline) const {
  if (auto it = weights_.find(pipeline); it != weights_.end())
    return it->second;
  int weight = 1;
  try {
    weight = pipeline::find_description(pipeline).weight;
  } catch (const Error &) {
    return weight; // not remembered: the description may be added later
  }
  weights_[pipeline] = weight;
  return weight;
}

bool Scheduler::may_claim() const {
  if (shutting_down_ || !runs_jobs())
    return false;
  // A job's start is written before it runs: while the catalog refuses writes, none starts.
  if (!unsaved_.empty() || g_get_real_time() < launch_not_before_)
    return false;
  const int jobs = static_cast<int>(active_.size()) + claims_ending_ + (claiming_ ? 1 : 0);
  return jobs < config_.slots() && free_weight() > 0;
}

void Scheduler::pump() {
  // One claim at a time, on the executor (off the main loop where the catalog is PostgreSQL); the next is asked
  // for once it is back. One statement claims it (running, attempts + 1, leased to this worker, a fresh fencing
  // token): another process sharing the catalog never gets the same job, and it takes the first job whose weight fits
  // the free capacity. A job's end claims the next with it (end_job): this claim is for the room that frees none.
  if (claiming_ || !may_claim())
    return;
  claiming_ = true;
  const store::Room room = reserve_room();
  executor_->run([worker = worker_name_, now = g_get_real_time(),
                  lease = static_cast<std::int64_t>(config_.lease_s) * G_USEC_PER_SEC, encoders = runnable_encoders_,
                  room](store::Store &store) { return store.claim_job(worker, now, lease, encoders, room); },
                 [this, alive = alive_, reserved = room.free](store::Outcome<std::optional<store::Job>> &o) {
                   if (!*alive)
                     return; // a job claimed now is taken back when its lease runs out
                   claiming_ = false;
                   reserved_ -= reserved;
                   guarded("", "running the job queue", [&] { claimed(o); });
                   stop_if_idle();
                 });
}

void Scheduler::claimed(store::Outcome<std::optional<store::Job>> &o) {
  if (o.error) {
    // The claim could not be written (the catalog refuses writes, or is unreachable): no claim is tried for a
    // while, so that a catalog that stays read-only costs a log line now and then, not one a second.
    int backoff = std::min(1 << std::min(launch_failures_, 5), kMaxLaunchBackoffS);
    launch_failures_++;
    launch_not_before_ = g_get_real_time() + backoff * G_USEC_PER_SEC;
    g_warning("cannot start a job (trying again in %d s): %s", backoff, o.error->what());
    return;
  }
  launch_failures_ = 0;
  if (!*o.value)
    return; // the queue is empty: the next claim waits for the timer or a new job
  took(std::move(*o.value));
  pump();
}

void Scheduler::took(std::optional<store::Job> job) {
  if (!job)
    return;
  if (shutting_down_)
    put_back(std::move(*job));
  else
    launch(std::move(*job));
}

void Scheduler::put_back(store::Job job) {
  // Claimed while the server began to stop: back to the queue as it was (its claim not counted), written on the
  // executor; the shutdown waits for it.
  job.state = store::JobState::Queued;
  job.attempts -= 1;
  job.started = 0;
  writes_++;
  executor_->run([job](store::Store &store) { return store.finish_job(job); },
                 [this, alive = alive_, id = job.id](store::Outcome<bool> &o) {
                   if (!*alive)
                     return;
                   writes_--;
                   if (o.error)
                     g_warning("cannot put job %s back in the queue (its lease will run out): %s", id.c_str(),
                               o.error->what());
                   stop_if_idle();
                 });
}

void Scheduler::give_up(store::Job job, std::int64_t now) {
  // Only a job that was running when the server died gets here: do not let it kill the server forever.
  job.state = store::JobState::Failed;
  job.finished = now;
  job.error_code = error_code_name(ErrorCode::Internal);
  job.error = "the job was interrupted " + std::to_string(job.attempts) +
              " times (the server stopped or crashed while it ran); giving up";
  if (metrics_) {
    metrics_->job_failed(job.pipeline, job.error_code);
    metrics_->job_ended(job.pipeline, "failed");
  }
  auto a = std::make_unique<Active>();
  a->job = std::move(job);
  end_job(std::move(a));
}

void Scheduler::launch(store::Job job) {
  // Claimed: running, its attempt counted, its start written.
  const std::int64_t now = job.started;
  if (job.attempts > job.max_attempts) {
    // Requeued by a restart with its attempts spent (requeue_running keeps them): this claim does not count.
    job.attempts -= 1;
    give_up(std::move(job), now);
    return;
  }
  // Waiting since it was queued, or since its retry was due (the claim leaves not_before as it was).
  const std::int64_t ready = std::max(job.created, job.not_before);
  job.not_before = 0;

  auto a = std::make_unique<Active>();
  a->job = job;
  a->leased_until = job.leased_until;
  a->out = layout_.output_dir(job.video_id, job.pipeline);
  a->work = claim_work_dir(job, a->out);
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
    req.params = job_params(job);
  } catch (const Error &e) {
    finished(job_id, e, {});
    return;
  }
  if (req.input.empty() && storage_) // another machine took the upload: fetched from storage while planning
    req.fetch_input = source_fetcher(*storage_, layout_.video_dir(job.video_id), job.video_id);
  if (req.input.empty() && !req.fetch_input) {
    finished(job_id, Error(ErrorCode::NotFound, "the uploaded file of video " + job.video_id + " is missing"), {});
    return;
  }
  // The upload was probed when it arrived, and its probe kept in the catalog: the job plans with it, and probes
  // the file again only if it changed since (see TranscodeRequest::probed). The video's row is read on the executor
  // (off the main loop where the catalog is PostgreSQL); a row that cannot be read only means probing again.
  executor_->run(
      [video_id = job.video_id](store::Store &store) { return store.video(video_id); },
      [this, alive = alive_, job_id, req = std::move(req)](store::Outcome<std::optional<store::Video>> &o) mutable {
        if (!*alive || !active_.count(job_id))
          return;
        try {
          if (o.error)
            throw *o.error;
          if (const auto &v = *o.value; v && !v->probe_json.empty()) {
            req.probed = media::probe_from_json(v->probe_json, "the stored probe of video " + v->id);
            req.probed_at = v->created;
          }
        } catch (const Error &e) {
          GST_INFO("job %s: the file is probed again: %s", job_id.c_str(), e.what());
        }
        guarded(job_id, "starting the job", [&] { start_planning(job_id, std::move(req)); });
      });
}

void Scheduler::start_planning(const std::string &job_id, TranscodeRequest req) {
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
  if (storage_) {
    a.transcode->set_publisher(package_publisher(*storage_, a.job));
    if (const auto &output = pipeline::output_info(a.transcode->plan().description.output); output.streaming)
      a.live_upload = std::make_unique<LiveUpload>(*storage_, a.work, std::string(output.master), a.job.video_id,
                                                   a.job.pipeline, a.job.id, a.job.token);
  } else if (shared_) {
    // Several processes share the data folder: the package is renamed into place only while this claim still holds
    // the job (its lease renewed for that moment, from the finishing thread; the PostgreSQL store takes calls from any
    // thread).
    a.transcode->set_fence(
        [&store = store_, id = a.job.id, token = a.job.token, lease_us = config_.lease_s * G_USEC_PER_SEC] {
          try {
            return store.renew_lease(id, token, g_get_real_time() + lease_us);
          } catch (const Error &e) {
            GST_WARNING("job %s: cannot renew its lease before publishing: %s", id.c_str(), e.what());
            return false;
          }
        });
  }
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
                         if (auto i = active_.find(job_id); i != active_.end()) {
                           write_live_master(*i->second);
                           i->second->live_changed();
                         }
                       });
  } catch (const Error &e) {
    finished(job_id, e, {});
  } catch (const std::exception &e) {
    finished(job_id, Error(ErrorCode::Internal, e.what()), {});
  }
}

void Scheduler::finished(const std::string &job_id, std::optional<Error> err, const TranscodeResult &res) {
  auto it = active_.find(job_id);
  if (it == active_.end())
    return;
  std::unique_ptr<Active> a = std::move(it->second);
  active_.erase(it);
  if (a->live_upload)
    a->live_upload->stop(); // its playlists stay served until the job's end is written (a goes then)
  if (a->transcode)
    a->transcode->cancel(); // no-op when it has finished; stops it when we fail it ourselves
  a->transcode.reset();
  fs::remove_all(a->work);
  if (a->lease_lost) {
    // Canceled or claimed again elsewhere: the catalog's state is someone else's now. Nothing is written or
    // announced.
    g_message("job %s: its lease was lost; this attempt ended and published nothing", job_id.c_str());
    if (storage_)
      discard_package_later(*storage_, res.storage_prefix);
    for (auto &fn : a->on_stopped)
      fn();
    stop_if_idle();
    pump();
    return;
  }

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
    succeed(job, *a, res, now);
  } else if (err->code() == ErrorCode::Canceled || a->cancel_requested) {
    job.state = store::JobState::Canceled;
    job.finished = now;
    job.error_code = error_code_name(ErrorCode::Canceled);
    job.error = "canceled on request";
    if (metrics_)
      metrics_->job_ended(job.pipeline, "canceled");
  } else {
    fail_or_retry(job, *err, now);
  }
  a->job = job;
  a->progress.reset();
  a->package_prefix = res.storage_prefix;
  // Announced once written: a published package whose job's end the catalog refuses stays, and the job ends
  // succeeded when its state lands (see end_job()), never by running it again. Written only while this claim's
  // token holds the job.
  end_job(std::move(a));
}

void Scheduler::succeed(store::Job &job, const Active &a, const TranscodeResult &res, std::int64_t now) {
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
    if (a.progress && a.progress->speed > 0)
      metrics_->transcode_speed(job.pipeline, a.progress->speed);
  }
}

void Scheduler::fail_or_retry(store::Job &job, const Error &err, std::int64_t now) {
  job.error_code = error_code_name(err.code());
  job.error = err.what();
  if (is_no_space(err)) {
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
              job.id.c_str(), job.attempts, delay, err.what());
    if (metrics_)
      metrics_->job_retried(job.pipeline, job.error_code);
  } else if (is_transient(err.code()) && job.attempts < job.max_attempts) {
    std::int64_t delay = static_cast<std::int64_t>(config_.retry_delay_s) << std::min(job.attempts - 1, 16);
    job.state = store::JobState::Queued;
    job.not_before = now + delay * G_USEC_PER_SEC;
    job.started = 0;
    g_message("job %s failed (attempt %d of %d), retrying in %" G_GINT64_FORMAT " s: %s", job.id.c_str(), job.attempts,
              job.max_attempts, delay, err.what());
    if (metrics_)
      metrics_->job_retried(job.pipeline, job.error_code);
  } else {
    job.state = store::JobState::Failed;
    job.finished = now;
    g_message("job %s failed: %s", job.id.c_str(), err.what());
    if (metrics_) {
      metrics_->job_failed(job.pipeline, job.error_code);
      metrics_->job_ended(job.pipeline, "failed");
    }
  }
}

} // namespace sluice::jobs
