// SPDX-License-Identifier: LGPL-2.1-or-later
// Recovery: what a stopped or crashed server left behind, and job states the catalog refused, written again.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "jobs/transcode.h"

#include <algorithm>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

bool has_running_job(store::Store &store, const std::string &video_id) {
  store::JobFilter f;
  f.video_id = video_id;
  f.state = store::JobState::Running;
  f.limit = 1;
  return !store.jobs(f).empty();
}

// Rewriting a job's state the catalog refused: first after this, doubled each time, up to kMaxSaveRetryMs.
constexpr guint kFirstSaveRetryMs = 500;
constexpr guint kMaxSaveRetryMs = 10000;

} // namespace

void Scheduler::recover() {
  fs::make_dirs(layout_.videos_dir());
  fs::make_dirs(layout_.uploads_dir());
  // A worker sharing the catalog owns none of the files: uploads arrive and videos are made by api processes, and
  // other workers' jobs write their working folders meanwhile.
  if (shared_ && config_.role == "worker")
    return;
  // Uploads that never got an answer: nothing was promised for them.
  for (const auto &name : fs::list_dir(layout_.uploads_dir()))
    fs::remove_all(fs::join(layout_.uploads_dir(), name));
  // A catalog only this process uses: every running job was this process's, and stopped with it. A shared one: its
  // running jobs may run elsewhere; those whose lease runs out are taken back by the heartbeat (any process).
  if (!shared_) {
    auto requeued = store_.requeue_running();
    for (const auto &j : requeued)
      g_message("job %s of video %s was running when the server stopped: queued again", j.id.c_str(),
                j.video_id.c_str());
  }
  for (const auto &vid : fs::list_dir(layout_.videos_dir())) {
    std::string dir = layout_.video_dir(vid);
    if (!store::is_id(vid) || !store_.video(vid)) {
      // A folder without a catalog row: an upload cut between its move and its insert.
      g_message("removing %s: no such video in the catalog", dir.c_str());
      fs::remove_all(dir);
      continue;
    }
    if (shared_ && has_running_job(store_, vid))
      continue; // its working folders may be a worker's
    for (const auto &name : fs::list_dir(dir)) {
      if (g_str_has_suffix(name.c_str(), ".partial") || g_str_has_suffix(name.c_str(), ".old")) {
        std::string base = name.substr(0, name.rfind('.'));
        recover_output(fs::join(dir, base));
      } else if (auto at = name.find(".partial."); at != std::string::npos) {
        fs::remove_all(fs::join(dir, name)); // a claim's own working folder (a shared catalog)
      }
    }
  }
}

bool Scheduler::write_state(const store::Job &job, bool fenced) {
  if (!fenced) {
    store_.update_job(job);
    return true;
  }
  if (store_.finish_job(job))
    return true;
  g_message("job %s: its lease was lost (claimed again or canceled elsewhere): its state (%s) is not written",
            job.id.c_str(), store::job_state_name(job.state));
  return false;
}

bool Scheduler::save(const store::Job &job, bool fenced) {
  unsaved_.erase(job.id);
  unsaved_fenced_.erase(job.id);
  try {
    if (!write_state(job, fenced))
      return false;
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
    if (fenced)
      unsaved_fenced_.insert(job.id);
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
      if (!write_state(job, unsaved_fenced_.count(id) > 0)) {
        unsaved_fenced_.erase(id);
        continue;
      }
      unsaved_fenced_.erase(id);
      g_message("job %s: its state (%s) is written to the catalog at last", id.c_str(),
                store::job_state_name(job.state));
      publish_job(job);
    } catch (const Error &e) {
      if (e.code() == ErrorCode::NotFound) {
        unsaved_fenced_.erase(id);
        continue; // its video was deleted meanwhile
      }
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

} // namespace sluice::jobs
