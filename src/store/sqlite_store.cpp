// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog: one WAL-mode database file, cached prepared statements, schema versioned by user_version.
#include "store/sqlite_internal.h"

#include "core/error.h"

#include <glib.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <type_traits>
#include <utility>

namespace sluice::store {

namespace {

constexpr int kSchemaVersion = 11;
constexpr int kBusyTimeoutMs = 5000;

// Each entry migrates the schema from version i to i + 1.
const char *const kMigrations[] = {
    R"sql(
CREATE TABLE videos (
  id          TEXT PRIMARY KEY NOT NULL,
  title       TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  filename    TEXT NOT NULL DEFAULT '',
  source      TEXT NOT NULL DEFAULT '',
  size        INTEGER NOT NULL DEFAULT 0,
  probe_json  TEXT NOT NULL DEFAULT '',
  created     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX videos_by_created ON videos (created);
CREATE TABLE jobs (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  id           TEXT NOT NULL UNIQUE,
  video_id     TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
  pipeline     TEXT NOT NULL DEFAULT '',
  encoder      TEXT NOT NULL DEFAULT '',
  ladder       TEXT NOT NULL DEFAULT '',
  params_json  TEXT NOT NULL DEFAULT '',
  state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  priority     INTEGER NOT NULL DEFAULT 0,
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3,
  created      INTEGER NOT NULL DEFAULT 0,
  started      INTEGER NOT NULL DEFAULT 0,
  finished     INTEGER NOT NULL DEFAULT 0,
  not_before   INTEGER NOT NULL DEFAULT 0,
  error_code   TEXT NOT NULL DEFAULT '',
  error        TEXT NOT NULL DEFAULT '',
  result_json  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_next ON jobs (state, priority DESC, created, seq);
CREATE INDEX jobs_by_video ON jobs (video_id, seq);
)sql",
    // 2: answers kept for Idempotency-Key retries.
    R"sql(
CREATE TABLE answers (
  scope       TEXT NOT NULL,
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL DEFAULT '',
  status      INTEGER NOT NULL,
  body        TEXT NOT NULL DEFAULT '',
  location    TEXT NOT NULL DEFAULT '',
  created     INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX answers_by_created ON answers (created);
)sql",
    // 3: API keys, kept as hashes; a revoked key stays listed, and its name can be given again.
    R"sql(
CREATE TABLE api_keys (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  name      TEXT NOT NULL,
  hash      TEXT NOT NULL UNIQUE,
  scopes    TEXT NOT NULL,
  created   INTEGER NOT NULL,
  last_used INTEGER NOT NULL DEFAULT 0,
  revoked   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked = 0;
)sql",
    // 4: a video's playback policy: public, or signed (its media need a playback token).
    R"sql(
ALTER TABLE videos ADD COLUMN playback_policy TEXT NOT NULL DEFAULT 'public'
  CHECK (playback_policy IN ('public', 'signed'));
)sql",
    // 5: resumable uploads (tus) while they arrive, and direct uploads (one-time permissions to make one).
    R"sql(
CREATE TABLE uploads (
  id         TEXT PRIMARY KEY NOT NULL,
  length     INTEGER NOT NULL DEFAULT -1,
  received   INTEGER NOT NULL DEFAULT 0,
  metadata   TEXT NOT NULL DEFAULT '',
  concat     TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL CHECK (state IN ('receiving', 'processing', 'completed', 'failed')),
  video_id   TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  error      TEXT NOT NULL DEFAULT '',
  direct_id  TEXT NOT NULL DEFAULT '',
  created    INTEGER NOT NULL,
  expires    INTEGER NOT NULL
);
CREATE TABLE direct_uploads (
  id         TEXT PRIMARY KEY NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  max_size   INTEGER NOT NULL,
  origin     TEXT NOT NULL DEFAULT '',
  metadata   TEXT NOT NULL DEFAULT '',
  upload_id  TEXT NOT NULL DEFAULT '',
  created    INTEGER NOT NULL,
  expires    INTEGER NOT NULL
);
CREATE INDEX direct_uploads_by_expiry ON direct_uploads (expires);
)sql",
    // 6: live streams.
    R"sql(
CREATE TABLE streams (
  id       TEXT PRIMARY KEY NOT NULL,
  title    TEXT NOT NULL DEFAULT '',
  key_hash TEXT NOT NULL UNIQUE,
  pipeline TEXT NOT NULL,
  ladder   TEXT NOT NULL DEFAULT '',
  record   INTEGER NOT NULL DEFAULT 0,
  source   TEXT NOT NULL DEFAULT '',
  created  INTEGER NOT NULL
);
)sql",
    // 7: claiming jobs with leases (the worker, until when, the fencing token), and the workers that claim them.
    R"sql(
ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN leased_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_lease ON jobs (state, leased_until);
CREATE TABLE workers (
  name       TEXT PRIMARY KEY NOT NULL,
  role       TEXT NOT NULL,
  started    INTEGER NOT NULL,
  heartbeat  INTEGER NOT NULL,
  encoders   TEXT NOT NULL DEFAULT '',
  concurrent INTEGER NOT NULL DEFAULT 0
);
)sql",
    // 8: fencing tokens unique across jobs (a package's version prefix is its claim's token): the next one is the
    // largest + 1, found through this index.
    R"sql(
CREATE INDEX jobs_by_token ON jobs (token);
)sql",
    // 9: a job's weight (the cores it keeps busy, from its description; 0: all of its worker's), kept with it when it
    // is queued so that a claim compares it with the worker's free capacity in the statement; a worker's capacity and
    // the weight it runs. Jobs queued before weigh 1, what a slot was.
    R"sql(
ALTER TABLE jobs ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
ALTER TABLE workers ADD COLUMN capacity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
)sql",
    // 10: resumable uploads that go to the bucket as they arrive: the multipart upload, its parts, and the process
    // holding the bytes after them.
    R"sql(
ALTER TABLE uploads ADD COLUMN multipart TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN parts TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN held_from INTEGER NOT NULL DEFAULT 0;
)sql",
    // 11: webhooks: the endpoints (their secrets kept for signing), and the outbox of their deliveries, written in
    // the transaction of the state change each reports, claimed with a lease and fenced by its attempts.
    R"sql(
CREATE TABLE webhooks (
  id              TEXT PRIMARY KEY NOT NULL,
  url             TEXT NOT NULL,
  events          TEXT NOT NULL,
  description     TEXT NOT NULL DEFAULT '',
  secret          TEXT NOT NULL,
  previous_secret TEXT NOT NULL DEFAULT '',
  previous_until  INTEGER NOT NULL DEFAULT 0,
  created         INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  id           TEXT NOT NULL UNIQUE,
  event_id     TEXT NOT NULL,
  webhook_id   TEXT NOT NULL,
  type         TEXT NOT NULL,
  subject      TEXT NOT NULL,
  created      INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending',
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_attempt INTEGER NOT NULL DEFAULT 0,
  leased_until INTEGER NOT NULL DEFAULT 0,
  last_status  INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT NOT NULL DEFAULT '',
  last_attempt INTEGER NOT NULL DEFAULT 0,
  body         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (last_attempt) WHERE state <> 'pending';
)sql",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kSchemaVersion);

} // namespace

namespace sqlite {

thread_local int last_db_error = SQLITE_OK;

// The catalog's error: what was being done, where, and SQLite's own words (with the system's, when the file system
// refused). Always Io: the server answers it 503 unavailable, whatever the route.
Error db_error(sqlite3 *db, const std::string &path, const std::string &what) {
  std::string msg = "catalog " + path + ": cannot " + what;
  last_db_error = db ? sqlite3_extended_errcode(db) : SQLITE_NOMEM;
  if (db) {
    msg += std::string(": ") + sqlite3_errmsg(db);
    int primary = last_db_error & 0xff;
    int err = sqlite3_system_errno(db);
    if ((primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN) && err)
      msg += std::string(" (") + std::strerror(err) + ")";
  }
  return Error(ErrorCode::Io, msg);
}

namespace {

// Why a database could not be opened. SQLite's own errno is of its last attempt (often a read-only retry, hence
// ENOENT for a folder we may not write), so the folder is checked first.
std::string open_failure(const std::string &path, sqlite3 *db) {
  if (!db)
    return "out of memory";
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty())
    dir = ".";
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 && errno == ENOENT)
    return "the folder " + dir + " does not exist";
  if (stat(dir.c_str(), &st) != 0)
    return "the folder " + dir + " cannot be used (" + std::strerror(errno) + ")";
  if (!S_ISDIR(st.st_mode))
    return dir + " is not a folder";
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    return "the folder " + dir + " is not writable (" + std::strerror(errno) + ")";
  std::string msg = sqlite3_errmsg(db);
  if (int err = sqlite3_system_errno(db))
    msg += std::string(" (") + std::strerror(err) + ")";
  return msg;
}

} // namespace

Video read_video(const Query &q) {
  Video v;
  v.id = q.text(0);
  v.title = q.text(1);
  v.description = q.text(2);
  v.filename = q.text(3);
  v.source = q.text(4);
  v.size = q.int64(5);
  v.probe_json = q.text(6);
  v.created = q.int64(7);
  v.playback_policy = q.text(8);
  return v;
}

SqliteStore::SqliteStore(const std::string &path) : path_(path) {
  if (path.empty())
    throw Error(ErrorCode::Io, "catalog: no database path given");
  sqlite3 *raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  db_.reset(raw); // closed on every path out, even when opening failed
  if (rc != SQLITE_OK)
    throw Error(ErrorCode::Io, "catalog " + path + ": cannot open the database: " + open_failure(path, raw));
  if (sqlite3_db_readonly(raw, "main") == 1)
    throw Error(ErrorCode::Io, "catalog " + path + ": cannot open the database for writing (the file is read-only)");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);

  // journal_mode answers with the mode in effect; it is also the first read of the file, so a file that is not a
  // database fails here.
  {
    StmtPtr wal = prepare("PRAGMA journal_mode=WAL", "read the database");
    Query q(raw, path_, wal.get(), "switch to WAL mode");
    std::string mode = q.step() ? q.text(0) : "";
    if (mode != "wal" && mode != "memory")
      throw Error(ErrorCode::Io, "catalog " + path + ": cannot switch to WAL mode (journal mode is '" + mode + "')");
  }
  exec("PRAGMA synchronous=NORMAL", "set synchronous=NORMAL");
  exec("PRAGMA foreign_keys=ON", "enable foreign keys");
  migrate();

  add_video_ = prepare("INSERT INTO videos (" VIDEO_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  video_ = prepare("SELECT " VIDEO_COLUMNS " FROM videos WHERE id = ?1");
  videos_ = prepare("SELECT " VIDEO_COLUMNS " FROM videos ORDER BY created DESC, rowid DESC LIMIT ?1");
  delete_video_ = prepare("DELETE FROM videos WHERE id = ?1");
  set_policy_ = prepare("UPDATE videos SET playback_policy = ?2 WHERE id = ?1");
  add_job_ =
      prepare("INSERT INTO jobs (id, video_id, pipeline, encoder, ladder, params_json, state, priority, "
              "attempts, max_attempts, created, started, finished, not_before, error_code, error, result_json, "
              "weight) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)");
  job_ = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1");
  update_job_ =
      prepare("UPDATE jobs SET state = ?2, priority = ?3, attempts = ?4, max_attempts = ?5, started = ?6, "
              "finished = ?7, not_before = ?8, error_code = ?9, error = ?10, result_json = ?11 WHERE id = ?1");
  next_queued_ = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE state = 'queued' AND not_before <= ?1 "
                         "ORDER BY priority DESC, created ASC, seq ASC LIMIT 1");
  count_jobs_ = prepare("SELECT count(*) FROM jobs WHERE state = ?1");
  running_jobs_ = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE state = 'running' ORDER BY seq ASC");
  requeue_running_ = prepare("UPDATE jobs SET state = 'queued' WHERE state = 'running'");
  ping_ = prepare("SELECT 1");
  answer_ = prepare("SELECT fingerprint, status, body, location, created FROM answers "
                    "WHERE scope = ?1 AND key = ?2 AND created >= ?3");
  // The first answer under a key stays (a replay never replaces it).
  add_answer_ = prepare("INSERT INTO answers (scope, key, fingerprint, status, body, location, created) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (scope, key) DO UPDATE SET "
                        "fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body, "
                        "location = excluded.location, created = excluded.created WHERE answers.created < ?8");
  forget_answers_ = prepare("DELETE FROM answers WHERE created < ?1");
  add_key_ = prepare("INSERT INTO api_keys (name, hash, scopes, created) VALUES (?1, ?2, ?3, ?4)");
  key_by_hash_ = prepare("SELECT " KEY_COLUMNS " FROM api_keys WHERE hash = ?1");
  keys_ = prepare("SELECT " KEY_COLUMNS " FROM api_keys ORDER BY id ASC");
  revoke_key_ = prepare("UPDATE api_keys SET revoked = ?2 WHERE name = ?1 AND revoked = 0");
  touch_key_ = prepare("UPDATE api_keys SET last_used = ?2 WHERE hash = ?1");
  jobs_[0] = prepare("SELECT " JOB_COLUMNS " FROM jobs ORDER BY seq DESC LIMIT ?1");
  jobs_[1] = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE video_id = ?3 ORDER BY seq DESC LIMIT ?1");
  jobs_[2] = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE state = ?2 ORDER BY seq DESC LIMIT ?1");
  prepare_uploads();
  prepare_streams();
  prepare_claims();
  prepare_webhooks();
  jobs_[3] = prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE state = ?2 AND video_id = ?3 ORDER BY seq DESC LIMIT ?1");
}

StmtPtr SqliteStore::prepare(const char *sql, const char *what) {
  sqlite3_stmt *stmt = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    throw db_error(db_.get(), path_, what ? std::string(what) : std::string("prepare \"") + sql + "\"");
  }
  return StmtPtr(stmt);
}

void SqliteStore::exec(const char *sql, const std::string &what) {
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK)
    throw db_error(db_.get(), path_, what);
}

std::int64_t SqliteStore::pragma_int(const char *sql, const std::string &what) {
  StmtPtr stmt = prepare(sql);
  Query q(db_.get(), path_, stmt.get(), what);
  return q.step() ? q.int64(0) : 0;
}

void SqliteStore::migrate() {
  auto too_new = [&](std::int64_t v) {
    return Error(ErrorCode::Io, "catalog " + path_ + ": schema version " + std::to_string(v) +
                                    " is newer than this sluice supports (" + std::to_string(kSchemaVersion) + ")");
  };
  std::int64_t version = pragma_int("PRAGMA user_version", "read the schema version");
  if (version == kSchemaVersion)
    return;
  if (version > kSchemaVersion || version < 0)
    throw too_new(version);
  Transaction tx(*this);
  // Read again under the write lock: another process may have migrated meanwhile.
  version = pragma_int("PRAGMA user_version", "read the schema version");
  if (version > kSchemaVersion || version < 0)
    throw too_new(version);
  for (; version < kSchemaVersion; version++)
    exec(kMigrations[version], "migrate the schema to version " + std::to_string(version + 1));
  exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(), "set the schema version");
  tx.commit();
}

Job SqliteStore::read_job(const Query &q) const {
  Job j;
  j.seq = q.int64(0);
  j.id = q.text(1);
  j.video_id = q.text(2);
  j.pipeline = q.text(3);
  j.encoder = q.text(4);
  j.ladder = q.text(5);
  j.params_json = q.text(6);
  std::string state = q.text(7);
  auto s = parse_job_state(state);
  if (!s)
    throw Error(ErrorCode::Io, "catalog " + path_ + ": job " + j.id + " has an unknown state '" + state + "'");
  j.state = *s;
  j.priority = q.int32(8);
  j.attempts = q.int32(9);
  j.max_attempts = q.int32(10);
  j.created = q.int64(11);
  j.started = q.int64(12);
  j.finished = q.int64(13);
  j.not_before = q.int64(14);
  j.error_code = q.text(15);
  j.error = q.text(16);
  j.result_json = q.text(17);
  j.worker = q.text(18);
  j.leased_until = q.int64(19);
  j.token = q.int64(20);
  j.weight = q.int32(21);
  return j;
}

void SqliteStore::add_video(const Video &v) {
  write([&] {
    Query q = query(add_video_, "add video " + v.id);
    q.bind(1, v.id).bind(2, v.title).bind(3, v.description).bind(4, v.filename).bind(5, v.source);
    q.bind(6, v.size).bind(7, v.probe_json).bind(8, v.created).bind(9, v.playback_policy);
    q.run();
  });
}

std::optional<Video> SqliteStore::video(const std::string &id) {
  Query q = query(video_, "read video " + id);
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_video(q);
}

std::vector<Video> SqliteStore::videos(int limit) {
  Query q = query(videos_, "list videos");
  q.bind(1, limit);
  std::vector<Video> out;
  while (q.step())
    out.push_back(read_video(q));
  return out;
}

bool SqliteStore::delete_video(const std::string &id) {
  return write([&] {
    Query q = query(delete_video_, "delete video " + id);
    q.bind(1, id);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

bool SqliteStore::set_playback_policy(const std::string &id, const std::string &policy) {
  return write([&] {
    Query q = query(set_policy_, "set the playback policy of video " + id);
    q.bind(1, id).bind(2, policy);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

std::int64_t SqliteStore::add_job(const Job &j) {
  return write([&] {
    Query q = query(add_job_, "add job " + j.id);
    q.bind(1, j.id).bind(2, j.video_id).bind(3, j.pipeline).bind(4, j.encoder).bind(5, j.ladder);
    q.bind(6, j.params_json).bind(7, std::string(job_state_name(j.state))).bind(8, j.priority).bind(9, j.attempts);
    q.bind(10, j.max_attempts).bind(11, j.created).bind(12, j.started).bind(13, j.finished).bind(14, j.not_before);
    q.bind(15, j.error_code).bind(16, j.error).bind(17, j.result_json).bind(18, j.weight);
    q.run();
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  });
}

void SqliteStore::add_video_with_jobs(const Video &v, std::vector<Job> &jobs, const std::vector<OutboxEvent> &events) {
  Transaction tx(*this);
  add_video(v);
  for (Job &j : jobs)
    j.seq = add_job(j);
  for (const auto &e : events)
    fan_out(e, v.created ? v.created : g_get_real_time());
  tx.commit();
}

std::optional<Job> SqliteStore::job(const std::string &id) {
  Query q = query(job_, "read job " + id);
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_job(q);
}

std::vector<Job> SqliteStore::jobs(const JobFilter &f) {
  const StmtPtr &stmt = jobs_[(f.state ? 2 : 0) + (f.video_id.empty() ? 0 : 1)];
  Query q = query(stmt, "list jobs");
  q.bind(1, f.limit);
  if (f.state)
    q.bind(2, std::string(job_state_name(*f.state)));
  if (!f.video_id.empty())
    q.bind(3, f.video_id);
  std::vector<Job> out;
  while (q.step())
    out.push_back(read_job(q));
  return out;
}

void SqliteStore::update_job(const Job &j) {
  bool found = write([&] {
    Query q = query(update_job_, "update job " + j.id);
    q.bind(1, j.id).bind(2, std::string(job_state_name(j.state))).bind(3, j.priority).bind(4, j.attempts);
    q.bind(5, j.max_attempts).bind(6, j.started).bind(7, j.finished).bind(8, j.not_before).bind(9, j.error_code);
    q.bind(10, j.error).bind(11, j.result_json);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
  if (!found)
    throw Error(ErrorCode::NotFound, "catalog " + path_ + ": cannot update job " + j.id + ": no such job");
}

std::optional<Job> SqliteStore::next_queued(std::int64_t now) {
  Query q = query(next_queued_, "find the next queued job");
  q.bind(1, now);
  if (!q.step())
    return std::nullopt;
  return read_job(q);
}

int SqliteStore::count_jobs(JobState s) {
  Query q = query(count_jobs_, std::string("count ") + job_state_name(s) + " jobs");
  q.bind(1, std::string(job_state_name(s)));
  return q.step() ? q.int32(0) : 0;
}

std::vector<Job> SqliteStore::requeue_running() {
  std::vector<Job> out = write([&] {
    Transaction tx(*this);
    std::vector<Job> running;
    {
      Query q = query(running_jobs_, "list running jobs");
      while (q.step())
        running.push_back(read_job(q));
    }
    query(requeue_running_, "requeue running jobs").run();
    tx.commit();
    return running;
  });
  for (Job &j : out)
    j.state = JobState::Queued;
  return out;
}

bool SqliteStore::ping() {
  try {
    Query q = query(ping_, "ping");
    return q.step() && q.int32(0) == 1;
  } catch (const Error &) {
    return false;
  }
}

bool SqliteStore::writable(std::int64_t max_age_us) {
  if (write_checked_ && g_get_monotonic_time() - write_checked_ < max_age_us)
    return write_ok_;
  // Taking the write lock (BEGIN IMMEDIATE) is not enough: it succeeds on a file that cannot be written. Rewriting
  // the schema version with its own value is a real, tiny write (one page appended to the WAL) that changes nothing.
  // It does not wait for another writer: a catalog that is busy is not a catalog that cannot be written.
  static const std::string probe = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
  sqlite3_busy_timeout(db_.get(), 0);
  int rc = sqlite3_exec(db_.get(), probe.c_str(), nullptr, nullptr, nullptr);
  sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    return write_ok_;
  wrote(rc == SQLITE_OK);
  return write_ok_;
}

} // namespace sqlite

std::unique_ptr<Store> open_sqlite(const std::string &path) {
  return std::make_unique<sqlite::SqliteStore>(path);
}

} // namespace sluice::store
