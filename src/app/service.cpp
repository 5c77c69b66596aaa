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

std::string safe_extension(const std::string &filename) {
  auto dot = filename.rfind('.');
  if (dot == std::string::npos || dot + 1 >= filename.size() || filename.size() - dot - 1 > 8)
    return "bin";
  std::string ext = filename.substr(dot + 1);
  for (auto &c : ext) {
    if (!g_ascii_isalnum(c))
      return "bin";
    c = g_ascii_tolower(c);
  }
  return ext;
}

// Keeps display text printable and bounded.
std::string clean_text(const std::string &s, std::size_t max) {
  std::string out;
  if (!g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr))
    return "";
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t')
      out += c;
  if (out.size() > max) {
    out.resize(max);
    while (!out.empty() && !g_utf8_validate(out.data(), static_cast<gssize>(out.size()), nullptr))
      out.pop_back();
  }
  return out;
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
  switch (e.code()) {
  case ErrorCode::Io:
  case ErrorCode::Unavailable: return refused(Refusal::Unavailable, e.what());
  case ErrorCode::NoSpace: return refused(Refusal::NoSpace, e.what());
  default: return refused(Refusal::Internal, e.what());
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

void Service::refresh_metrics() {
  metrics_.set_free_bytes(static_cast<double>(scheduler_.free_space()));
  for (auto s : {store::JobState::Queued, store::JobState::Running, store::JobState::Succeeded, store::JobState::Failed,
                 store::JobState::Canceled}) {
    try {
      metrics_.set_jobs_in_state(store::job_state_name(s), store_.count_jobs(s));
    } catch (const Error &) {
      // The catalog cannot be read: the last values stay (health says why).
    }
  }
}

bool Service::space_low() const {
  return scheduler_.space_low();
}

// ---------------------------------------------------------------------------------------------
// Ingest

void Service::ingest(IncomingFile file, const Metadata &metadata, std::function<void(Result<Ingested>)> done) {
  // `done` is called exactly once, whatever fails (the caller's request waits for it).
  try {
    start_ingest(file, metadata, done);
  } catch (const Error &e) {
    file.discard();
    done(failure_of(e));
  }
}

void Service::start_ingest(IncomingFile file, const Metadata &metadata,
                           const std::function<void(Result<Ingested>)> &done) {
  auto fail = [&](Failure f) {
    file.discard();
    done(std::move(f));
  };
  if (!accepting_)
    return fail(shutting_down());
  auto checked = job_spec(metadata);
  if (auto *f = std::get_if<Failure>(&checked))
    return fail(*f);
  jobs::JobSpec spec = std::get<jobs::JobSpec>(std::move(checked));
  if (config_.auto_transcode && scheduler_.queue_full())
    return fail(refused(Refusal::QueueFull,
                        "the job queue is full (" + std::to_string(config_.queue_limit) + " jobs); try again later"));
  // Probing reads the file with GStreamer: off the main loop, and the rest back on it.
  auto alive = alive_;
  storage::Storage *storage = scheduler_.storage();
  std::thread([this, alive, storage, file = std::move(file), metadata, spec, done]() mutable {
    std::shared_ptr<const std::string> probe_json;
    bool picture = false;
    std::optional<Error> err;
    try {
      media::ProbeResult probe = media::probe(file.path);
      json::Node pj(media::probe_to_json(probe));
      probe_json = std::make_shared<const std::string>(json::to_string(pj.get(), false));
      picture = probe.video.has_value();
      // The probe prerolled decoders (frames of a 4K source are big): give that memory back to the
      // system now rather than keep it as the server's high-water mark.
      malloc_trim(0);
    } catch (const Error &e) {
      err = e;
    } catch (const std::exception &e) {
      err = Error(ErrorCode::Internal, e.what());
    }
    // [storage]: the source goes to the bucket too (in bounded parts), so that a worker elsewhere finds it. The
    // video's id is picked here for its key.
    std::optional<Error> stored_err;
    if (!err && storage) {
      if (file.video_id.empty())
        file.video_id = store::new_id();
      try {
        jobs::upload_source(*storage, file.path, file.video_id, safe_extension(file.filename));
      } catch (const Error &e) {
        SLUICE_LOG(app_log(), Error, "cannot store the upload in %s: %s", storage->describe().c_str(), e.what());
        stored_err = Error(ErrorCode::Unavailable, "the upload could not be stored (object storage failed); retry");
      }
    }
    post([this, alive, file = std::move(file), metadata, spec, probe_json, picture, err, stored_err,
          done = std::move(done)]() mutable {
      if (!*alive) {
        file.discard();
        return;
      }
      if (stored_err) {
        file.discard();
        return done(failure_of(*stored_err));
      }
      try {
        probed(std::move(file), metadata, spec, probe_json, picture, err, done);
      } catch (const std::exception &e) {
        // Nothing thrown crosses the main loop's callback: the request fails, the loop serves on.
        SLUICE_LOG(app_log(), Error, "ingest: %s", e.what());
        done(refused(Refusal::Internal, e.what()));
      }
    });
  }).detach();
}

Result<jobs::JobSpec> Service::job_spec(const Metadata &metadata) {
  jobs::JobSpec spec;
  spec.pipeline = metadata.pipeline;
  spec.encoder = metadata.encoder;
  spec.ladder = metadata.ladder;
  spec.params = metadata.params;
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
      scheduler_.validate(spec);
    } catch (const Error &e) {
      return spec_failure(e);
    }
  }
  return spec;
}

void Service::probed(IncomingFile file, Metadata metadata, jobs::JobSpec spec,
                     std::shared_ptr<const std::string> probe_json, bool picture, std::optional<Error> err,
                     const std::function<void(Result<Ingested>)> &done) {
  if (err) {
    file.discard();
    std::string name = file.filename.empty() ? "the upload" : "'" + clean_text(file.filename, 200) + "'";
    std::string reason = err->what();
    // The probe names the server's temporary file; the client knows its file by its own name.
    if (auto pos = reason.find(file.path); !file.path.empty() && pos != std::string::npos)
      reason.replace(pos, file.path.size(), name);
    return done(refused(Refusal::NotMedia, reason, "file"));
  }
  if (!accepting_) {
    file.discard();
    if (scheduler_.storage() && !file.video_id.empty())
      jobs::remove_video_later(*scheduler_.storage(), file.video_id);
    return done(shutting_down());
  }
  std::string title = clean_text(metadata.title, 200);
  store::Video v;
  v.id = file.video_id.empty() ? store::new_id() : file.video_id;
  v.title = title.empty() ? clean_text(file.filename, 200) : title;
  v.description = clean_text(metadata.description, 4000);
  v.filename = clean_text(file.filename, 255);
  v.size = file.size;
  v.created = g_get_real_time();
  v.probe_json = *probe_json;
  v.playback_policy = metadata.playback_policy.empty() ? "public" : metadata.playback_policy;
  const std::string dir = scheduler_.layout().video_dir(v.id);
  const std::string ext = safe_extension(file.filename);
  v.source = "videos/" + v.id + "/source." + ext;
  try {
    // Checked again before it is kept: the disk may have filled while it arrived (this upload included).
    if (scheduler_.space_low())
      throw Error(ErrorCode::NoSpace, "the server is short of disk space (less than [health] min-free-space is "
                                      "free); the upload is not kept");
    fs::make_dirs(dir);
    file.keep(fs::join(dir, "source." + ext));
    // The folder exists before the row: a crash between the two leaves a folder that startup removes,
    // never a row without its file.
    store_.add_video(v);
  } catch (const Error &e) {
    file.discard();
    fs::remove_all(dir);
    if (scheduler_.storage())
      jobs::remove_video_later(*scheduler_.storage(), v.id);
    SLUICE_LOG(app_log(), Error, "cannot store upload: %s", e.what());
    return done(failure_of(e));
  }
  SLUICE_LOG(app_log(), Info, "video %s: %s, %" G_GINT64_FORMAT " bytes", v.id.c_str(), v.filename.c_str(), v.size);
  publish_video_event(events_, v.id, "created");
  Ingested out;
  try {
    if (config_.auto_transcode)
      out.jobs = scheduler_.enqueue_profile(v.id, spec, picture);
  } catch (const Error &e) {
    // The catalog took the video, then refused its job: the upload is not kept (when the catalog lets it go).
    SLUICE_LOG(app_log(), Error, "cannot queue the jobs of video %s: %s", v.id.c_str(), e.what());
    try {
      store_.delete_video(v.id);
      fs::remove_all(dir);
      if (scheduler_.storage())
        jobs::remove_video_later(*scheduler_.storage(), v.id);
    } catch (const Error &e2) {
      SLUICE_LOG(app_log(), Error, "video %s stays without its jobs: %s", v.id.c_str(), e2.what());
    }
    return done(failure_of(e));
  }
  out.video = std::move(v);
  done(std::move(out));
}

// ---------------------------------------------------------------------------------------------
// Deleting, job requests, cancels

void Service::delete_video(const std::string &video_id, std::function<void(std::optional<Failure>)> done) {
  auto alive = alive_;
  try {
    scheduler_.stop_video(video_id, [this, alive, video_id, done] {
      if (!*alive)
        return;
      try {
        // The catalog first: once the row is gone nothing serves or runs the files, and a crash
        // before the folder goes leaves an orphan folder that startup removes.
        store_.delete_video(video_id);
        signed_.erase(video_id);
        fs::remove_all(scheduler_.layout().video_dir(video_id));
        if (scheduler_.storage()) // its objects: the source and every package's versions
          jobs::remove_video_later(*scheduler_.storage(), video_id);
        publish_video_event(events_, video_id, "deleted");
        done(std::nullopt);
      } catch (const Error &e) {
        SLUICE_LOG(app_log(), Error, "cannot delete video %s: %s", video_id.c_str(), e.what());
        done(failure_of(e));
      }
    });
  } catch (const Error &e) {
    // Its queued jobs could not be canceled (the catalog refuses writes): nothing is deleted.
    SLUICE_LOG(app_log(), Error, "cannot delete video %s: %s", video_id.c_str(), e.what());
    done(failure_of(e));
  }
}

Result<store::Job> Service::create_job(const std::string &video_id, const JobRequest &request) {
  if (!accepting_)
    return shutting_down();
  auto video = store_.video(video_id);
  if (!video)
    return refused(Refusal::NotFound, "no video " + video_id);
  jobs::JobSpec spec;
  spec.pipeline = request.pipeline;
  spec.encoder = request.encoder;
  spec.ladder = request.ladder;
  if (request.priority) {
    if (*request.priority < -1000 || *request.priority > 1000)
      return refused(Refusal::InvalidParameter, "field 'priority': expected an integer from -1000 to 1000", "priority");
    spec.priority = static_cast<int>(*request.priority);
  }
  spec.params = request.params;
  spec = scheduler_.with_defaults(spec);
  try {
    scheduler_.validate(spec);
  } catch (const Error &e) {
    return spec_failure(e);
  }
  // A poster, storyboard or preview is made from the picture: refused at once for a video without one.
  if (auto kind = scheduler_.output_kind(spec.pipeline);
      kind && pipeline::output_info(*kind).needs_picture && !has_picture(video->probe_json))
    return refused(Refusal::InvalidParameter,
                   "pipeline '" + spec.pipeline + "' makes a " + pipeline::output_name(*kind) +
                       " from the picture, and this video has none",
                   "pipeline");
  if (scheduler_.has_unfinished_job(video_id, spec.pipeline))
    return refused(Refusal::Conflict, "the video already has a queued or running '" + spec.pipeline + "' job");
  if (scheduler_.queue_full())
    return refused(Refusal::QueueFull,
                   "the job queue is full (" + std::to_string(config_.queue_limit) + " jobs); try again later");
  return scheduler_.enqueue(video_id, spec);
}

void Service::cancel_job(const std::string &job_id, std::function<void(Result<store::Job>)> done) {
  // `done` is called exactly once, whatever fails (the caller's request waits for it).
  try {
    cancel(job_id, done);
  } catch (const Error &e) {
    done(failure_of(e));
  }
}

void Service::cancel(const std::string &job_id, const std::function<void(Result<store::Job>)> &done) {
  auto job = store_.job(job_id);
  if (!job)
    return done(refused(Refusal::NotFound, "no job " + job_id));
  if (store::is_terminal(job->state))
    return done(refused(Refusal::Conflict,
                        std::string("the job has already finished (") + store::job_state_name(job->state) + ")"));
  if (!scheduler_.cancel(job->id))
    return done(refused(Refusal::Conflict, "the job has already finished"));
  auto current = [this, job_id]() -> Result<store::Job> {
    if (auto j = store_.job(job_id))
      return *j;
    return refused(Refusal::NotFound, "no job " + job_id);
  };
  if (job->state != store::JobState::Running)
    return done(current());
  // A running job stops asynchronously: answer once it has.
  auto alive = alive_;
  scheduler_.stop_video(job->video_id, [alive, current, done] {
    if (*alive)
      done(current());
  });
}

} // namespace sluice::app
