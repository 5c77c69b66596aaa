// SPDX-License-Identifier: LGPL-2.1-or-later
// Recovery: what a stopped or crashed server left behind, and job states the catalog refused, written again.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "jobs/transcode.h"

#include <algorithm>

#define GST_CAT_DEFAULT sluice_jobs_debug

namespace sluice::jobs {

namespace {

// Rewriting a job's state the catalog refused: first after this, doubled each time, up to kMaxSaveRetryMs.
constexpr guint kFirstSaveRetryMs = 500;
constexpr guint kMaxSaveRetryMs = 10000;

} // namespace

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

} // namespace sluice::jobs
