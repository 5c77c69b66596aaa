// SPDX-License-Identifier: LGPL-2.1-or-later
// The catalog of videos and jobs behind one interface: SQLite (one process) or PostgreSQL (shared).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::store {

// Times are microseconds since the Unix epoch (g_get_real_time()); 0 means "not set".
struct Video {
  std::string id; // 16 lowercase hex digits
  std::string title;
  std::string description;
  std::string filename;   // the client's file name, for display only (never used as a path)
  std::string source;     // the stored upload, relative to the data dir
  std::int64_t size = 0;  // bytes
  std::string probe_json; // media::probe_to_json of the upload
  std::int64_t created = 0;
  std::string playback_policy = "public"; // "public" or "signed" (playback URLs need a token)
};

enum class JobState { Queued, Running, Succeeded, Failed, Canceled };
const char *job_state_name(JobState s); // "queued", "running", ...
std::optional<JobState> parse_job_state(const std::string &name);
bool is_terminal(JobState s); // succeeded, failed, canceled

struct Job {
  std::string id; // 16 lowercase hex digits
  std::string video_id;
  std::string pipeline;    // description name
  std::string encoder;     // "auto" or an encoder name
  std::string ladder;      // "" = default
  std::string params_json; // JSON object of parameter name -> value (strings)
  JobState state = JobState::Queued;
  int priority = 0; // higher runs first; FIFO (created, then seq) within a priority
  int attempts = 0; // runs started so far
  int max_attempts = 3;
  std::int64_t created = 0, started = 0, finished = 0;
  std::int64_t not_before = 0; // a queued job is not claimed before this time (retry backoff)
  std::string error_code;      // sluice::error_code_name of the last failure, "" if none
  std::string error;           // the last failure, for a person
  std::string result_json;     // jobs::result_to_json of a succeeded job, "" otherwise
  std::int64_t seq = 0;        // insertion order, assigned by the store
  // Claiming (claim_job): the worker that runs or ran it ("" : never claimed), until when a running job's lease
  // holds (another process may claim it again after that), and the fencing token of its latest claim (unique across
  // jobs and growing with every claim: a write with an older token changes nothing; a package's version is its token).
  std::string worker;
  std::int64_t leased_until = 0;
  std::int64_t token = 0;
  // The cores its run keeps busy, from its description's weight when it was queued (jobs::Scheduler::new_job);
  // 0 is all of them: every core of the worker that claims it (a ladder spreads its encoders over every core).
  int weight = 1;
  // Not kept: whether this job's end is its video's state (a streaming package's job; a poster's is not), told by the
  // scheduler, so that finish_job and finish_and_claim write video.ready / video.failed with a job's end.
  bool streaming = false;
};

// A process that runs jobs, as it registers itself (beat_worker) in the shared catalog.
struct Worker {
  std::string name;
  std::string role; // "all" or "worker"
  std::int64_t started = 0, heartbeat = 0;
  std::vector<std::string> encoders; // the encoders it can run (pipeline::EncoderTable::check)
  int concurrent = 0;                // the most jobs it runs at once
  int capacity = 0;                  // the weight it runs at once ([jobs] capacity)
  int used = 0;                      // the weight of its running jobs, at its last heartbeat
};

// What a claiming worker has room for (Store::claim_job). A queued job weighs its weight, or `cores` for weight 0 (all
// of the worker's cores), and never more than `capacity`: so a job heavier than the whole capacity runs alone, when
// nothing else runs there. Among the due jobs, the first in queue order (priority, then oldest) that fits in `free` is
// claimed, unless the first of all does not fit and has been due since before `hold_due_before`: then room is held
// for it and no lighter job is claimed instead, so that a heavy job never starves behind a stream of light ones.
struct Room {
  static constexpr int kUnlimited = 1 << 30;
  int free = kUnlimited;
  int capacity = kUnlimited;
  int cores = 1;
  std::int64_t hold_due_before = 0; // 0: room is never held
};

// The answer to a request that created something, kept under the client's Idempotency-Key.
struct StoredAnswer {
  std::string scope;       // method and route, e.g. "POST /api/v1/videos"
  std::string key;         // the client's Idempotency-Key
  std::string fingerprint; // of the request's content ("" when not known)
  int status = 0;
  std::string body;     // JSON
  std::string location; // the Location header, "" if none
  std::int64_t created = 0;
};

// An API key as the catalog keeps it: never the key itself, only its hash (auth::hash_key).
struct ApiKey {
  std::string name;   // unique among the keys not revoked
  std::string hash;   // SHA-256 of the key, hex
  std::string scopes; // "read,upload" (auth::scopes_string)
  std::int64_t created = 0, last_used = 0, revoked = 0;
};

// A resumable (tus) upload: a row while it arrives, plus its file in the data folder's resumable/.
// A part of a resumable upload's multipart upload in the bucket.
struct UploadPart {
  std::int64_t size = 0;
  std::string etag;
};
// "SIZE ETAG" lines, as the catalog keeps them; bytes(): what the parts hold.
std::string encode_parts(const std::vector<UploadPart> &parts);
std::vector<UploadPart> decode_parts(const std::string &text);
std::int64_t parts_bytes(const std::vector<UploadPart> &parts);

struct ResumableUpload {
  std::string id;
  std::int64_t length = -1; // bytes in all; -1 while deferred (Upload-Defer-Length)
  std::int64_t offset = 0;  // bytes on disk (fsynced before this is written)
  std::string metadata;     // the Upload-Metadata header as it was sent (checked)
  std::string concat;       // "", "partial", or "final" followed by the ids of its parts ("final a b")
  std::string state;        // receiving, processing, completed, failed
  std::string video_id;     // chosen when processing starts (or with its first part in the bucket); "" before
  std::string error_code, error;
  std::string direct_id;                 // the direct upload it was made through, "" if none
  std::int64_t created = 0, expires = 0; // microseconds since the epoch
  // [storage] in a bucket: the upload goes there as it arrives, as the parts of a multipart upload of its source
  // (multipart: its id, "" until the first part). `holder` names the process whose local file holds the bytes after
  // the parts (from held_from on: where they began when it took the upload over); "" without a bucket.
  std::string multipart;
  std::vector<UploadPart> parts; // part i + 1 of the multipart upload
  std::string holder;
  std::int64_t held_from = 0;
};

// A direct upload: a one-time permission to create one upload, for a client that holds no key.
struct DirectUpload {
  std::string id;
  std::string token_hash; // SHA-256 of the token, hex (the token itself is never stored)
  std::int64_t max_size = 0;
  std::string origin;        // the only Origin its requests may come from ("" : any, for clients without one)
  std::string metadata_json; // a JSON object of metadata fields that win over the client's
  std::string upload_id;     // the upload made with it, "" until then
  std::int64_t created = 0, expires = 0;
};

// A live stream: what it is made into, and how its input arrives (published to sluice, or pulled from a source).
struct Stream {
  std::string id;
  std::string title;
  std::string key_hash; // SHA-256 of its stream key, hex (the key itself is shown once, at creation)
  std::string pipeline; // live-hls or live-cmaf
  std::string ladder;
  bool record = false; // the event becomes a video when it ends
  std::string source;  // "" (publishers push to it) or rtsp://, srt://, http(s):// to pull from
  std::int64_t created = 0;
};

// A webhook endpoint: events of the types it names are POSTed to its url, signed with its secret. The secret is kept
// as it is (an HMAC needs it; unlike an API key, whose hash is enough), shown once, never logged.
struct Webhook {
  std::string id;
  std::string url;
  std::vector<std::string> events; // video.ready, job.failed, ... (kept as "a,b")
  std::string description;
  std::string secret;
  std::string previous_secret;     // after a rotation: still signs until previous_until
  std::int64_t previous_until = 0; // 0: no previous secret
  std::int64_t created = 0;
};

// An event for the outbox: its type and the id of what it is about (a video, job or stream). Written in the same
// transaction as the state change it reports, as one delivery per endpoint subscribed to its type.
struct OutboxEvent {
  std::string type;
  std::string subject;
};

// One event's delivery to one endpoint, in the outbox.
struct Delivery {
  std::int64_t seq = 0; // order of writing: an endpoint's deliveries go out in this order
  std::string id;       // the event's id followed by the endpoint's: what a receiver deduplicates on
  std::string event_id; // the same for every endpoint of one event
  std::string webhook_id;
  std::string type;
  std::string subject;
  std::int64_t created = 0;
  std::string state = "pending"; // pending, succeeded, failed (given up)
  int attempts = 0;              // claims so far (claim_deliveries counts one each)
  std::int64_t next_attempt = 0; // a pending delivery is not claimed before this time
  std::int64_t leased_until = 0; // while an attempt is in flight (claimed again after that)
  int last_status = 0;           // the HTTP status of the last answer, 0 when none came
  std::string last_error;        // why the last attempt failed, "" if it did not
  std::int64_t last_attempt = 0;
  std::string body; // the JSON as first sent ("" before): later attempts send it again, byte for byte
};

// A claimed delivery with the endpoint it goes to.
struct ClaimedDelivery {
  Delivery delivery;
  Webhook webhook;
};

struct JobFilter {
  std::optional<JobState> state;
  std::string video_id; // "" = any
  int limit = 1000;
};

// All methods throw sluice::Error (Io for database failures, NotFound where noted).
// One Store is used from one thread at a time; the PostgreSQL store also takes calls from several threads (one
// connection, one call at a time). The server makes its calls through a store::Executor (store/executor.h), off the
// main loop where the catalog is PostgreSQL.
class Store {
public:
  virtual ~Store() = default;

  virtual void add_video(const Video &v) = 0;
  virtual std::optional<Video> video(const std::string &id) = 0;
  virtual std::vector<Video> videos(int limit = 1000) = 0; // newest first
  // Deletes the video and all its jobs; false if it did not exist.
  virtual bool delete_video(const std::string &id) = 0;
  // Sets the video's playback policy; false if it did not exist.
  virtual bool set_playback_policy(const std::string &id, const std::string &policy) = 0;

  // Inserts job (its seq is assigned and returned).
  virtual std::int64_t add_job(const Job &j) = 0;
  // A new video's row and its jobs' in one transaction (each job's seq set): a crash in between leaves neither, so
  // the catalog never holds a video without the jobs its upload was answered with.
  // events: written to the outbox in the same transaction (upload.completed).
  virtual void add_video_with_jobs(const Video &v, std::vector<Job> &jobs,
                                   const std::vector<OutboxEvent> &events = {}) = 0;
  virtual std::optional<Job> job(const std::string &id) = 0;
  virtual std::vector<Job> jobs(const JobFilter &f) = 0; // newest first
  // Writes every mutable field of j (state, attempts, times, error, result, not_before, priority).
  virtual void update_job(const Job &j) = 0;
  // The next queued job to run at `now`: highest priority, then oldest; not claimed (read only).
  virtual std::optional<Job> next_queued(std::int64_t now) = 0;
  virtual int count_jobs(JobState s) = 0;
  // Startup recovery of a catalog only this process uses: every running job goes back to queued (attempts kept).
  // Returns those jobs.
  virtual std::vector<Job> requeue_running() = 0;

  // Claims the next queued job due at `now` (highest priority, then oldest) for `worker`, atomically, so that two
  // processes never claim one job: it is running, attempts + 1, started at now, leased until now + lease_us, with a
  // fresh fencing token. A job that names an encoder (not "auto") is claimed only when `encoders` has it, and one
  // whose weight does not fit `room` is passed over (see Room).
  virtual std::optional<Job> claim_job(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                       const std::vector<std::string> &encoders, const Room &room = {}) = 0;
  // Extends a running job's lease; false when `token` no longer holds it (claimed again, canceled, deleted).
  virtual bool renew_lease(const std::string &job_id, std::int64_t token, std::int64_t until) = 0;
  // Writes the mutable fields of a job this process claimed (update_job's, the lease ended) when j.token still holds
  // it; false, changing nothing, when its lease was lost. A job that ends succeeded or failed writes its webhook events
  // in the same transaction (job.succeeded / job.failed, and video.ready / video.failed when j.streaming); so does
  // finish_and_claim, and requeue_expired for a job that fails there (job.failed).
  virtual bool finish_job(const Job &j) = 0;
  // finish_job(ended), then claim_job(worker, now, lease_us, encoders, room), in one transaction: a worker whose job
  // ended takes its next one with one round trip and one commit instead of two. The end is fenced as finish_job's is (a
  // token that no longer holds changes nothing, and the claim still happens); the job just ended is not claimed again
  // by this call (a retry of it waits for the next claim).
  struct EndAndClaim {
    bool ended = false;         // finish_job's answer
    std::optional<Job> claimed; // claim_job's
  };
  virtual EndAndClaim finish_and_claim(const Job &ended, const std::string &worker, std::int64_t now,
                                       std::int64_t lease_us, const std::vector<std::string> &encoders,
                                       const Room &room = {}) = 0;
  // Jobs running on a lease that ran out before `now` go back to the queue, or fail when their attempts are spent.
  // Safe with several processes at once (each job is taken back once). Returns them, as they are now. A job that
  // fails here writes job.failed, and video.failed too unless its pipeline is one of `not_streaming` (those whose
  // end is not their video's state, as Job::streaming says for finish_job: a poster's).
  virtual std::vector<Job> requeue_expired(std::int64_t now, const std::vector<std::string> &not_streaming = {}) = 0;

  // Registers or refreshes a worker (its row by name), and forgets the workers silent since before forget_before.
  virtual void beat_worker(const Worker &w, std::int64_t forget_before) = 0;
  virtual std::vector<Worker> workers() = 0; // by name
  virtual void remove_worker(const std::string &name) = 0;

  // The answer kept under (scope, key) if it was kept at `since` or later.
  virtual std::optional<StoredAnswer> stored_answer(const std::string &scope, const std::string &key,
                                                    std::int64_t since) = 0;
  // Keeps a (an answer already kept under its key stays, unless older than forget_before) and forgets
  // every answer older than forget_before.
  virtual void store_answer(const StoredAnswer &a, std::int64_t forget_before) = 0;

  // API keys. add_key throws Error (Invalid) when a key not revoked has that name.
  virtual void add_key(const ApiKey &k) = 0;
  virtual std::optional<ApiKey> key_by_hash(const std::string &hash) = 0;
  virtual std::vector<ApiKey> keys() = 0; // oldest first, revoked ones too
  // Revokes the key `name` at `when`; false when no key not revoked has that name.
  virtual bool revoke_key(const std::string &name, std::int64_t when) = 0;
  virtual void touch_key(const std::string &hash, std::int64_t when) = 0; // last_used

  // Resumable uploads.
  virtual void add_upload(const ResumableUpload &u) = 0;
  virtual std::optional<ResumableUpload> upload(const std::string &id) = 0;
  // Writes length, offset, state, video_id, the error, multipart, parts and held_from; false (nothing written) when
  // the row names another holder than u's (another process took the upload over).
  virtual bool update_upload(const ResumableUpload &u) = 0;
  // Compare-and-set: u's holder (and held_from, offset) replace holder `from`, when the row is still receiving with
  // the parts u has; false otherwise.
  virtual bool take_upload(const ResumableUpload &u, const std::string &from) = 0;
  virtual bool delete_upload(const std::string &id) = 0;
  // Every upload, oldest first (startup recovery and the expiry sweep).
  virtual std::vector<ResumableUpload> uploads() = 0;

  // Direct uploads. claim_direct_upload: records the upload made with it; false when one was made already.
  virtual void add_direct_upload(const DirectUpload &d) = 0;
  virtual std::optional<DirectUpload> direct_upload_by_hash(const std::string &token_hash) = 0;
  virtual bool claim_direct_upload(const std::string &id, const std::string &upload_id) = 0;
  // Forgets the direct uploads that expired before `when`.
  virtual void forget_direct_uploads(std::int64_t when) = 0;

  // Live streams.
  virtual void add_stream(const Stream &s) = 0;
  virtual std::optional<Stream> stream(const std::string &id) = 0;
  virtual std::optional<Stream> stream_by_key_hash(const std::string &key_hash) = 0;
  virtual std::vector<Stream> streams() = 0; // oldest first
  virtual bool delete_stream(const std::string &id) = 0;

  // Webhooks (store/*_webhooks.cpp). delete_webhook removes its deliveries too; false when there was none.
  virtual void add_webhook(const Webhook &w) = 0;
  virtual std::optional<Webhook> webhook(const std::string &id) = 0;
  virtual std::vector<Webhook> webhooks() = 0; // oldest first
  virtual bool delete_webhook(const std::string &id) = 0;
  // A new secret; the one it replaces still signs until previous_until. False when there is no such endpoint.
  virtual bool rotate_webhook_secret(const std::string &id, const std::string &secret, std::int64_t previous_until) = 0;
  // The endpoint's deliveries, newest first.
  virtual std::vector<Delivery> deliveries(const std::string &webhook_id, int limit = 100) = 0;
  // Writes each event to the outbox on its own (a state the catalog does not keep, like a live stream's): one
  // delivery per endpoint subscribed to its type, due at `now`. Returns how many deliveries were written.
  virtual int add_events(const std::vector<OutboxEvent> &events, std::int64_t now) = 0;
  // Claims up to `limit` due deliveries, at most one per endpoint and only the oldest pending one of each (an
  // endpoint's deliveries go out in order): attempts + 1, leased until now + lease_us. With several processes each
  // delivery is claimed by one (PostgreSQL: FOR UPDATE SKIP LOCKED), and claimed again once its lease ran out. Now and
  // then (one call in 600 on a connection: every 10 minutes at one a second) it first forgets the deliveries that
  // ended more than 30 days ago.
  virtual std::vector<ClaimedDelivery> claim_deliveries(std::int64_t now, std::int64_t lease_us, int limit) = 0;
  // Writes an attempt's outcome (state, next_attempt, last_status, last_error, last_attempt; body when none was kept)
  // while d.attempts is still its claim's; false, changing nothing, when it was claimed again meanwhile.
  virtual bool finish_delivery(const Delivery &d) = 0;

  // Readiness: a trivial query succeeds.
  virtual bool ping() = 0;
  // Whether a write lands now (a read-only, immutable or full catalog refuses writes that reads do not notice):
  // the outcome of the latest write when it is younger than max_age_us, else of a real write made to find out
  // (one small committed change), so that asking often costs nothing. Never throws; never waits for a lock.
  virtual bool writable(std::int64_t max_age_us = 5'000'000) = 0;
};

// Opens (creating if needed) the SQLite catalog at path, in WAL mode, and migrates its schema.
std::unique_ptr<Store> open_sqlite(const std::string &path);
// Connects to a PostgreSQL catalog (a libpq URI, postgresql://..., or keyword string, "host=... dbname=...") and
// migrates its schema under an advisory lock, so that processes starting at once migrate it once.
// timeout_s ([store] timeout) bounds connecting and each statement: a server that does not answer fails the call (Io).
std::unique_ptr<Store> open_postgres(const std::string &conninfo, int timeout_s = 10);

// [store] url: "" (the data folder's sluice.db), sqlite:///PATH (relative: in the data folder), postgresql://...,
// postgres://... or a libpq keyword string.
enum class Backend { Sqlite, Postgres };
// The backend a url names; throws Error (Invalid) naming [store] url, without its password, when it is malformed.
Backend check_url(const std::string &url);
// The url as it may be shown: the password replaced by ***.
std::string redact_url(const std::string &url);
// Opens the catalog that url names (check_url's errors, then the backend's).
std::unique_ptr<Store> open(const std::string &url, const std::string &data_dir, int timeout_s = 10);

// A list of names as the catalog keeps it ("a,b"), and back.
std::string join_names(const std::vector<std::string> &names);
std::vector<std::string> split_names(const std::string &list);

// A fresh random id: 16 lowercase hex digits.
std::string new_id();
bool is_id(const std::string &s);

} // namespace sluice::store
