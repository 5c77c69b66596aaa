// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog's insides, shared by its source files: the store class, its statements and one query.
#pragma once

#include "store/store.h"

#include "core/error.h"

#include <glib.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <type_traits>

namespace sluice::store::sqlite {

#define KEY_COLUMNS "name, hash, scopes, created, last_used, revoked"
#define VIDEO_COLUMNS "id, title, description, filename, source, size, probe_json, created, playback_policy"
#define JOB_COLUMNS                                                                                                    \
  "seq, id, video_id, pipeline, encoder, ladder, params_json, state, priority, attempts, max_attempts, created, "      \
  "started, finished, not_before, error_code, error, result_json, worker, leased_until, token, weight"

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
extern thread_local int last_db_error;

// The catalog's error: what was being done, where, and SQLite's own words. Always Io.
Error db_error(sqlite3 *db, const std::string &path, const std::string &what);

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

Video read_video(const Query &q);

class SqliteStore : public Store {
public:
  explicit SqliteStore(const std::string &path);

  void add_video(const Video &v) override;
  std::optional<Video> video(const std::string &id) override;
  std::vector<Video> videos(int limit) override;
  bool delete_video(const std::string &id) override;
  bool set_playback_policy(const std::string &id, const std::string &policy) override;

  std::int64_t add_job(const Job &j) override;
  void add_video_with_jobs(const Video &v, std::vector<Job> &jobs, const std::vector<OutboxEvent> &events) override;
  std::optional<Job> job(const std::string &id) override;
  std::vector<Job> jobs(const JobFilter &f) override;
  void update_job(const Job &j) override;
  std::optional<Job> next_queued(std::int64_t now) override;
  int count_jobs(JobState s) override;
  std::vector<Job> requeue_running() override;
  std::optional<Job> claim_job(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                               const std::vector<std::string> &encoders, const Room &room) override;
  bool renew_lease(const std::string &job_id, std::int64_t token, std::int64_t until) override;
  bool finish_job(const Job &j) override;
  EndAndClaim finish_and_claim(const Job &ended, const std::string &worker, std::int64_t now, std::int64_t lease_us,
                               const std::vector<std::string> &encoders, const Room &room) override;
  std::vector<Job> requeue_expired(std::int64_t now, const std::vector<std::string> &not_streaming = {}) override;
  void beat_worker(const Worker &w, std::int64_t forget_before) override;
  std::vector<Worker> workers() override;
  void remove_worker(const std::string &name) override;

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

  void add_upload(const ResumableUpload &u) override;
  std::optional<ResumableUpload> upload(const std::string &id) override;
  bool update_upload(const ResumableUpload &u) override;
  bool take_upload(const ResumableUpload &u, const std::string &from) override;
  bool delete_upload(const std::string &id) override;
  std::vector<ResumableUpload> uploads() override;
  void add_direct_upload(const DirectUpload &d) override;
  std::optional<DirectUpload> direct_upload_by_hash(const std::string &token_hash) override;
  bool claim_direct_upload(const std::string &id, const std::string &upload_id) override;
  void forget_direct_uploads(std::int64_t when) override;

  void add_stream(const Stream &s) override;
  std::optional<Stream> stream(const std::string &id) override;
  std::optional<Stream> stream_by_key_hash(const std::string &key_hash) override;
  std::vector<Stream> streams() override;
  bool delete_stream(const std::string &id) override;

  void add_webhook(const Webhook &w) override;
  std::optional<Webhook> webhook(const std::string &id) override;
  std::vector<Webhook> webhooks() override;
  bool delete_webhook(const std::string &id) override;
  bool rotate_webhook_secret(const std::string &id, const std::string &secret, std::int64_t previous_until) override;
  std::vector<Delivery> deliveries(const std::string &webhook_id, int limit) override;
  int add_events(const std::vector<OutboxEvent> &events, std::int64_t now) override;
  std::vector<ClaimedDelivery> claim_deliveries(std::int64_t now, std::int64_t lease_us, int limit) override;
  bool finish_delivery(const Delivery &d) override;

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
  void prepare_uploads();  // sqlite_uploads.cpp
  void prepare_streams();  // sqlite_streams.cpp
  void prepare_claims();   // sqlite_jobs.cpp
  void prepare_webhooks(); // sqlite_webhooks.cpp
  // One event's deliveries (one per endpoint subscribed to its type), inside the caller's transaction.
  int fan_out(const OutboxEvent &e, std::int64_t now);
  // The events of a job's end (finish_job), inside the caller's transaction.
  void job_end_events(const Job &j);
  // finish_job's statement, inside the caller's write.
  bool end_job(const Job &j);
  // claim_job's statement, inside a write transaction the caller holds.
  std::optional<Job> claim_next(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                const std::vector<std::string> &encoders, const Room &room);

  std::string path_;
  DbPtr db_; // declared before the statements: they are finalized first
  StmtPtr add_video_, video_, videos_, delete_video_, set_policy_;
  StmtPtr add_job_, job_, update_job_, next_queued_, count_jobs_, running_jobs_, requeue_running_, ping_;
  StmtPtr jobs_[4]; // by filter: [state given * 2 + video given]
  StmtPtr answer_, add_answer_, forget_answers_;
  StmtPtr add_key_, key_by_hash_, keys_, revoke_key_, touch_key_;
  StmtPtr add_upload_, upload_, update_upload_, take_upload_, delete_upload_, uploads_;
  StmtPtr add_direct_, direct_by_hash_, claim_direct_, forget_direct_;
  StmtPtr add_stream_, stream_, stream_by_key_, streams_, delete_stream_;
  StmtPtr claim_job_, renew_lease_, finish_job_, expired_jobs_, requeue_expired_, beat_worker_, forget_workers_,
      workers_, remove_worker_;
  StmtPtr add_webhook_, webhook_, webhooks_, delete_webhook_, delete_deliveries_, rotate_secret_, deliveries_, fan_out_,
      due_deliveries_, claim_delivery_, prune_deliveries_, finish_delivery_;
  // The outcome of the latest write and when it was (monotonic microseconds; 0: none yet).
  bool write_ok_ = true;
  std::int64_t write_checked_ = 0;
};

} // namespace sluice::store::sqlite
