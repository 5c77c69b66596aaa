// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog: one libpq connection, parameterised statements, schema versioned in sluice_schema.
#include "store/pg_internal.h"

#include "core/error.h"

#include <glib.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace sluice::store {

namespace {

constexpr int kSchemaVersion = 12;
// The advisory lock taken while the schema is read and migrated: "sluice" in ASCII.
constexpr std::int64_t kMigrationLock = 0x736c75696365;

// Each entry migrates the schema from version i to i + 1: the same tables as SQLite's (sqlite_store.cpp), in
// PostgreSQL's words. `ord` columns keep insertion order where SQLite uses its rowid.
const char *const kMigrations[] = {
    R"sql(
CREATE TABLE videos (
  id          TEXT PRIMARY KEY NOT NULL,
  title       TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  filename    TEXT NOT NULL DEFAULT '',
  source      TEXT NOT NULL DEFAULT '',
  size        BIGINT NOT NULL DEFAULT 0,
  probe_json  TEXT NOT NULL DEFAULT '',
  created     BIGINT NOT NULL DEFAULT 0,
  ord         BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX videos_by_created ON videos (created, ord);
CREATE TABLE jobs (
  seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
  created      BIGINT NOT NULL DEFAULT 0,
  started      BIGINT NOT NULL DEFAULT 0,
  finished     BIGINT NOT NULL DEFAULT 0,
  not_before   BIGINT NOT NULL DEFAULT 0,
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
  created     BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX answers_by_created ON answers (created);
)sql",
    // 3: API keys, kept as hashes; a revoked key stays listed, and its name can be given again.
    R"sql(
CREATE TABLE api_keys (
  id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name      TEXT NOT NULL,
  hash      TEXT NOT NULL UNIQUE,
  scopes    TEXT NOT NULL,
  created   BIGINT NOT NULL,
  last_used BIGINT NOT NULL DEFAULT 0,
  revoked   BIGINT NOT NULL DEFAULT 0
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
  length     BIGINT NOT NULL DEFAULT -1,
  received   BIGINT NOT NULL DEFAULT 0,
  metadata   TEXT NOT NULL DEFAULT '',
  concat     TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL CHECK (state IN ('receiving', 'processing', 'completed', 'failed')),
  video_id   TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  error      TEXT NOT NULL DEFAULT '',
  direct_id  TEXT NOT NULL DEFAULT '',
  created    BIGINT NOT NULL,
  expires    BIGINT NOT NULL,
  ord        BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE TABLE direct_uploads (
  id         TEXT PRIMARY KEY NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  max_size   BIGINT NOT NULL,
  origin     TEXT NOT NULL DEFAULT '',
  metadata   TEXT NOT NULL DEFAULT '',
  upload_id  TEXT NOT NULL DEFAULT '',
  created    BIGINT NOT NULL,
  expires    BIGINT NOT NULL
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
  created  BIGINT NOT NULL,
  ord      BIGINT GENERATED ALWAYS AS IDENTITY
);
)sql",
    // 7: claiming jobs with leases (the worker, until when, the fencing token), and the workers that claim them.
    R"sql(
ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN leased_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN token BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_lease ON jobs (state, leased_until);
CREATE TABLE workers (
  name       TEXT PRIMARY KEY NOT NULL,
  role       TEXT NOT NULL,
  started    BIGINT NOT NULL,
  heartbeat  BIGINT NOT NULL,
  encoders   TEXT NOT NULL DEFAULT '',
  concurrent INTEGER NOT NULL DEFAULT 0
);
)sql",
    // 8: the events of every process (jobs/pg_bus.h): ids from a sequence, in the order of commits (the lock), each
    // NOTIFYed on sluice_events as "ID\nNAME\nJOB\nVIDEO\nDATA", or as its id alone when that does not fit.
    R"sql(
CREATE TABLE events (
  id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created  BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT,
  name     TEXT NOT NULL,
  job_id   TEXT NOT NULL DEFAULT '',
  video_id TEXT NOT NULL DEFAULT '',
  data     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_by_created ON events (created);
CREATE FUNCTION sluice_publish_event(p_name TEXT, p_job TEXT, p_video TEXT, p_data TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
  new_id BIGINT;
  line TEXT;
BEGIN
  -- Held until the commit: the next event's id is taken once this one is visible, so listeners see ids in order.
  PERFORM pg_advisory_xact_lock(8317151707346054501);
  INSERT INTO events (name, job_id, video_id, data) VALUES (p_name, p_job, p_video, p_data) RETURNING id INTO new_id;
  line := new_id::TEXT || E'\n' || p_name || E'\n' || p_job || E'\n' || p_video || E'\n' || p_data;
  PERFORM pg_notify('sluice_events', CASE WHEN octet_length(line) < 8000 THEN line ELSE new_id::TEXT END);
  RETURN new_id;
END
$$;
)sql",
    // 9: fencing tokens from one sequence, so that they are unique across jobs (a package's version prefix is its
    // claim's token: two jobs of one video and pipeline must not share one).
    R"sql(
CREATE SEQUENCE job_tokens;
DO $$ BEGIN PERFORM setval('job_tokens', (SELECT COALESCE(MAX(token), 0) + 1 FROM jobs), false); END $$;
)sql",
    // 10: a job's weight (the cores it keeps busy, from its description; 0: all of its worker's), kept with it when it
    // is queued so that a claim compares it with the worker's free capacity in the statement; a worker's capacity and
    // the weight it runs. Jobs queued before weigh 1, what a slot was.
    R"sql(
ALTER TABLE jobs ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
ALTER TABLE workers ADD COLUMN capacity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
)sql",
    // 11: resumable uploads that go to the bucket as they arrive: the multipart upload, its parts, and the process
    // holding the bytes after them.
    R"sql(
ALTER TABLE uploads ADD COLUMN multipart TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN parts TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN held_from BIGINT NOT NULL DEFAULT 0;
)sql",
    // 12: webhooks: the endpoints (their secrets kept for signing), and the outbox of their deliveries, written in
    // the transaction of the state change each reports, claimed with a lease and fenced by its attempts.
    R"sql(
CREATE TABLE webhooks (
  id              TEXT PRIMARY KEY NOT NULL,
  url             TEXT NOT NULL,
  events          TEXT NOT NULL,
  description     TEXT NOT NULL DEFAULT '',
  secret          TEXT NOT NULL,
  previous_secret TEXT NOT NULL DEFAULT '',
  previous_until  BIGINT NOT NULL DEFAULT 0,
  created         BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
  seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id           TEXT NOT NULL UNIQUE,
  event_id     TEXT NOT NULL,
  webhook_id   TEXT NOT NULL,
  type         TEXT NOT NULL,
  subject      TEXT NOT NULL,
  created      BIGINT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending',
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_attempt BIGINT NOT NULL DEFAULT 0,
  leased_until BIGINT NOT NULL DEFAULT 0,
  last_status  INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT NOT NULL DEFAULT '',
  last_attempt BIGINT NOT NULL DEFAULT 0,
  body         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (last_attempt) WHERE state <> 'pending';
)sql",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kSchemaVersion);

// The SQLSTATE of the latest failed statement on this thread ("" : none, or the connection itself failed).
thread_local std::string last_sqlstate;

// SQLite's words for the constraint a statement broke, so that the catalog's messages read the same on both.
const char *constraint_words(const std::string &sqlstate) {
  if (sqlstate == "23505")
    return " (UNIQUE constraint failed)";
  if (sqlstate == "23503")
    return " (FOREIGN KEY constraint failed)";
  if (sqlstate == "23514")
    return " (CHECK constraint failed)";
  if (sqlstate == "23502")
    return " (NOT NULL constraint failed)";
  return "";
}

} // namespace

namespace pg {

std::string trimmed(const char *text) {
  std::string s = text ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::int64_t Rows::int64(int row, int col) const {
  return std::strtoll(PQgetvalue(r_.get(), row, col), nullptr, 10);
}

std::int64_t Rows::changed() const {
  return std::strtoll(PQcmdTuples(r_.get()), nullptr, 10);
}

Video read_video(const Rows &r, int row) {
  Video v;
  v.id = r.text(row, 0);
  v.title = r.text(row, 1);
  v.description = r.text(row, 2);
  v.filename = r.text(row, 3);
  v.source = r.text(row, 4);
  v.size = r.int64(row, 5);
  v.probe_json = r.text(row, 6);
  v.created = r.int64(row, 7);
  v.playback_policy = r.text(row, 8);
  return v;
}

PgStore::PgStore(const std::string &conninfo, int timeout_s)
    : where_(redact_url(conninfo)), conninfo_(conninfo), timeout_us_(std::max(timeout_s, 2) * G_USEC_PER_SEC) {
  check_url(conninfo);
  connect();
  migrate();
}

void PgStore::connect() {
  // Fallbacks first: what the url says wins (expand_dbname).
  // Text goes both ways as UTF-8, whatever the database's own encoding.
  const char *keys[] = {"application_name", "connect_timeout", "client_encoding", "dbname", nullptr};
  const std::string timeout = std::to_string(timeout_us_ / G_USEC_PER_SEC);
  const char *values[] = {"sluice", timeout.c_str(), "UTF8", conninfo_.c_str(), nullptr};
  conn_.reset(PQconnectdbParams(keys, values, 1));
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)
    throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot connect: " +
                                   (conn_ ? trimmed(PQerrorMessage(conn_.get())) : std::string("out of memory")));
  // Notices (CREATE ... IF NOT EXISTS that skipped) are not the catalog's business on stderr.
  PQsetNoticeProcessor(
      conn_.get(), [](void *, const char *) {}, nullptr);
}

Rows PgStore::query(const char *sql, Params params, const std::string &what) {
  std::lock_guard lock(mu_);
  last_sqlstate.clear();
  std::vector<const char *> values;
  values.reserve(params.size());
  for (const Param &p : params) {
    if (p.text().find('\0') != std::string::npos) {
      last_sqlstate = "22021"; // character_not_in_repertoire: refused for what it holds
      throw Error(ErrorCode::Io,
                  "catalog " + where_ + ": cannot " + what + ": PostgreSQL text cannot hold a NUL byte (22021)");
    }
    values.push_back(p.text().c_str());
  }
  // A connection that broke (a server restart) is made again before the next statement, never in the middle of a
  // transaction.
  if (PQstatus(conn_.get()) != CONNECTION_OK && PQtransactionStatus(conn_.get()) != PQTRANS_INTRANS) {
    reconnect();
    if (PQstatus(conn_.get()) != CONNECTION_OK)
      throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot " + what +
                                     ": cannot connect: " + trimmed(PQerrorMessage(conn_.get())));
  }
  const bool idle = PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
  PGresult *r = exec_bounded(sql, static_cast<int>(values.size()), values.data());
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (timed_out_)
    throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot " + what + ": no answer within " +
                                   std::to_string(timeout_us_ / G_USEC_PER_SEC) + " s ([store] timeout)");
  // The server went away under an idle connection (a restart ends every session): the statement found the
  // connection broken. Made again and run once more, outside a transaction only (inside one, the transaction is lost
  // with the session: the caller's statement fails).
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && idle && PQstatus(conn_.get()) == CONNECTION_BAD) {
    PQclear(r);
    r = nullptr;
    reconnect();
    if (PQstatus(conn_.get()) == CONNECTION_OK) {
      r = exec_bounded(sql, static_cast<int>(values.size()), values.data());
      st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
      if (timed_out_)
        throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot " + what + ": no answer within " +
                                       std::to_string(timeout_us_ / G_USEC_PER_SEC) + " s ([store] timeout)");
    }
  }
  Rows rows(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return rows;
  std::string msg;
  if (r && PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) {
    last_sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "";
    msg = trimmed(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) + constraint_words(last_sqlstate);
  } else {
    msg = trimmed(PQerrorMessage(conn_.get()));
  }
  throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot " + what + ": " + msg);
}

Rows PgStore::write(const char *sql, Params params, const std::string &what) {
  std::lock_guard lock(mu_);
  try {
    Rows r = query(sql, params, what);
    wrote(true);
    return r;
  } catch (const Error &) {
    // A write refused for what it holds (a duplicate id, an unknown video, a bad value) says nothing of the catalog.
    wrote(last_sqlstate.rfind("23", 0) == 0 || last_sqlstate.rfind("22", 0) == 0);
    throw;
  }
}

void PgStore::wrote(bool ok) {
  write_ok_ = ok;
  write_checked_ = g_get_monotonic_time();
}

void PgStore::migrate() {
  std::lock_guard lock(mu_);
  // Whichever process comes first migrates; the others wait for it here and then find the schema current.
  query("SELECT pg_advisory_lock($1)", {kMigrationLock}, "lock the schema for migration");
  struct Unlock {
    PgStore &s;
    ~Unlock() {
      try {
        s.query("SELECT pg_advisory_unlock($1)", {kMigrationLock}, "unlock the schema");
      } catch (const Error &) {
        // The session's lock goes with the connection.
      }
    }
  } unlock{*this};
  Transaction tx(*this);
  query("CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)", {}, "create the schema version table");
  Rows r = query("SELECT version FROM sluice_schema", {}, "read the schema version");
  std::int64_t version = 0;
  if (r.size() == 0)
    query("INSERT INTO sluice_schema (version) VALUES (0)", {}, "set the schema version");
  else
    version = r.int64(0, 0);
  if (version > kSchemaVersion || version < 0)
    throw Error(ErrorCode::Io, "catalog " + where_ + ": schema version " + std::to_string(version) +
                                   " is newer than this sluice supports (" + std::to_string(kSchemaVersion) + ")");
  if (version == kSchemaVersion)
    return; // the transaction rolls back: it changed nothing
  for (; version < kSchemaVersion; version++) {
    // A migration is several statements with no parameters: the simple query protocol runs them in one go.
    PGresult *m = exec_bounded(kMigrations[version], 0, nullptr, true);
    Rows held(m);
    if (!m || (PQresultStatus(m) != PGRES_COMMAND_OK && PQresultStatus(m) != PGRES_TUPLES_OK))
      throw Error(ErrorCode::Io, "catalog " + where_ + ": cannot migrate the schema to version " +
                                     std::to_string(version + 1) + ": " + trimmed(PQerrorMessage(conn_.get())));
  }
  query("UPDATE sluice_schema SET version = $1", {kSchemaVersion}, "set the schema version");
  tx.commit();
}

Job PgStore::read_job(const Rows &r, int row) const {
  Job j;
  j.seq = r.int64(row, 0);
  j.id = r.text(row, 1);
  j.video_id = r.text(row, 2);
  j.pipeline = r.text(row, 3);
  j.encoder = r.text(row, 4);
  j.ladder = r.text(row, 5);
  j.params_json = r.text(row, 6);
  std::string state = r.text(row, 7);
  auto s = parse_job_state(state);
  if (!s)
    throw Error(ErrorCode::Io, "catalog " + where_ + ": job " + j.id + " has an unknown state '" + state + "'");
  j.state = *s;
  j.priority = r.int32(row, 8);
  j.attempts = r.int32(row, 9);
  j.max_attempts = r.int32(row, 10);
  j.created = r.int64(row, 11);
  j.started = r.int64(row, 12);
  j.finished = r.int64(row, 13);
  j.not_before = r.int64(row, 14);
  j.error_code = r.text(row, 15);
  j.error = r.text(row, 16);
  j.result_json = r.text(row, 17);
  j.worker = r.text(row, 18);
  j.leased_until = r.int64(row, 19);
  j.token = r.int64(row, 20);
  j.weight = r.int32(row, 21);
  return j;
}

void PgStore::add_video(const Video &v) {
  write("INSERT INTO videos (" PG_VIDEO_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        {v.id, v.title, v.description, v.filename, v.source, v.size, v.probe_json, v.created, v.playback_policy},
        "add video " + v.id);
}

std::optional<Video> PgStore::video(const std::string &id) {
  Rows r = query("SELECT " PG_VIDEO_COLUMNS " FROM videos WHERE id = $1", {id}, "read video " + id);
  if (r.size() == 0)
    return std::nullopt;
  return read_video(r, 0);
}

std::vector<Video> PgStore::videos(int limit) {
  Rows r =
      query("SELECT " PG_VIDEO_COLUMNS " FROM videos ORDER BY created DESC, ord DESC LIMIT $1", {limit}, "list videos");
  std::vector<Video> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_video(r, i));
  return out;
}

bool PgStore::delete_video(const std::string &id) {
  return write("DELETE FROM videos WHERE id = $1", {id}, "delete video " + id).changed() > 0;
}

bool PgStore::set_playback_policy(const std::string &id, const std::string &policy) {
  return write("UPDATE videos SET playback_policy = $2 WHERE id = $1", {id, policy},
               "set the playback policy of video " + id)
             .changed() > 0;
}

std::int64_t PgStore::add_job(const Job &j) {
  Rows r =
      write("INSERT INTO jobs (id, video_id, pipeline, encoder, ladder, params_json, state, priority, attempts, "
            "max_attempts, created, started, finished, not_before, error_code, error, result_json, weight) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING seq",
            {j.id, j.video_id, j.pipeline, j.encoder, j.ladder, j.params_json, job_state_name(j.state), j.priority,
             j.attempts, j.max_attempts, j.created, j.started, j.finished, j.not_before, j.error_code, j.error,
             j.result_json, j.weight},
            "add job " + j.id);
  return r.int64(0, 0);
}

void PgStore::add_video_with_jobs(const Video &v, std::vector<Job> &jobs, const std::vector<OutboxEvent> &events) {
  std::lock_guard lock(mu_);
  Transaction tx(*this);
  add_video(v);
  for (Job &j : jobs)
    j.seq = add_job(j);
  for (const auto &e : events)
    fan_out(e, v.created ? v.created : g_get_real_time());
  tx.commit();
}

std::optional<Job> PgStore::job(const std::string &id) {
  Rows r = query("SELECT " PG_JOB_COLUMNS " FROM jobs WHERE id = $1", {id}, "read job " + id);
  if (r.size() == 0)
    return std::nullopt;
  return read_job(r, 0);
}

std::vector<Job> PgStore::jobs(const JobFilter &f) {
  Rows r = query("SELECT " PG_JOB_COLUMNS " FROM jobs WHERE ($2 = '' OR state = $2) AND ($3 = '' OR video_id = $3) "
                 "ORDER BY seq DESC LIMIT $1",
                 {f.limit, f.state ? job_state_name(*f.state) : "", f.video_id}, "list jobs");
  std::vector<Job> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_job(r, i));
  return out;
}

void PgStore::update_job(const Job &j) {
  Rows r = write("UPDATE jobs SET state = $2, priority = $3, attempts = $4, max_attempts = $5, started = $6, "
                 "finished = $7, not_before = $8, error_code = $9, error = $10, result_json = $11 WHERE id = $1",
                 {j.id, job_state_name(j.state), j.priority, j.attempts, j.max_attempts, j.started, j.finished,
                  j.not_before, j.error_code, j.error, j.result_json},
                 "update job " + j.id);
  if (r.changed() == 0)
    throw Error(ErrorCode::NotFound, "catalog " + where_ + ": cannot update job " + j.id + ": no such job");
}

std::optional<Job> PgStore::next_queued(std::int64_t now) {
  Rows r = query("SELECT " PG_JOB_COLUMNS " FROM jobs WHERE state = 'queued' AND not_before <= $1 "
                 "ORDER BY priority DESC, created ASC, seq ASC LIMIT 1",
                 {now}, "find the next queued job");
  if (r.size() == 0)
    return std::nullopt;
  return read_job(r, 0);
}

int PgStore::count_jobs(JobState s) {
  Rows r = query("SELECT count(*) FROM jobs WHERE state = $1", {job_state_name(s)},
                 std::string("count ") + job_state_name(s) + " jobs");
  return r.size() ? r.int32(0, 0) : 0;
}

std::vector<Job> PgStore::requeue_running() {
  // One statement: the rows it changed, as they are now (queued), in the order they were added.
  Rows r = write("UPDATE jobs SET state = 'queued' WHERE state = 'running' RETURNING " PG_JOB_COLUMNS, {},
                 "requeue running jobs");
  std::vector<Job> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_job(r, i));
  std::sort(out.begin(), out.end(), [](const Job &a, const Job &b) { return a.seq < b.seq; });
  return out;
}

bool PgStore::ping() {
  try {
    Rows r = query("SELECT 1", {}, "ping");
    return r.size() == 1 && r.int32(0, 0) == 1;
  } catch (const Error &) {
    return false;
  }
}

bool PgStore::writable(std::int64_t max_age_us) {
  std::lock_guard lock(mu_);
  if (write_checked_ && g_get_monotonic_time() - write_checked_ < max_age_us)
    return write_ok_;
  // A real, tiny write that changes nothing (the schema version rewritten with itself), committed. It does not wait
  // for a lock: a catalog that is busy is not a catalog that cannot be written.
  try {
    Transaction tx(*this);
    query("SET LOCAL lock_timeout = '1ms'", {}, "set a lock timeout");
    query("UPDATE sluice_schema SET version = version", {}, "probe a write");
    tx.commit();
    wrote(true);
  } catch (const Error &) {
    if (last_sqlstate == "55P03" || last_sqlstate == "40P01")
      return write_ok_; // lock_not_available, deadlock: busy
    wrote(false);
  }
  return write_ok_;
}

} // namespace pg

std::unique_ptr<Store> open_postgres(const std::string &conninfo, int timeout_s) {
  return std::make_unique<pg::PgStore>(conninfo, timeout_s);
}

} // namespace sluice::store
