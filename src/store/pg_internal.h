// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog's insides, shared by its source files: the store class, its results and parameters.
#pragma once

#include "store/store.h"

#include "core/error.h"

#include <libpq-fe.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::store::pg {

// A libpq message (PQerrorMessage, PQresultErrorMessage) without its trailing newline.
std::string trimmed(const char *text);

#define PG_KEY_COLUMNS "name, hash, scopes, created, last_used, revoked"
#define PG_VIDEO_COLUMNS "id, title, description, filename, source, size, probe_json, created, playback_policy"
#define PG_JOB_COLUMNS                                                                                                 \
  "seq, id, video_id, pipeline, encoder, ladder, params_json, state, priority, attempts, max_attempts, created, "      \
  "started, finished, not_before, error_code, error, result_json, worker, leased_until, token, weight"
// How many columns PG_JOB_COLUMNS names (a statement's own columns follow them).
constexpr int kJobColumns = 22;

struct ConnCloser {
  void operator()(PGconn *c) const { PQfinish(c); }
};
struct ResultClearer {
  void operator()(PGresult *r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;

// A query parameter, always sent as text (PQexecParams with text formats): strings as they are, numbers written out.
class Param {
public:
  Param(const std::string &s) : text_(s) {} // NOLINT(google-explicit-constructor)
  Param(const char *s) : text_(s) {}        // NOLINT(google-explicit-constructor)
  Param(std::int64_t v) : text_(std::to_string(v)) {}
  Param(int v) : text_(std::to_string(v)) {}
  const std::string &text() const { return text_; }

private:
  std::string text_;
};
using Params = std::initializer_list<Param>;

// The rows of one query.
class Rows {
public:
  explicit Rows(PGresult *r) : r_(r) {}
  int size() const { return PQntuples(r_.get()); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col), static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
  }
  std::int64_t int64(int row, int col) const;
  int int32(int row, int col) const { return static_cast<int>(int64(row, col)); }
  // Rows an UPDATE or DELETE changed.
  std::int64_t changed() const;

private:
  std::unique_ptr<PGresult, ResultClearer> r_;
};

Video read_video(const Rows &r, int row);

// PQexecParams (simple: PQexec) that waits for the server until `deadline` (monotonic microseconds) at most: sent,
// then read as the socket has it, so that a server that stopped answering never holds the caller longer. null when
// it failed (PQerrorMessage says why) or, with timed_out set, when the deadline passed: the connection is then in
// the middle of the statement and must be dropped. Shared by the catalog and the event hub's replay.
PGresult *exec_bounded(PGconn *c, const char *sql, int n, const char *const *values, bool simple, std::int64_t deadline,
                       bool &timed_out);

class PgStore : public Store {
public:
  // timeout_s bounds connecting and every statement: past it the connection is dropped (made again by the next
  // call) and the call fails (Io), so that a server that stopped answering never holds a caller longer.
  PgStore(const std::string &conninfo, int timeout_s);

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
  // A transaction rolled back unless committed. The caller holds mu_.
  class Transaction {
  public:
    explicit Transaction(PgStore &s) : s_(s) { s_.query("BEGIN", {}, "begin a transaction"); }
    ~Transaction() {
      if (!done_ && s_.conn_)
        PQclear(s_.exec_bounded("ROLLBACK", 0, nullptr, true));
    }
    Transaction(const Transaction &) = delete;
    Transaction &operator=(const Transaction &) = delete;
    void commit() {
      done_ = true;
      s_.query("COMMIT", {}, "commit a transaction");
    }

  private:
    PgStore &s_;
    bool done_ = false;
  };

  // Runs one parameterised statement (PQexecParams); throws Error (Io) with PostgreSQL's words.
  Rows query(const char *sql, Params params, const std::string &what);
  // The same, remembering whether the catalog took the write (see writable()).
  Rows write(const char *sql, Params params, const std::string &what);
  void wrote(bool ok);
  void connect();
  // A connection made again: a fresh one after a timeout dropped it, else PQreset. Throws nothing.
  void reconnect();
  // PQexecParams (simple: PQexec) that waits at most timeout_us_ for the server: sent, then read as the socket has
  // it. Past the timeout the connection is dropped (conn_ null, timed_out_ set) and null is returned.
  PGresult *exec_bounded(const char *sql, int n, const char *const *values, bool simple = false);
  void migrate();
  // In a claim's transaction, before the claim: its plan reads the queue in index order (pg_jobs.cpp).
  void plan_claims_by_queue_order();
  Job read_job(const Rows &r, int row) const;
  // One event's deliveries (one per endpoint subscribed to its type), in the caller's transaction (pg_webhooks.cpp).
  int fan_out(const OutboxEvent &e, std::int64_t now);

  std::string where_; // the url without its password, for messages
  std::string conninfo_;
  std::recursive_mutex mu_; // one call at a time on the one connection
  ConnPtr conn_;
  std::int64_t timeout_us_ = 0;
  bool timed_out_ = false; // the latest statement was dropped at the timeout
  // The outcome of the latest write and when it was (monotonic microseconds; 0: none yet).
  bool write_ok_ = true;
  std::int64_t write_checked_ = 0;
};

} // namespace sluice::store::pg
