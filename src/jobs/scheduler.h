// SPDX-License-Identifier: LGPL-2.1-or-later
// The job scheduler: a persistent queue run within a capacity (jobs weighed in cores), priorities, retries, cancel
// and recovery.
#pragma once

#include "core/config.h"
#include "core/error.h"
#include "core/metrics.h"
#include "jobs/events.h"
#include "jobs/runner.h"
#include "jobs/transcode.h"
#include "pipeline/encoders.h"
#include "pipeline/outputs.h"
#include "store/executor.h"
#include "store/store.h"

#include <json-glib/json-glib.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sluice::storage {
class Storage;
}

namespace sluice::jobs {

// What a client asks for; validated by Scheduler::validate before anything is stored.
struct JobSpec {
  std::string pipeline;
  std::string encoder;
  std::string ladder;
  std::map<std::string, std::string> params;
  int priority = 0;
};

// Where a video's files live under the data folder.
struct Layout {
  std::string data_dir;
  std::string videos_dir() const;
  std::string video_dir(const std::string &video_id) const;
  // The finished output folder of a pipeline ("hls" -> videos/ID/hls).
  std::string output_dir(const std::string &video_id, const std::string &pipeline) const;
  std::string uploads_dir() const;
};

class Scheduler {
public:
  Scheduler(store::Store &store, EventHub &events, const ServerConfig &config, Layout layout);
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  // Crash recovery (running jobs requeued, partial outputs removed), then starts running jobs: claims them through
  // the store with a lease renewed from a heartbeat timer ([jobs] lease, heartbeat). With a shared catalog
  // (PostgreSQL) no running job is requeued blindly: jobs whose lease ran out are, from that timer, by any process.
  // Role api ([server] role) claims no job; it still takes expired leases back.
  void start();
  // Stops every running job and puts it back in the queue; `done` runs on the main loop once all
  // have stopped. No new job starts afterwards.
  void shutdown(std::function<void()> done);

  // Throws sluice::Error (Invalid / NotFound / Unavailable) naming the field that is wrong. Reads the workers' rows
  // on the caller's thread when check() says so: a caller on the main loop uses the halves below instead.
  void validate(const JobSpec &spec) const;
  // validate() in halves, for a caller that reads the catalog on the executor: check() makes every check that needs
  // no catalog (throwing as validate() does) and says whether the encoder is one only a worker elsewhere can run;
  // then check_workers() throws unless a live worker lists it, given what live_encoders_reader() read (it captures
  // values only).
  bool check(const JobSpec &spec) const;
  void check_workers(const JobSpec &spec, const std::set<std::string> &live) const;
  std::function<std::set<std::string>(store::Store &)> live_encoders_reader() const;
  // Fills the defaults of the configuration into spec.
  JobSpec with_defaults(JobSpec spec) const;
  // Whether another job may be queued (queue-limit), given the queued and running jobs that unfinished_jobs() read
  // (on the executor).
  static int unfinished_jobs(store::Store &s);
  bool queue_full(int unfinished) const;
  // Queuing a validated job, in two halves for a caller that writes the row on the executor: the row of a new queued
  // job (its seq not known yet), then, once the catalog has it (with its seq), the announcement and the queue's turn.
  store::Job new_job(const std::string &video_id, const JobSpec &spec) const;
  void enqueued(const store::Job &job);
  // Cancels a queued or running job, the catalog written on the executor; done on the main loop: true once it is
  // canceled (a running one asked to stop), false when it has already finished, the catalog's Error when it refused
  // the cancel (the job is left as it was).
  void cancel(const std::string &job_id, std::function<void(store::Outcome<bool> &)> done);
  // Cancels the video's unfinished jobs (`jobs`: its rows as read from the catalog); `done` runs on the main loop
  // once none of them is running any more. A cancel the catalog refuses is written again until it lands.
  void stop_video(const std::string &video_id, const std::vector<store::Job> &jobs, std::function<void()> done);
  // Whether the video has a queued or running job (of that pipeline, when one is named).
  bool has_unfinished_job(const std::string &video_id, const std::string &pipeline = "");
  // The same, of the video's rows as read from the catalog (the states this scheduler has not written yet win).
  bool has_unfinished_job(const std::vector<store::Job> &jobs, const std::string &pipeline) const;
  // The output kind of a pipeline description; nothing when there is no such description.
  std::optional<pipeline::OutputKind> output_kind(const std::string &pipeline) const;

  // The working folder a video's pipeline output is served from while a job writes it (a streaming output; not
  // while a finished CMAF package is being replaced), if a job is running it. A query: the job's live master
  // playlist is written as its progress and segments arrive, once every rendition has its first segment.
  std::optional<std::string> live_dir(const std::string &video_id, const std::string &pipeline) const;

  // Spells the URL clients fetch a file of a video's output folder by (its video, pipeline and file). The URL
  // layout is the HTTP layer's: it installs one. The "playable" video event carries the master playlist's URL
  // as "hls" when one is installed, and no URL otherwise.
  using UrlSpeller =
      std::function<std::string(const std::string &video_id, const std::string &pipeline, const std::string &file)>;
  void set_url_speller(UrlSpeller speller) { url_speller_ = std::move(speller); }
  // Where the scheduler records its jobs' starts, ends, retries, failures and speeds (none: nowhere).
  void set_metrics(metrics::JobRecorder *recorder) { metrics_ = recorder; }
  // [storage] (jobs/stored.h): sources are fetched from it when not here, finished packages are published to it
  // under versioned prefixes instead of the data folder. None (the default): the data folder, as always.
  void set_storage(storage::Storage *storage) { storage_ = storage; }
  storage::Storage *storage() const { return storage_; }
  // Where the scheduler's periodic catalog calls (claims, lease renewals, requeue_expired, the worker's row) run,
  // and the service's: store::Executor's pool with a PostgreSQL catalog. None set: inline on the store it was given.
  void set_executor(store::Executor *executor) { executor_ = executor ? executor : own_executor_.get(); }
  store::Executor &executor() const { return *executor_; }

  JsonNode *job_to_json(const store::Job &job) const;
  void publish_job(const store::Job &job);

  const Layout &layout() const { return layout_; }
  const pipeline::EncoderTable &encoders() const { return encoders_; }
  int running_count() const;
  // The capacity this process runs jobs in ([jobs] capacity, cores by default) and the weight its jobs take of it: a
  // job's weight is the cores it keeps busy (its description's, kept in its row; 0: every core), and never more than
  // the capacity, so that a job heavier than that runs alone.
  int capacity() const { return config_.job_capacity(); }
  static int cores();
  int used_weight() const;
  int weight_of(const store::Job &job) const;
  // This process's name as a worker ([jobs] worker-name, or hostname-pid) and the encoders it claims jobs for.
  const std::string &worker_name() const { return worker_name_; }
  const std::vector<std::string> &runnable_encoders() const { return runnable_encoders_; }
  // Whether this process claims and runs jobs (role all or worker).
  bool runs_jobs() const { return config_.role != "api"; }
  // Job states the catalog refused to write, kept and written again from a timer until they land.
  std::size_t unsaved_count() const { return unsaved_.size(); }
  // Bytes free for the data folder (-1 when it cannot be told), and whether that is below [health] min-free-space.
  std::int64_t free_space() const;
  bool space_low() const;

private:
  struct Active;
  void pump();
  void launch(store::Job job);
  // A job interrupted max_attempts times: failed without running it again.
  void give_up(store::Job job, std::int64_t now);
  // Plans a launched job on a thread; planned() takes the plan on the main loop.
  void start_planning(const std::string &job_id, TranscodeRequest req);
  void planned(const std::string &job_id, std::shared_ptr<TranscodePlan> plan, std::optional<Error> err);
  void finished(const std::string &job_id, std::optional<Error> err, const TranscodeResult &res);
  // The new state of a job that ended: succeeded, or failed and queued again when the failure may pass.
  void succeed(store::Job &job, const Active &a, const TranscodeResult &res, std::int64_t now);
  void fail_or_retry(store::Job &job, const Error &err, std::int64_t now);
  // Runs fn where GLib called us (a posted closure, a timer): an exception does not cross into GLib (it would end
  // the process); it is logged, and fails the job `job_id` names (when it names one that is still active).
  void guarded(const std::string &job_id, const char *what, const std::function<void()> &fn) noexcept;
  void progressed(const std::string &job_id, const Progress &p);
  void write_live_master(Active &a);
  void announce_playable(const Active &a);
  void stopped(const std::string &job_id);
  void recover();
  // The heartbeat (scheduler_lease.cpp): running jobs' leases renewed, this worker's row refreshed, expired leases
  // taken back. A job whose lease is lost stops, and nothing of it is published or written.
  void heartbeat();
  // For requeue_expired: the pipelines of not_streaming_ (read once; none while the descriptions cannot be read).
  std::vector<std::string> not_streaming_pipelines();
  void lose_lease(const std::string &job_id, const char *why);
  void register_worker(std::int64_t now);
  // A worker with object storage: a video deleted (on any process) takes its local files along (the source it fetched),
  // unless a job of it still runs here (that job is canceled and cleans up after itself).
  void forget_deleted_video(const jobs::Event &e);
  store::Worker worker_row(std::int64_t now) const;
  // A claim made on the executor, back on the main loop.
  void claimed(store::Outcome<std::optional<store::Job>> &outcome);
  // A job claimed (alone or with another's end): launched, or put back in the queue when the server is stopping.
  void took(std::optional<store::Job> job);
  void put_back(store::Job job);
  // Whether a claim may be asked for now: this process runs jobs and is not stopping, no refused state waits, fewer
  // jobs than [jobs] concurrent run or are being claimed, and some capacity is free.
  bool may_claim() const;
  // The capacity neither running jobs nor the claims on the executor hold. A claim is given all of it (reserved_ until
  // it is back: the job it took then holds its own weight), with the time before which a job that waited for room has
  // waited long enough to have it held ([jobs] hold-after).
  int free_weight() const;
  store::Room reserve_room();
  // The weight a new job of the pipeline gets: its description's (cached; 1 when there is none).
  int pipeline_weight(const std::string &pipeline) const;
  // Once the server is stopping and nothing runs or is being written any more: shutdown's `done`.
  void stop_if_idle();
  // The working folder of a claimed job: per claim when the catalog is shared (another attempt may still write its
  // own), and the folders of the job's earlier attempts removed.
  std::string claim_work_dir(const store::Job &job, const std::string &out) const;
  // Writes the end of a job this process claimed (a->job: succeeded, failed, queued for a retry) on the executor, only
  // while its token holds it (finish_job), and with it the next claim when a slot is free (finish_and_claim: one
  // round trip and one commit per job); ended() applies it on the loop: the job announced once written, a->on_stopped
  // called, the claimed job launched. When the catalog refuses it (read-only, full, gone), the state is kept in
  // unsaved_ and written again from a timer with backoff until it lands, the newest state of a job winning; no job
  // starts meanwhile.
  void end_job(std::unique_ptr<Active> a);
  void ended(std::int64_t token, bool claim, store::Outcome<store::Store::EndAndClaim> &outcome);
  void arm_save_retry();
  // Writes unsaved_ on the executor (one call), then announces what landed.
  void retry_saves();
  // The state of a job as the scheduler knows it: an unsaved state if there is one, else the catalog's.
  store::JobState state_of(const store::Job &job) const;

  store::Store &store_;
  EventHub &events_;
  const ServerConfig &config_;
  Layout layout_;
  pipeline::EncoderTable encoders_;
  std::map<std::string, std::unique_ptr<Active>> active_;
  mutable std::map<std::string, pipeline::OutputKind> output_kinds_;
  // The descriptions whose jobs' ends are not their video's state (a poster's), once read (not_streaming_pipelines).
  std::optional<std::vector<std::string>> not_streaming_;
  UrlSpeller url_speller_;
  metrics::JobRecorder *metrics_ = nullptr;
  storage::Storage *storage_ = nullptr;
  std::unique_ptr<store::Executor> own_executor_; // inline on store_
  store::Executor *executor_ = nullptr;
  bool claiming_ = false;                      // a claim is on the executor
  int reserved_ = 0;                           // the capacity the claims on the executor were given
  mutable std::map<std::string, int> weights_; // by pipeline
  int claims_ending_ = 0;                      // job ends on the executor that claim the next job too
  int writes_ = 0;        // job states on the executor (ends, put-backs, retries): a shutdown waits for them
  bool retrying_ = false; // retry_saves() is on the executor
  bool last_try_ = false; // a stopping server's last try of unsaved_ was made
  std::map<std::int64_t, std::unique_ptr<Active>> ending_; // by token: jobs whose end is on the executor
  bool beating_ = false;                                   // a heartbeat is on the executor
  std::shared_ptr<std::atomic<bool>> alive_;
  bool shutting_down_ = false;
  std::function<void()> on_shutdown_;
  guint timer_ = 0;
  std::map<std::string, store::Job> unsaved_;
  std::set<std::string> unsaved_fenced_; // the ids in unsaved_ written with finish_job
  bool shared_ = false;                  // the catalog is PostgreSQL: other processes claim jobs from it
  std::string worker_name_;
  std::vector<std::string> runnable_encoders_;
  std::int64_t started_at_ = 0;
  guint heartbeat_timer_ = 0;
  std::uint64_t deletions_ = 0; // the subscription of forget_deleted_video, 0 when none
  guint save_timer_ = 0;
  int save_failures_ = 0;              // in a row, for the backoff of save_timer_
  std::int64_t launch_not_before_ = 0; // after a job's start could not be written, no start is tried before this
  int launch_failures_ = 0;
};

// Whether a failure may go away by running the job again (a pipeline or file-system error), as
// opposed to a bad input or request.
bool is_transient(ErrorCode code);
// Whether a failure is the disk being full: GStreamer's sinks and our own writes say "No space left" (ENOSPC), a
// quota "Disk quota exceeded" (EDQUOT).
bool is_no_space(const Error &err);

// "2026-11-25T18:20:04Z" for a time in microseconds since the epoch.
std::string iso_time(std::int64_t us);

} // namespace sluice::jobs
