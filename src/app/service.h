// SPDX-License-Identifier: LGPL-2.1-or-later
// The service layer: what sluice does with videos and jobs, whatever protocol asked (no HTTP, no libsoup).
#pragma once

#include "auth/playback.h"
#include "core/config.h"
#include "core/error.h"
#include "core/metrics.h"
#include "jobs/events.h"
#include "jobs/scheduler.h"
#include "jobs/source_upload.h"
#include "pipeline/outputs.h"
#include "store/store.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace sluice::app {

// Why the service refused or failed a request; an adapter says it in its own terms (an HTTP status).
enum class Refusal {
  InvalidField,     // a field of the wrong type or form (`field` names it)
  InvalidParameter, // a well-formed value the pipeline, encoder, ladder or priority does not accept
  NotFound,
  Conflict, // the request does not fit the current state
  NotMedia, // the file is not media sluice can read
  QueueFull,
  Unavailable, // shutting down, or the catalog or the file system fails
  NoSpace,     // the disk is short of space
  Internal,    // a bug
  // Resumable uploads (tus):
  Gone,             // it was there and has expired
  Locked,           // another request is writing it now
  OffsetMismatch,   // the client's offset is not the server's
  TooLarge,         // longer than the upload may be
  ChecksumMismatch, // the bytes are not those the client checksummed (and are not kept)
  Forbidden,        // not allowed on this resource
};

struct Failure {
  Refusal refusal;
  std::string message;
  std::string field = {};
};

// A thrown sluice::Error that was not a refusal of the request: the catalog or file system failing
// (Io, Unavailable), a full disk, or a bug.
Failure failure_of(const Error &e);

template <typename T> using Result = std::variant<T, Failure>;

// A file that has arrived (an upload's temporary file): the service keeps it in place or lets it go.
struct IncomingFile {
  std::string path;
  std::string filename; // the client's name, for display only
  std::int64_t size = 0;
  std::string video_id; // the id the video gets ("": a new one); a resumable upload picks it before ingest
  std::function<void(const std::string &dest)> keep; // moves it to dest (same file system); throws Error
  std::function<void()> discard;
  // [storage]: the file was streamed to the bucket as it arrived, as the source of video_id (set with it); ingest
  // waits for that object off the main loop instead of putting the file. keep() keeps it, discard() abandons it.
  std::shared_ptr<jobs::SourceUpload> streamed;
};

// What comes with a file: the text fields of a form or the query of a raw upload.
struct Metadata {
  std::string title, description;
  std::string pipeline, encoder, ladder, priority;
  std::string playback_policy;               // "" (public), "public" or "signed"
  std::map<std::string, std::string> params; // the job's parameters
};

// A playback token and when it expires (Unix seconds).
struct PlaybackToken {
  std::string token;
  std::int64_t expires_s = 0;
};

// Whether a request for a video's media files may be answered: a public video's (Open), a signed video's with
// a good token (Signed: the URLs its playlists name carry the token too), or not.
enum class Playback { Open, Signed, Forbidden, NoVideo };

// A job request: every member optional (the configured defaults).
struct JobRequest {
  std::string pipeline, encoder, ladder;
  std::optional<std::int64_t> priority;
  std::map<std::string, std::string> params;
};

struct Ingested {
  store::Video video;
  std::vector<store::Job> jobs; // the job profile: the requested job first, then the extras
};

// What a video offers, newest job first, without URLs: adapters spell them.
struct Package {
  std::string pipeline;
  std::optional<pipeline::OutputKind> kind; // none when its description is gone
  std::string hls;      // the master playlist's file name when one is served (growing while its job runs)
  std::string dash;     // the MPD's file name when one is served (finished cmaf packages)
  bool growing = false; // served from a running job's working folder
  std::string artifact; // the file of a poster, storyboard or preview package, "" if none
};

struct VideoView {
  store::Video video;
  std::string state; // uploaded, queued, processing, ready, failed, canceled (its latest streaming job)
  std::vector<store::Job> jobs;
  std::vector<Package> packages; // one per pipeline, newest job first
};

// A file of a video's output asked for by a player.
struct MediaFile {
  std::string path;     // the real path, inside the data folder's videos/
  bool running = false; // of a running job: EVENT playlists, listed segments only
  std::string version;  // of a finished package (its folder), "" when unknown
  // A finished package in object storage ([storage]): the object's key (path is then ""), and its version is the
  // package's ("vN", its prefix's last segment). With running: a file of the live playlists that a job running in
  // another process uploads (no version).
  std::string key;
};

struct HealthView {
  bool readable = false, writable = false, accepting = true;
  std::size_t unsaved_jobs = 0;
  std::int64_t free_bytes = -1, min_free_bytes = 0;
  std::optional<int> queued, running;
  int slots = 0;
  bool ready() const { return readable && writable && accepting && free_bytes >= min_free_bytes; }
};

class Uploads;    // app/uploads.h
class Streams;    // app/streams.h
struct JobGround; // app/service.cpp

class Service {
public:
  Service(const ServerConfig &config, store::Store &store, jobs::Scheduler &scheduler, jobs::EventHub &events);
  ~Service();
  Service(const Service &) = delete;
  Service &operator=(const Service &) = delete;

  const ServerConfig &config() const { return config_; }
  store::Store &store() { return store_; }
  jobs::Scheduler &scheduler() { return scheduler_; }
  jobs::EventHub &events() { return events_; }
  // The server's metrics (the scheduler records its jobs there).
  metrics::Metrics &metrics() { return metrics_; }
  // Resumable uploads (app/uploads.h): start() them once the server's folders are ready.
  Uploads &uploads() { return *uploads_; }
  // Live streams (app/streams.h).
  Streams &streams() { return *streams_; }

  // From now on writes are refused (Unavailable).
  void stop_accepting() { accepting_ = false; }
  bool accepting() const { return accepting_; }
  // Whether the disk is short of space for new files (what health reports).
  bool space_low() const;

  // Every way a file arrives ends here: the metadata is checked, the file probed off the main loop,
  // then kept as a video (folder first, then the catalog row) with its job profile queued. `done` runs
  // on the main loop; on a failure the file is discarded.
  void ingest(IncomingFile file, const Metadata &metadata, std::function<void(Result<Ingested>)> done);

  // The job an upload with this metadata asks for, checked (what ingest refuses, said before the file arrives).
  // `live_encoders`: the live workers' encoders, read on the executor for a job only a worker elsewhere can run
  // (spec_needs_workers); without them, those are read on the caller's thread.
  Result<jobs::JobSpec> job_spec(const Metadata &metadata, const std::set<std::string> *live_encoders = nullptr);
  bool spec_needs_workers(const Metadata &metadata) const;
  // job_spec()'s checks for a caller on the main loop: at once when the job needs no workers' rows, else with them
  // read on the executor; done gets the refusal, or nothing when the job may be asked for.
  void check_spec_later(const Metadata &metadata, std::function<void(std::optional<Failure>)> done);

  // These write the catalog through executor() and call `done` on the main loop once the write is back (at once
  // with an inline executor); what follows from the write (events, the scheduler) is applied before `done`.
  // Stops the video's jobs, then removes its row and files (NotFound when there is no such video).
  void delete_video(const std::string &video_id, std::function<void(std::optional<Failure>)> done);
  // Queues a job for a video: done(the job), or why not.
  void create_job(const std::string &video_id, const JobRequest &request, std::function<void(Result<store::Job>)> done);
  // Cancels a queued or running job; `done` runs once it has stopped (once its cancel is written for a queued one).
  void cancel_job(const std::string &job_id, std::function<void(Result<store::Job>)> done);

  std::optional<VideoView> video(const std::string &video_id);
  std::vector<VideoView> videos();
  VideoView view(const store::Video &v);
  VideoView view(const store::Video &v, std::vector<store::Job> jobs); // the video's jobs, newest first
  HealthView health();

  // Off the main loop (app/service_async.cpp): catalog calls go through the scheduler's store::Executor.
  store::Executor &executor() { return scheduler_.executor(); }
  // Health without waiting for the catalog: with a pool, the latest readiness probe (ping, writable, queued jobs),
  // made again on the executor once older than a second; a probe unanswered for a second says not readable. done
  // runs at once, or (the first time) once the first probe is back. Inline: health() as it comes.
  void health(std::function<void(HealthView)> done);
  // Whether playback() can answer without the catalog (the video's policy is remembered, or calls are inline);
  // learn_playback reads the policy on the executor: done(true) once it is remembered, done(false) when there is
  // no such video, a Failure when the catalog could not say.
  bool playback_known(const std::string &video_id) const;
  void learn_playback(const std::string &video_id, std::function<void(Result<bool>)> done);

  // The file `inside` (decoded, checked path segments) of the video's output folder `folder`, when it
  // may be served: NotFound otherwise (no such file, a link out of videos/, a segment not listed yet).
  // A finished package's files are found once and remembered; want_version: its version too. With [storage], a
  // finished package is an object of the version the catalog records as current, or of `pinned` ("vN", from a
  // versioned URL) when it names one.
  // media_file_now answers what needs no catalog (a bad name, a job running here, a package in the data folder, a
  // versioned URL's object in storage); nothing when the video's jobs are needed (a package in storage the catalog
  // names). Then media_file_later reads them on the executor and answers on the main loop, or, for a caller with an
  // inline executor, media_file_from_catalog reads them at once.
  std::optional<Result<MediaFile>> media_file_now(const std::string &video_id, const std::string &folder,
                                                  const std::vector<std::string> &inside, bool want_version,
                                                  const std::string &pinned = "");
  Result<MediaFile> media_file_from_catalog(const std::string &video_id, const std::string &folder,
                                            const std::vector<std::string> &inside, bool want_version);
  void media_file_later(const std::string &video_id, const std::string &folder, const std::vector<std::string> &inside,
                        bool want_version, std::function<void(Result<MediaFile>)> done);
  // The file found for these segments is gone (serving it failed): find it again next time.
  void forget_media_file(const std::string &video_id, const std::string &folder,
                         const std::vector<std::string> &inside);

  // Signed playback. The policy: "public" or "signed" (InvalidParameter otherwise).
  // Written through executor(), `done` on the main loop.
  void set_playback_policy(const std::string &video_id, const std::string &policy,
                           std::function<void(Result<VideoView>)> done);
  // A token for the video's media that lives ttl_s seconds (1 to 86400); the caller has found the video.
  Result<PlaybackToken> playback_token(const std::string &video_id, std::int64_t ttl_s);
  // Whether the video's media may be served with this token ("" when none came): a public video's always, a
  // signed video's with a good token of that video only. The policies are remembered (the media path asks
  // for every segment).
  Playback playback(const std::string &video_id, const std::string &token);
  const auth::PlaybackKeys &playback_keys() const { return playback_keys_; }

private:
  void start_ingest(IncomingFile file, const Metadata &metadata, const std::function<void(Result<Ingested>)> &done);
  // The checked file probed on a thread, then probed() on the main loop.
  void probe(IncomingFile file, const Metadata &metadata, const jobs::JobSpec &spec,
             const std::function<void(Result<Ingested>)> &done);
  void cancel(const store::Job &job, const std::function<void(Result<store::Job>)> &done);
  void current_job(const std::string &job_id, const std::function<void(Result<store::Job>)> &done);
  Result<jobs::JobSpec> check_job(const std::string &video_id, const JobRequest &request, const JobGround &ground);
  void probed(IncomingFile file, Metadata metadata, jobs::JobSpec spec, std::shared_ptr<const std::string> probe_json,
              bool has_picture, std::optional<Error> err, const std::function<void(Result<Ingested>)> &done);
  // probed()'s catalog write with a pooled executor: the video's row and its job profile's, on the executor.
  void record(store::Video v, const jobs::JobSpec &spec, bool picture,
              const std::function<void(Result<Ingested>)> &done);
  // A job profile's rows, not written yet: the requested job, then the valid extras. needs[i] names the encoder that a
  // live worker must list for rows[i] to be kept (an extra whose encoder only a worker elsewhere runs), or is empty.
  struct ProfileRows {
    std::vector<store::Job> rows;
    std::vector<std::string> needs;
  };
  // media_file with the video's jobs (newest first): the package in storage the catalog names (or the live prefix
  // of a job running elsewhere), else the data folder's.
  Result<MediaFile> media_file_of(const std::string &video_id, const std::string &folder,
                                  const std::vector<std::string> &inside, bool want_version,
                                  const std::vector<store::Job> &jobs);
  Result<MediaFile> local_media_file(const std::string &video_id, const std::string &folder,
                                     const std::vector<std::string> &inside, bool want_version);
  ProfileRows profile_jobs(const std::string &video_id, const jobs::JobSpec &spec, bool picture);

  const ServerConfig &config_;
  store::Store &store_;
  jobs::Scheduler &scheduler_;
  jobs::EventHub &events_;
  bool accepting_ = true;
  metrics::Metrics metrics_;
  std::unordered_map<std::string, std::string> resolved_; // media files of finished packages, by request
  auth::PlaybackKeys playback_keys_;
  std::unordered_map<std::string, bool> signed_; // playback policies read from the catalog: signed or not
  std::multiset<std::string> creating_;          // "VIDEO\nPIPELINE" of the job requests whose row is being written
  std::unique_ptr<Uploads> uploads_;
  std::unique_ptr<Streams> streams_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<struct HealthProbe> probe_; // app/service_async.cpp
};

} // namespace sluice::app
