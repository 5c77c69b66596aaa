// SPDX-License-Identifier: LGPL-2.1-or-later
// Ingest: a file that has arrived is probed off the main loop, stored ([storage]) and kept as a video with its jobs.
#include "app/service.h"
#include "app/service_internal.h"

#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mainloop.h"
#include "jobs/source_upload.h"
#include "jobs/stored.h"
#include "media/probe.h"
#include "media/probe_json.h"

#include <algorithm>
#include <malloc.h>

#include <optional>
#include <set>
#include <string>
#include <thread>

namespace sluice::app {

using namespace detail;

namespace {

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

} // namespace

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
  // What the checks read of the catalog (the queue's count; the live workers' encoders for a job only a worker
  // elsewhere runs) is read on the executor, the file waiting; the checks that need none are made first.
  const bool workers = spec_needs_workers(metadata);
  std::optional<jobs::JobSpec> spec;
  if (!workers) {
    auto checked = job_spec(metadata);
    if (auto *f = std::get_if<Failure>(&checked))
      return fail(*f);
    spec = std::get<jobs::JobSpec>(std::move(checked));
  }
  if (!config_.auto_transcode)
    return probe(std::move(file), metadata, *spec, done);
  struct QueueGround {
    int unfinished = 0;
    std::optional<std::set<std::string>> live_encoders;
  };
  executor().run(
      [workers, read_encoders = scheduler_.live_encoders_reader()](store::Store &s) {
        QueueGround g;
        g.unfinished = jobs::Scheduler::unfinished_jobs(s);
        if (workers)
          g.live_encoders = read_encoders(s);
        return g;
      },
      [this, alive = alive_, file, metadata, spec, done](store::Outcome<QueueGround> &o) mutable {
        if (!*alive)
          return file.discard();
        auto refuse = [&](Failure f) {
          file.discard();
          done(std::move(f));
        };
        if (!o.ok())
          return refuse(failure_of(*o.error));
        if (!spec) {
          auto checked = job_spec(metadata, &*o.value->live_encoders);
          if (auto *f = std::get_if<Failure>(&checked))
            return refuse(*f);
          spec = std::get<jobs::JobSpec>(std::move(checked));
        }
        if (scheduler_.queue_full(o.value->unfinished))
          return refuse(refused(Refusal::QueueFull, "the job queue is full (" + std::to_string(config_.queue_limit) +
                                                        " jobs); try again later"));
        try {
          probe(std::move(file), metadata, *spec, done);
        } catch (const std::exception &e) {
          // Nothing thrown crosses the main loop's callback (the file went with the probe's thread, or is here).
          SLUICE_LOG(app_log(), Error, "ingest: %s", e.what());
          done(refused(Refusal::Internal, e.what()));
        }
      });
}

void Service::probe(IncomingFile file, const Metadata &metadata, const jobs::JobSpec &spec,
                    const std::function<void(Result<Ingested>)> &done) {
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
    // [storage]: the source goes to the bucket too, so that a worker elsewhere finds it, before its row exists. An
    // upload streamed there as it arrived (file.streamed, its id picked then) has only its last part and the
    // completion left, sent while the probe ran: waited for here. Any other file is put now (in bounded parts), under
    // an id picked here for its key. Not media: nothing is waited for (discarding it abandons the upload).
    std::optional<Error> stored_err;
    if (!err && storage) {
      try {
        if (file.streamed) {
          file.streamed->wait();
        } else {
          if (file.video_id.empty())
            file.video_id = store::new_id();
          jobs::upload_source(*storage, file.path, file.video_id, jobs::source_extension(file.filename));
        }
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
  const std::string ext = jobs::source_extension(file.filename);
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
  } catch (const Error &e) {
    file.discard();
    fs::remove_all(dir);
    if (scheduler_.storage())
      jobs::remove_video_later(*scheduler_.storage(), v.id);
    SLUICE_LOG(app_log(), Error, "cannot store upload: %s", e.what());
    return done(failure_of(e));
  }
  record(std::move(v), spec, picture, done);
}

Service::ProfileRows Service::profile_jobs(const std::string &video_id, const jobs::JobSpec &spec, bool picture) {
  // The requested job was checked before the upload was taken (with the workers' rows when it needs them); the extras
  // are checked here, but for the live workers' encoders, which record() reads with the rows' write on the executor.
  ProfileRows out;
  out.rows.push_back(scheduler_.new_job(video_id, spec));
  out.needs.emplace_back();
  if (!picture)
    return out;
  for (const auto &extra : config_.extras) {
    if (extra == spec.pipeline)
      continue;
    jobs::JobSpec e;
    e.pipeline = extra;
    e.priority = spec.priority;
    e = scheduler_.with_defaults(e);
    bool workers = false;
    try {
      workers = scheduler_.check(e);
    } catch (const Error &err) {
      SLUICE_LOG(app_log(), Warning, "[jobs] extras: %s is skipped: %s", extra.c_str(), err.what());
      continue;
    }
    out.rows.push_back(scheduler_.new_job(video_id, e));
    out.needs.push_back(workers ? e.encoder : std::string());
  }
  return out;
}

void Service::record(store::Video v, const jobs::JobSpec &spec, bool picture,
                     const std::function<void(Result<Ingested>)> &done) {
  // The video's row and its jobs' are written in one transaction on the executor (with PostgreSQL the main loop does
  // not wait for it; with SQLite it runs at once); what follows from them (the events, the queue's turn) is applied
  // back on the loop.
  ProfileRows profile = config_.auto_transcode ? profile_jobs(v.id, spec, picture) : ProfileRows{};
  const bool workers = std::any_of(profile.needs.begin(), profile.needs.end(), [](auto &n) { return !n.empty(); });
  executor().run(
      [v, rows = std::move(profile.rows), needs = std::move(profile.needs), workers,
       read_encoders = scheduler_.live_encoders_reader()](store::Store &s) mutable {
        if (workers) {
          // An extra whose encoder no live worker lists is left out, as validate() would have refused it.
          const std::set<std::string> live = read_encoders(s);
          std::vector<store::Job> kept;
          for (std::size_t i = 0; i < rows.size(); i++) {
            if (needs[i].empty() || live.count(needs[i]))
              kept.push_back(std::move(rows[i]));
            else
              SLUICE_LOG(app_log(), Warning, "[jobs] extras: %s is skipped: no live worker can run '%s'",
                         rows[i].pipeline.c_str(), needs[i].c_str());
          }
          rows = std::move(kept);
        }
        // One transaction: a process killed (or a catalog failing) between the two leaves neither row; the webhooks'
        // upload.completed deliveries go with them.
        s.add_video_with_jobs(v, rows, {{"upload.completed", v.id}});
        return rows;
      },
      [this, alive = alive_, v, done](store::Outcome<std::vector<store::Job>> &o) mutable {
        if (!*alive)
          return done(shutting_down());
        if (!o.ok()) {
          SLUICE_LOG(app_log(), Error, "cannot store upload: %s", o.error->what());
          fs::remove_all(scheduler_.layout().video_dir(v.id));
          if (scheduler_.storage())
            jobs::remove_video_later(*scheduler_.storage(), v.id);
          return done(failure_of(*o.error));
        }
        SLUICE_LOG(app_log(), Info, "video %s: %s, %" G_GINT64_FORMAT " bytes", v.id.c_str(), v.filename.c_str(),
                   v.size);
        publish_video_event(events_, v.id, "created");
        Ingested out;
        out.jobs = std::move(*o.value);
        for (const auto &j : out.jobs)
          scheduler_.enqueued(j);
        out.video = std::move(v);
        done(std::move(out));
      });
}

} // namespace sluice::app
