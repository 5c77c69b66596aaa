// SPDX-License-Identifier: LGPL-2.1-or-later
// Leases of claimed jobs: renewed from the heartbeat, lost ones stopped, expired ones taken back; the worker's row.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"

#include <filesystem>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

// A worker silent for this long is forgotten (its row removed by the next heartbeat of any worker).
constexpr std::int64_t kForgetWorkerUs = 24LL * 3600 * G_USEC_PER_SEC;

} // namespace

store::Worker Scheduler::worker_row(std::int64_t now) const {
  store::Worker w;
  w.name = worker_name_;
  w.role = config_.role;
  w.started = started_at_;
  w.heartbeat = now;
  w.encoders = runnable_encoders_;
  w.concurrent = config_.slots();
  w.capacity = capacity();
  w.used = used_weight();
  return w;
}

void Scheduler::register_worker(std::int64_t now) {
  store_.beat_worker(worker_row(now), now - kForgetWorkerUs);
}

namespace {

// What one heartbeat's catalog calls came to, on the executor's thread.
struct Beat {
  std::optional<std::string> worker_error;
  std::map<std::string, int> leases; // job id -> 1 renewed, 0 lost (another claim or a cancel holds it)
  std::map<std::string, std::string> lease_errors;
  std::vector<store::Job> requeued;
  std::optional<std::string> requeue_error;
};

} // namespace

std::vector<std::string> Scheduler::not_streaming_pipelines() {
  if (!not_streaming_) {
    std::vector<std::string> names;
    try {
      for (const auto &d : pipeline::list_descriptions())
        if (!pipeline::output_info(d.output).streaming)
          names.push_back(d.name);
    } catch (const Error &e) {
      GST_WARNING("cannot read the pipeline descriptions (a job that fails when its lease ran out is its video's "
                  "failure meanwhile): %s",
                  e.what());
      return {};
    }
    not_streaming_ = std::move(names);
  }
  return *not_streaming_;
}

void Scheduler::heartbeat() {
  // The calls run on the executor (off the main loop where the catalog is PostgreSQL); what they came to is applied
  // here when they are back. A heartbeat still waiting for the catalog is not asked twice.
  if (beating_)
    return;
  const std::int64_t now = g_get_real_time();
  const std::int64_t lease = static_cast<std::int64_t>(config_.lease_s) * G_USEC_PER_SEC;
  const std::int64_t beat = static_cast<std::int64_t>(config_.heartbeat_s) * G_USEC_PER_SEC;
  std::optional<store::Worker> row;
  if (runs_jobs() && !shutting_down_)
    row = worker_row(now);
  std::vector<std::pair<std::string, std::int64_t>> held;
  for (auto &[id, a] : active_)
    if (!a->lease_lost)
      held.emplace_back(id, a->job.token);
  beating_ = true;
  executor_->run(
      [row, held, now, lease, not_streaming = not_streaming_pipelines()](store::Store &store) {
        Beat b;
        if (row) {
          try {
            store.beat_worker(*row, now - kForgetWorkerUs);
          } catch (const Error &e) {
            b.worker_error = e.what();
          }
        }
        for (const auto &[id, token] : held) {
          try {
            b.leases[id] = store.renew_lease(id, token, now + lease) ? 1 : 0;
          } catch (const Error &e) {
            b.lease_errors[id] = e.what();
          }
        }
        try {
          b.requeued = store.requeue_expired(now, not_streaming);
        } catch (const Error &e) {
          b.requeue_error = e.what();
        }
        return b;
      },
      [this, alive = alive_, held, now, lease, beat](store::Outcome<Beat> &o) {
        if (!*alive)
          return;
        beating_ = false;
        if (!o.ok()) {
          // Not even started in time: every lease counts as not renewed.
          o.value.emplace();
          for (const auto &h : held)
            o.value->lease_errors[h.first] = o.error->what();
          o.value->requeue_error = o.error->what();
        }
        guarded("", "the jobs' heartbeat", [&] {
          const Beat &b = *o.value;
          if (b.worker_error)
            GST_WARNING("cannot refresh worker %s in the catalog: %s", worker_name_.c_str(), b.worker_error->c_str());
          std::vector<std::string> lost, unrenewed;
          for (const auto &[id, renewed] : b.leases) {
            auto it = active_.find(id);
            if (it == active_.end())
              continue;
            if (renewed)
              it->second->leased_until = now + lease;
            else
              lost.push_back(id);
          }
          for (const auto &[id, why] : b.lease_errors) {
            // The catalog cannot be reached: the lease holds until it runs out. A job is stopped a heartbeat before
            // that, so that it never runs on while another process may claim it.
            GST_WARNING("cannot renew the lease of job %s: %s", id.c_str(), why.c_str());
            auto it = active_.find(id);
            if (it != active_.end() && now + beat >= it->second->leased_until)
              unrenewed.push_back(id);
          }
          for (const auto &id : lost)
            lose_lease(id, "another claim or a cancel holds it");
          for (const auto &id : unrenewed)
            lose_lease(id, "its lease could not be renewed before it ran out");
          // Jobs of workers that died (or lost the catalog) go back to the queue, or fail with their attempts spent.
          if (b.requeue_error)
            GST_WARNING("cannot take back jobs whose lease ran out: %s", b.requeue_error->c_str());
          for (const auto &j : b.requeued) {
            g_message("job %s of video %s: the lease of worker %s ran out: %s", j.id.c_str(), j.video_id.c_str(),
                      j.worker.c_str(), j.state == store::JobState::Queued ? "queued again" : "failed, attempts spent");
            publish_job(j);
            if (metrics_ && j.state == store::JobState::Failed) {
              metrics_->job_failed(j.pipeline, j.error_code);
              metrics_->job_ended(j.pipeline, "failed");
            }
          }
          if (!lost.empty() || !unrenewed.empty())
            pump();
        });
      });
}

void Scheduler::lose_lease(const std::string &job_id, const char *why) {
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second->lease_lost)
    return;
  Active &a = *it->second;
  g_message("job %s: stopping this attempt: %s", job_id.c_str(), why);
  a.lease_lost = true;
  if (a.transcode)
    a.transcode->cancel(); // planned() ends a job that is still being planned
}

std::string Scheduler::claim_work_dir(const store::Job &job, const std::string &out) const {
  const std::string work = work_dir_for(out);
  if (!shared_)
    return work;
  // The job is this claim's now: what its earlier attempts left (a worker that died) goes. A worker that lost its
  // lease but still runs writes its own folder, and removes it when it stops.
  const std::string dir = layout_.video_dir(job.video_id);
  const std::string base = std::filesystem::path(work).filename().string();
  if (fs::is_dir(dir))
    for (const auto &name : fs::list_dir(dir))
      if (name == base || name.rfind(base + ".", 0) == 0)
        fs::remove_all(fs::join(dir, name));
  return work + "." + std::to_string(job.token);
}

} // namespace sluice::jobs
