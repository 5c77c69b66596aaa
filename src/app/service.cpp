// SPDX-License-Identifier: LGPL-2.1-or-later
// The service layer: ingest, deletion, job requests and cancels, the views of videos, health and media files.
#include "app/service.h"

#include "app/service_internal.h"

#include "app/streams.h"
#include "app/uploads.h"

#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mainloop.h"
#include "jobs/stored.h"
#include "media/hls.h"
#include "media/probe.h"
#include "media/probe_json.h"
#include "pipeline/description.h"
#include "pipeline/outputs.h"
#include "sluice-config.h"

#include <malloc.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

namespace sluice::app {

using namespace detail;

namespace {

// A job specification error from the scheduler: which field, and invalid_parameter.
Failure spec_failure(const Error &e) {
  std::string m = e.what();
  std::string field = "params";
  for (const char *f : {"pipeline", "encoder", "ladder"})
    if (m.rfind(std::string(f) + ":", 0) == 0)
      field = f;
  return refused(Refusal::InvalidParameter, m, field);
}

int parse_priority(const std::string &text, std::optional<Failure> &failure) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0')
    failure = refused(Refusal::InvalidField, "field 'priority': expected an integer", "priority");
  // An integer, but not a priority (2^64 included: strtoll says ERANGE rather than wrapping).
  else if (errno == ERANGE || v < -1000 || v > 1000)
    failure =
        refused(Refusal::InvalidParameter, "field 'priority': expected an integer from -1000 to 1000", "priority");
  return failure ? 0 : static_cast<int>(v);
}

bool has_picture(const std::string &probe_json) {
  try {
    return media::probe_from_json(probe_json).video.has_value();
  } catch (const Error &) {
    return false;
  }
}

} // namespace

Failure failure_of(const Error &e) {
  // An Io or internal error's text names the server's files, its catalog's address and the database's own words:
  // they go to the log, the client is told what happened in general.
  switch (e.code()) {
  case ErrorCode::Unavailable: return refused(Refusal::Unavailable, e.what());
  case ErrorCode::Io:
    SLUICE_LOG(app_log(), Warning, "a request failed on the catalog or the disk: %s", e.what());
    return refused(Refusal::Unavailable, "the catalog or the disk did not answer; try again");
  case ErrorCode::NoSpace:
    SLUICE_LOG(app_log(), Warning, "a request failed: %s", e.what());
    return refused(Refusal::NoSpace, "the server is out of disk space");
  default:
    SLUICE_LOG(app_log(), Warning, "a request failed: %s", e.what());
    return refused(Refusal::Internal, "internal error (the server's log has the details)");
  }
}

Service::Service(const ServerConfig &config, store::Store &store, jobs::Scheduler &scheduler, jobs::EventHub &events)
    : config_(config), store_(store), scheduler_(scheduler), events_(events), metrics_(SLUICE_VERSION),
      playback_keys_(
          auth::PlaybackKeys::load(config.playback_keys, config.playback_keys_file, config.playback_signing_key_id)) {
  scheduler_.set_metrics(&metrics_);
  uploads_ = std::make_unique<Uploads>(*this);
  streams_ = std::make_unique<Streams>(*this);
  if (playback_keys_.ephemeral())
    SLUICE_LOG(app_log(), Info,
               "no [playback] keys: playback tokens are signed with a key made at startup "
               "and stop working when the server restarts");
}

Service::~Service() {
  streams_.reset();
  uploads_.reset();
  *alive_ = false;
  scheduler_.set_metrics(nullptr);
}

bool Service::space_low() const {
  return scheduler_.space_low();
}

// ---------------------------------------------------------------------------------------------
// Ingest

// The ingest itself (ingest, start_ingest, probed) is in app/service_ingest.cpp.

namespace {

// The job an upload's fields (Metadata) or a job request (JobRequest) ask for, before the configuration's defaults
// (the priority parsed apart).
template <typename Asked> jobs::JobSpec asked_spec(const Asked &asked) {
  jobs::JobSpec spec;
  spec.pipeline = asked.pipeline;
  spec.encoder = asked.encoder;
  spec.ladder = asked.ladder;
  spec.params = asked.params;
  return spec;
}

} // namespace

bool Service::spec_needs_workers(const Metadata &metadata) const {
  if (!config_.auto_transcode)
    return false;
  try {
    return scheduler_.check(scheduler_.with_defaults(asked_spec(metadata)));
  } catch (const Error &) {
    return false; // job_spec() says what is wrong
  }
}

Result<jobs::JobSpec> Service::job_spec(const Metadata &metadata, const std::set<std::string> *live_encoders) {
  jobs::JobSpec spec = asked_spec(metadata);
  if (!metadata.priority.empty()) {
    std::optional<Failure> bad;
    spec.priority = parse_priority(metadata.priority, bad);
    if (bad)
      return *bad;
  }
  if (!metadata.playback_policy.empty() && metadata.playback_policy != "public" && metadata.playback_policy != "signed")
    return refused(Refusal::InvalidParameter, "field 'playback_policy': expected public or signed", "playback_policy");
  spec = scheduler_.with_defaults(spec);
  if (config_.auto_transcode) {
    try {
      if (!live_encoders)
        scheduler_.validate(spec);
      else if (scheduler_.check(spec))
        scheduler_.check_workers(spec, *live_encoders);
    } catch (const Error &e) {
      return spec_failure(e);
    }
  }
  return spec;
}

void Service::check_spec_later(const Metadata &metadata, std::function<void(std::optional<Failure>)> done) {
  if (!spec_needs_workers(metadata)) {
    auto checked = job_spec(metadata);
    if (auto *f = std::get_if<Failure>(&checked))
      return done(*f);
    return done(std::nullopt);
  }
  executor().run([read_encoders = scheduler_.live_encoders_reader()](store::Store &s) { return read_encoders(s); },
                 [this, alive = alive_, metadata, done](store::Outcome<std::set<std::string>> &o) {
                   if (!*alive)
                     return done(shutting_down());
                   if (!o.ok())
                     return done(failure_of(*o.error));
                   auto checked = job_spec(metadata, &*o.value);
                   if (auto *f = std::get_if<Failure>(&checked))
                     return done(*f);
                   done(std::nullopt);
                 });
}

// ---------------------------------------------------------------------------------------------
// Deleting, job requests, cancels

// What a job request needs of the catalog, read in one call on the executor.
struct JobGround {
  std::optional<store::Video> video;
  std::vector<store::Job> jobs; // the video's
  int unfinished = 0;           // queued and running jobs, of every video
  // The live workers' encoders, read when the job asks for an encoder only a worker elsewhere can run.
  std::optional<std::set<std::string>> live_encoders;
};

// Each of these reads and writes the catalog on the executor and applies what follows (events, the scheduler's
// side, files) back on the main loop once the write has come back; `done` is called exactly once (a gone service
// answers "shutting down"). Inline executor: all of it at once, as before.

void Service::delete_video(const std::string &video_id, std::function<void(std::optional<Failure>)> done) {
  auto alive = alive_;
  auto failed = [video_id, done](const Error &e) {
    SLUICE_LOG(app_log(), Error, "cannot delete video %s: %s", video_id.c_str(), e.what());
    done(failure_of(e));
  };
  executor().run(
      [video_id](store::Store &s) -> std::optional<std::vector<store::Job>> {
        if (!store::is_id(video_id) || !s.video(video_id))
          return std::nullopt;
        store::JobFilter f;
        f.video_id = video_id;
        return s.jobs(f);
      },
      [this, alive, video_id, done, failed](store::Outcome<std::optional<std::vector<store::Job>>> &o) {
        if (!*alive)
          return done(shutting_down());
        // Its jobs cannot be read: nothing is deleted.
        if (!o.ok())
          return failed(*o.error);
        if (!*o.value)
          return done(refused(Refusal::NotFound, "no video " + video_id));
        scheduler_.stop_video(video_id, **o.value, [this, alive, video_id, done, failed] {
          if (!*alive)
            return done(shutting_down());
          // The catalog first: once the row is gone nothing serves or runs the files, and a crash before the folder
          // goes leaves an orphan folder that startup removes.
          executor().run(
              [video_id](store::Store &s) {
                s.delete_video(video_id);
                return true;
              },
              [this, alive, video_id, done, failed](store::Outcome<bool> &d) {
                if (!*alive)
                  return done(shutting_down());
                if (!d.ok())
                  return failed(*d.error);
                try {
                  signed_.erase(video_id);
                  fs::remove_all(scheduler_.layout().video_dir(video_id));
                  if (scheduler_.storage()) // its objects: the source and every package's versions
                    jobs::remove_video_later(*scheduler_.storage(), video_id);
                  publish_video_event(events_, video_id, "deleted");
                } catch (const Error &e) {
                  return failed(e);
                }
                done(std::nullopt);
              });
        });
      });
}

void Service::create_job(const std::string &video_id, const JobRequest &request,
                         std::function<void(Result<store::Job>)> done) {
  if (!accepting_)
    return done(shutting_down());
  auto alive = alive_;
  // validate()'s read of the workers' rows, when the encoder is one only a worker elsewhere runs: made here too.
  bool workers = false;
  try {
    workers = scheduler_.check(scheduler_.with_defaults(asked_spec(request)));
  } catch (const Error &) {
    // check_job() says what is wrong
  }
  executor().run(
      [video_id, workers, read_encoders = scheduler_.live_encoders_reader()](store::Store &s) {
        JobGround g;
        g.video = store::is_id(video_id) ? s.video(video_id) : std::nullopt;
        if (g.video) {
          store::JobFilter f;
          f.video_id = video_id;
          g.jobs = s.jobs(f);
          g.unfinished = jobs::Scheduler::unfinished_jobs(s);
          if (workers)
            g.live_encoders = read_encoders(s);
        }
        return g;
      },
      [this, alive, video_id, request, done](store::Outcome<JobGround> &o) {
        if (!*alive)
          return done(shutting_down());
        if (!o.ok()) {
          SLUICE_LOG(app_log(), Error, "cannot queue a job of video %s: %s", video_id.c_str(), o.error->what());
          return done(failure_of(*o.error));
        }
        auto checked = check_job(video_id, request, *o.value);
        if (auto *f = std::get_if<Failure>(&checked))
          return done(*f);
        const auto &spec = std::get<jobs::JobSpec>(checked);
        // Until its row is written, the job counts as the video's unfinished job of its pipeline and as a queued one.
        const std::string pending = video_id + "\n" + spec.pipeline;
        creating_.insert(pending);
        store::Job job = scheduler_.new_job(video_id, spec);
        executor().run([job](store::Store &s) { return s.add_job(job); },
                       [this, alive, job, pending, done](store::Outcome<std::int64_t> &a) mutable {
                         if (!*alive)
                           return done(shutting_down());
                         creating_.erase(creating_.find(pending));
                         if (!a.ok()) {
                           SLUICE_LOG(app_log(), Error, "cannot queue a job of video %s: %s", job.video_id.c_str(),
                                      a.error->what());
                           return done(failure_of(*a.error));
                         }
                         job.seq = *a.value;
                         scheduler_.enqueued(job);
                         done(job);
                       });
      });
}

Result<jobs::JobSpec> Service::check_job(const std::string &video_id, const JobRequest &request,
                                         const JobGround &ground) {
  if (!ground.video)
    return refused(Refusal::NotFound, "no video " + video_id);
  jobs::JobSpec spec = asked_spec(request);
  if (request.priority) {
    if (*request.priority < -1000 || *request.priority > 1000)
      return refused(Refusal::InvalidParameter, "field 'priority': expected an integer from -1000 to 1000", "priority");
    spec.priority = static_cast<int>(*request.priority);
  }
  spec = scheduler_.with_defaults(spec);
  try {
    if (!ground.live_encoders)
      scheduler_.validate(spec); // reads no workers' rows: create_job read them when check() asks for them
    else if (scheduler_.check(spec))
      scheduler_.check_workers(spec, *ground.live_encoders);
  } catch (const Error &e) {
    if (e.code() == ErrorCode::Io || e.code() == ErrorCode::Unavailable)
      return failure_of(e); // the workers' rows could not be read
    return spec_failure(e);
  }
  // A poster, storyboard or preview is made from the picture: refused at once for a video without one.
  if (auto kind = scheduler_.output_kind(spec.pipeline);
      kind && pipeline::output_info(*kind).needs_picture && !has_picture(ground.video->probe_json))
    return refused(Refusal::InvalidParameter,
                   "pipeline '" + spec.pipeline + "' makes a " + pipeline::output_name(*kind) +
                       " from the picture, and this video has none",
                   "pipeline");
  if (scheduler_.has_unfinished_job(ground.jobs, spec.pipeline) || creating_.count(video_id + "\n" + spec.pipeline))
    return refused(Refusal::Conflict, "the video already has a queued or running '" + spec.pipeline + "' job");
  if (ground.unfinished + static_cast<int>(creating_.size()) >= config_.queue_limit)
    return refused(Refusal::QueueFull,
                   "the job queue is full (" + std::to_string(config_.queue_limit) + " jobs); try again later");
  return spec;
}

void Service::cancel_job(const std::string &job_id, std::function<void(Result<store::Job>)> done) {
  auto alive = alive_;
  executor().run([job_id](store::Store &s) { return s.job(job_id); },
                 [this, alive, job_id, done](store::Outcome<std::optional<store::Job>> &o) {
                   if (!*alive)
                     return done(shutting_down());
                   if (!o.ok())
                     return done(failure_of(*o.error));
                   if (!*o.value)
                     return done(refused(Refusal::NotFound, "no job " + job_id));
                   cancel(**o.value, done);
                 });
}

void Service::cancel(const store::Job &job, const std::function<void(Result<store::Job>)> &done) {
  if (store::is_terminal(job.state))
    return done(refused(Refusal::Conflict,
                        std::string("the job has already finished (") + store::job_state_name(job.state) + ")"));
  auto alive = alive_;
  scheduler_.cancel(job.id, [this, alive, job, done](store::Outcome<bool> &c) {
    if (!*alive)
      return done(shutting_down());
    if (!c.ok())
      return done(failure_of(*c.error));
    if (!*c.value)
      return done(refused(Refusal::Conflict, "the job has already finished"));
    if (job.state != store::JobState::Running)
      return current_job(job.id, done);
    // A running job stops asynchronously (with the video's other jobs): answer once it has.
    executor().run(
        [video_id = job.video_id](store::Store &s) {
          store::JobFilter f;
          f.video_id = video_id;
          return s.jobs(f);
        },
        [this, alive, job, done](store::Outcome<std::vector<store::Job>> &jobs) {
          if (!*alive)
            return done(shutting_down());
          if (!jobs.ok())
            return done(failure_of(*jobs.error));
          scheduler_.stop_video(job.video_id, *jobs.value, [this, alive, id = job.id, done] {
            if (*alive)
              current_job(id, done);
          });
        });
  });
}

void Service::current_job(const std::string &job_id, const std::function<void(Result<store::Job>)> &done) {
  executor().run([job_id](store::Store &s) { return s.job(job_id); },
                 [job_id, done](store::Outcome<std::optional<store::Job>> &o) {
                   if (!o.ok())
                     return done(failure_of(*o.error));
                   if (!*o.value)
                     return done(refused(Refusal::NotFound, "no job " + job_id));
                   done(**o.value);
                 });
}

} // namespace sluice::app
