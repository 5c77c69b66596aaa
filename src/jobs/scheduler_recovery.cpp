// SPDX-License-Identifier: LGPL-2.1-or-later
// Recovery and job ends: what a stopped or crashed server left behind; the end of a job written on the store's executor
// (with the next claim), and job states the catalog refused written again.
#include "jobs/scheduler_internal.h"

#include "core/fs.h"
#include "jobs/stored.h"
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

void Scheduler::end_job(std::unique_ptr<Active> a) {
  // Whether this end is its video's state (as Service::view says: a streaming package's job, or one whose description
  // is gone), for the webhook events written with it (video.ready, video.failed).
  const auto kind = output_kind(a->job.pipeline);
  a->job.streaming = !kind || pipeline::output_info(*kind).streaming;
  const store::Job job = a->job;
  // The capacity this job held is free (it left active_): with the end goes the next claim, given that room, in one
  // transaction (one commit per job for a busy worker), unless no claim may be made now.
  const bool claim = may_claim();
  store::Room room;
  if (claim) {
    claims_ending_++;
    room = reserve_room();
  }
  writes_++;
  ending_[job.token] = std::move(a);
  executor_->run(
      [job, claim, room, worker = worker_name_, now = g_get_real_time(),
       lease = static_cast<std::int64_t>(config_.lease_s) * G_USEC_PER_SEC,
       encoders = runnable_encoders_](store::Store &store) {
        if (claim)
          return store.finish_and_claim(job, worker, now, lease, encoders, room);
        store::Store::EndAndClaim e;
        e.ended = store.finish_job(job);
        return e;
      },
      [this, alive = alive_, token = job.token, claim,
       reserved = claim ? room.free : 0](store::Outcome<store::Store::EndAndClaim> &o) {
        if (!*alive)
          return; // a job claimed with it is taken back when its lease runs out
        writes_--;
        if (claim)
          claims_ending_--;
        reserved_ -= reserved;
        guarded("", "writing the end of a job", [&] { ended(token, claim, o); });
        stop_if_idle();
      });
}

void Scheduler::ended(std::int64_t token, bool claim, store::Outcome<store::Store::EndAndClaim> &o) {
  auto it = ending_.find(token);
  if (it == ending_.end())
    return;
  std::unique_ptr<Active> a = std::move(it->second);
  ending_.erase(it);
  const store::Job &job = a->job;
  bool written = false;
  if (o.error && o.error->code() == ErrorCode::NotFound) {
    GST_INFO("job %s is gone from the catalog (its video was deleted): its state is not written", job.id.c_str());
  } else if (o.error) {
    // Neither the end nor a claim made with it landed (one transaction).
    g_warning("cannot write the state of job %s (%s) to the catalog; trying again until it lands: %s", job.id.c_str(),
              store::job_state_name(job.state), o.error->what());
    unsaved_[job.id] = job;
    unsaved_fenced_.insert(job.id);
    arm_save_retry();
  } else if (o.value->ended) {
    written = true;
    // Unless claimed again meanwhile (a retry due at once, by a claim that ran after this write): that start is
    // announced already, and this older state must not follow it.
    if (!active_.count(job.id))
      publish_job(job);
  } else {
    g_message("job %s: its lease was lost (claimed again or canceled elsewhere): its state (%s) is not written",
              job.id.c_str(), store::job_state_name(job.state));
  }
  if (storage_ && written && job.state == store::JobState::Succeeded)
    drop_other_versions_later(*storage_, job); // only once the new version is the one recorded
  else if (storage_ && !written && !unsaved_.count(job.id))
    discard_package_later(*storage_, a->package_prefix); // never recorded: fenced out, or its video is gone
  for (auto &fn : a->on_stopped)
    fn();
  a.reset(); // its live playlists (with [storage]) were served until now
  // A claim made with the end that found the queue empty: the next waits for the timer or a new job.
  if (claim && o.ok() && !o.value->claimed)
    return;
  if (o.ok())
    took(std::move(o.value->claimed));
  pump();
}

void Scheduler::stop_if_idle() {
  if (!shutting_down_ || !on_shutdown_ || !active_.empty() || writes_ > 0 || claiming_)
    return;
  // A last try for states the catalog refused; those still refused are of jobs left running, queued again at the
  // next start (SQLite) or when their lease runs out (PostgreSQL).
  if (!unsaved_.empty() && !last_try_) {
    last_try_ = true;
    retry_saves();
    if (writes_ > 0 || !on_shutdown_)
      return; // stop_if_idle() again once it is back (inline, that was done already)
  }
  auto fn = std::move(on_shutdown_);
  on_shutdown_ = nullptr;
  fn();
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

namespace {

// Whether two states of a job are the same write (a state kept in unsaved_ may be replaced while one is written).
bool same_state(const store::Job &a, const store::Job &b) {
  return a.state == b.state && a.token == b.token && a.attempts == b.attempts && a.finished == b.finished &&
         a.not_before == b.not_before && a.error == b.error && a.result_json == b.result_json;
}

// What retry_saves' call came to for a job: written, not written for good (fenced out, or its video deleted), or
// refused (or not tried after a refusal: each would wait as long for a catalog that is not answering).
enum class Retry { Written, Dropped, Refused };

} // namespace

void Scheduler::retry_saves() {
  if (retrying_)
    return; // the call on the executor arms the next try when it is back
  if (unsaved_.empty()) {
    save_failures_ = 0;
    pump();
    return;
  }
  std::vector<std::pair<store::Job, bool>> batch; // the state, whether it is fenced (finish_job)
  for (const auto &[id, job] : unsaved_)
    batch.emplace_back(job, unsaved_fenced_.count(id) > 0);
  retrying_ = true;
  writes_++;
  executor_->run(
      [batch](store::Store &store) {
        std::vector<Retry> out(batch.size(), Retry::Refused);
        for (std::size_t i = 0; i < batch.size(); i++) {
          const auto &[job, fenced] = batch[i];
          try {
            if (!fenced) {
              store.update_job(job);
              out[i] = Retry::Written;
            } else {
              out[i] = store.finish_job(job) ? Retry::Written : Retry::Dropped;
            }
          } catch (const Error &e) {
            if (e.code() != ErrorCode::NotFound) {
              GST_INFO("the catalog still refuses the state of job %s: %s", job.id.c_str(), e.what());
              break; // the others wait for the next try without a try of their own each
            }
            out[i] = Retry::Dropped; // its video was deleted meanwhile
          }
        }
        return out;
      },
      [this, alive = alive_, batch](store::Outcome<std::vector<Retry>> &o) {
        if (!*alive)
          return;
        retrying_ = false;
        writes_--;
        guarded("", "writing job states again", [&] {
          for (std::size_t i = 0; i < batch.size(); i++) {
            const store::Job &job = batch[i].first;
            const Retry r = o.ok() ? (*o.value)[i] : Retry::Refused;
            auto u = unsaved_.find(job.id);
            // Replaced meanwhile (a cancel written, or refused and kept): the newer state is the one that counts.
            if (u == unsaved_.end() || !same_state(u->second, job) || r == Retry::Refused)
              continue;
            unsaved_.erase(u);
            unsaved_fenced_.erase(job.id);
            if (r == Retry::Dropped) {
              g_message("job %s: its state (%s) is not written: its lease was lost or its video deleted",
                        job.id.c_str(), store::job_state_name(job.state));
              continue;
            }
            g_message("job %s: its state (%s) is written to the catalog at last", job.id.c_str(),
                      store::job_state_name(job.state));
            publish_job(job);
          }
          if (!unsaved_.empty()) {
            arm_save_retry();
            return;
          }
          save_failures_ = 0;
          pump();
        });
        stop_if_idle();
      });
}

store::JobState Scheduler::state_of(const store::Job &job) const {
  auto it = unsaved_.find(job.id);
  return it == unsaved_.end() ? job.state : it->second.state;
}

} // namespace sluice::jobs
