// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog: one WAL-mode database file, cached prepared statements, schema versioned by user_version.
#include "store/store.h"

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

constexpr int kSchemaVersion = 4;
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
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kSchemaVersion);

#define KEY_COLUMNS "name, hash, scopes, created, last_used, revoked"
#define VIDEO_COLUMNS "id, title, description, filename, source, size, probe_json, created, playback_policy"
#define JOB_COLUMNS                                                                                                    \
  "seq, id, video_id, pipeline, encoder, ladder, params_json, state, priority, attempts, max_attempts, created, "      \
  "started, finished, not_before, error_code, error, result_json"

struct DbCloser {
  void operator()(sqlite3 *db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt *s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// SQLite's result code of the latest db_error() on this thread (what made a write fail; a rollback that follows resets
// the connection's own).
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

// One use of a cached statement: binds, steps, reads columns, and resets it (clearing the bindings) at scope end,
// so that no statement stays active and holds a read transaction open.
class Query {
public:
  Query(sqlite3 *db, const std::string &path, sqlite3_stmt *stmt, std::string what)
      : db_(db), path_(path), stmt_(stmt), what_(std::move(what)) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query &) = delete;
  Query &operator=(const Query &) = delete;

  Query &bind(int i, const std::string &v) {
    check(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Query &bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Query &bind(int i, int v) {
    check(sqlite3_bind_int(stmt_, i, v));
    return *this;
  }

  // True when a row is available, false when done.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    throw db_error(db_, path_, what_);
  }
  // Runs a statement that returns no rows.
  void run() {
    while (step()) {
    }
  }

  std::string text(int col) const {
    const auto *p = reinterpret_cast<const char *>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  int int32(int col) const { return sqlite3_column_int(stmt_, col); }

private:
  void check(int rc) {
    if (rc != SQLITE_OK)
      throw db_error(db_, path_, what_);
  }

  sqlite3 *db_;
  const std::string &path_;
  sqlite3_stmt *stmt_;
  std::string what_;
};

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

class SqliteStore : public Store {
public:
  explicit SqliteStore(const std::string &path);

  void add_video(const Video &v) override;
  std::optional<Video> video(const std::string &id) override;
  std::vector<Video> videos(int limit) override;
  bool delete_video(const std::string &id) override;
  bool set_playback_policy(const std::string &id, const std::string &policy) override;

  std::int64_t add_job(const Job &j) override;
  std::optional<Job> job(const std::string &id) override;
  std::vector<Job> jobs(const JobFilter &f) override;
  void update_job(const Job &j) override;
  std::optional<Job> next_queued(std::int64_t now) override;
  int count_jobs(JobState s) override;
  std::vector<Job> requeue_running() override;

  bool ping() override;
  std::optional<StoredAnswer> stored_answer(const std::string &scope, const std::string &key,
                                            std::int64_t since) override;
  void store_answer(const StoredAnswer &a, std::int64_t forget_before) override;
  bool writable(std::int64_t max_age_us) override;

  void add_key(const ApiKey &k) override;
  std::optional<ApiKey> key_by_hash(const std::string &hash) override;
  std::vector<ApiKey> keys() override;
  bool revoke_key(const std::string &name, std::int64_t when) override;
  void touch_key(const std::string &hash, std::int64_t when) override;

private:
  // A write transaction (BEGIN IMMEDIATE) rolled back unless committed.
  class Transaction {
  public:
    explicit Transaction(SqliteStore &s) : s_(s) { s_.exec("BEGIN IMMEDIATE", "begin a transaction"); }
    ~Transaction() {
      if (!done_)
        sqlite3_exec(s_.db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Transaction(const Transaction &) = delete;
    Transaction &operator=(const Transaction &) = delete;
    void commit() {
      s_.exec("COMMIT", "commit a transaction");
      done_ = true;
    }

  private:
    SqliteStore &s_;
    bool done_ = false;
  };

  // Runs one write of the catalog, remembering whether the catalog took it (see writable()).
  template <typename Fn> auto write(Fn &&fn) -> decltype(fn()) {
    last_db_error = SQLITE_OK;
    try {
      if constexpr (std::is_void_v<decltype(fn())>) {
        fn();
        wrote(true);
      } else {
        auto r = fn();
        wrote(true);
        return r;
      }
    } catch (const Error &) {
      // A write refused for what it holds (a duplicate id, an unknown video) says nothing of the file.
      int primary = last_db_error & 0xff;
      wrote(primary == SQLITE_CONSTRAINT || primary == SQLITE_OK);
      throw;
    }
  }
  void wrote(bool ok) {
    write_ok_ = ok;
    write_checked_ = g_get_monotonic_time();
  }
  void exec(const char *sql, const std::string &what);
  std::int64_t pragma_int(const char *sql, const std::string &what);
  void migrate();
  StmtPtr prepare(const char *sql, const char *what = nullptr);
  Query query(const StmtPtr &stmt, std::string what) { return Query(db_.get(), path_, stmt.get(), std::move(what)); }
  Job read_job(const Query &q) const;

  std::string path_;
  DbPtr db_; // declared before the statements: they are finalized first
  StmtPtr add_video_, video_, videos_, delete_video_, set_policy_;
  StmtPtr add_job_, job_, update_job_, next_queued_, count_jobs_, running_jobs_, requeue_running_, ping_;
  StmtPtr jobs_[4]; // by filter: [state given * 2 + video given]
  StmtPtr answer_, add_answer_, forget_answers_;
  StmtPtr add_key_, key_by_hash_, keys_, revoke_key_, touch_key_;
  // The outcome of the latest write and when it was (monotonic microseconds; 0: none yet).
  bool write_ok_ = true;
  std::int64_t write_checked_ = 0;
};

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
  add_job_ = prepare("INSERT INTO jobs (id, video_id, pipeline, encoder, ladder, params_json, state, priority, "
                     "attempts, max_attempts, created, started, finished, not_before, error_code, error, result_json) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)");
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
    q.bind(15, j.error_code).bind(16, j.error).bind(17, j.result_json);
    q.run();
    return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_.get()));
  });
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

std::optional<StoredAnswer> SqliteStore::stored_answer(const std::string &scope, const std::string &key,
                                                       std::int64_t since) {
  Query q = query(answer_, "read a kept answer");
  q.bind(1, scope).bind(2, key).bind(3, since);
  if (!q.step())
    return std::nullopt;
  StoredAnswer a;
  a.scope = scope;
  a.key = key;
  a.fingerprint = q.text(0);
  a.status = q.int32(1);
  a.body = q.text(2);
  a.location = q.text(3);
  a.created = q.int64(4);
  return a;
}

void SqliteStore::store_answer(const StoredAnswer &a, std::int64_t forget_before) {
  write([&] {
    Transaction t(*this);
    {
      Query q = query(forget_answers_, "forget old answers");
      q.bind(1, forget_before);
      q.run();
    }
    {
      Query q = query(add_answer_, "keep an answer");
      q.bind(1, a.scope).bind(2, a.key).bind(3, a.fingerprint).bind(4, a.status).bind(5, a.body);
      q.bind(6, a.location).bind(7, a.created).bind(8, forget_before);
      q.run();
    }
    t.commit();
  });
}

namespace {

ApiKey read_key(const Query &q) {
  ApiKey k;
  k.name = q.text(0);
  k.hash = q.text(1);
  k.scopes = q.text(2);
  k.created = q.int64(3);
  k.last_used = q.int64(4);
  k.revoked = q.int64(5);
  return k;
}

} // namespace

void SqliteStore::add_key(const ApiKey &k) {
  for (const ApiKey &other : keys())
    if (other.name == k.name && !other.revoked)
      throw Error("a key named '" + k.name + "' exists already (revoke it first, or choose another name)");
  write([&] {
    Query q = query(add_key_, "add an API key");
    q.bind(1, k.name).bind(2, k.hash).bind(3, k.scopes).bind(4, k.created);
    q.run();
  });
}

std::optional<ApiKey> SqliteStore::key_by_hash(const std::string &hash) {
  Query q = query(key_by_hash_, "look up an API key");
  q.bind(1, hash);
  if (!q.step())
    return std::nullopt;
  return read_key(q);
}

std::vector<ApiKey> SqliteStore::keys() {
  Query q = query(keys_, "list the API keys");
  std::vector<ApiKey> out;
  while (q.step())
    out.push_back(read_key(q));
  return out;
}

bool SqliteStore::revoke_key(const std::string &name, std::int64_t when) {
  return write([&] {
    Query q = query(revoke_key_, "revoke an API key");
    q.bind(1, name).bind(2, when);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

void SqliteStore::touch_key(const std::string &hash, std::int64_t when) {
  write([&] {
    Query q = query(touch_key_, "note the use of an API key");
    q.bind(1, hash).bind(2, when);
    q.run();
  });
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

} // namespace

std::unique_ptr<Store> open_sqlite(const std::string &path) {
  return std::make_unique<SqliteStore>(path);
}

} // namespace sluice::store
