// SPDX-License-Identifier: LGPL-2.1-or-later
// Leases of claimed jobs: renewed from the heartbeat, lost ones stopped, expired ones taken back; the worker's row.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"

#include <filesystem>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

// A worker silent for this long is forgotten (its row removed by the next heartbeat of any worker).
constexpr std::int64_t kForgetWorkerUs = 24LL * 3600 * G_USEC_PER_SEC;

} // namespace

void Scheduler::register_worker(std::int64_t now) {
  store::Worker w;
  w.name = worker_name_;
  w.role = config_.role;
  w.started = started_at_;
  w.heartbeat = now;
  w.encoders = runnable_encoders_;
  w.concurrent = config_.slots();
  store_.beat_worker(w, now - kForgetWorkerUs);
}

void Scheduler::heartbeat() {
  const std::int64_t now = g_get_real_time();
  const std::int64_t lease = static_cast<std::int64_t>(config_.lease_s) * G_USEC_PER_SEC;
  const std::int64_t beat = static_cast<std::int64_t>(config_.heartbeat_s) * G_USEC_PER_SEC;
  if (runs_jobs() && !shutting_down_) {
    try {
      register_worker(now);
    } catch (const Error &e) {
      GST_WARNING("cannot refresh worker %s in the catalog: %s", worker_name_.c_str(), e.what());
    }
  }
  std::vector<std::string> lost, unrenewed;
  for (auto &[id, a] : active_) {
    if (a->lease_lost)
      continue;
    try {
      if (store_.renew_lease(id, a->job.token, now + lease))
        a->leased_until = now + lease;
      else
        lost.push_back(id);
    } catch (const Error &e) {
      // The catalog cannot be reached: the lease holds until it runs out. A job is stopped a heartbeat before that,
      // so that it never runs on while another process may claim it.
      GST_WARNING("cannot renew the lease of job %s: %s", id.c_str(), e.what());
      if (now + beat >= a->leased_until)
        unrenewed.push_back(id);
    }
  }
  for (const auto &id : lost)
    lose_lease(id, "another claim or a cancel holds it");
  for (const auto &id : unrenewed)
    lose_lease(id, "its lease could not be renewed before it ran out");
  // Jobs of workers that died (or lost the catalog) go back to the queue, or fail with their attempts spent.
  try {
    for (const auto &j : store_.requeue_expired(now)) {
      g_message("job %s of video %s: the lease of worker %s ran out: %s", j.id.c_str(), j.video_id.c_str(),
                j.worker.c_str(), j.state == store::JobState::Queued ? "queued again" : "failed, attempts spent");
      publish_job(j);
      if (metrics_ && j.state == store::JobState::Failed) {
        metrics_->job_failed(j.pipeline, j.error_code);
        metrics_->job_ended(j.pipeline, "failed");
      }
    }
  } catch (const Error &e) {
    GST_WARNING("cannot take back jobs whose lease ran out: %s", e.what());
  }
  if (!lost.empty() || !unrenewed.empty())
    pump();
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
