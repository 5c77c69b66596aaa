// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog's job queue across processes: claims (FOR UPDATE SKIP LOCKED), leases, fencing, workers.
#include "store/pg_internal.h"

#include <glib.h>

#include <algorithm>

namespace sluice::store::pg {

namespace {

// The claim's UPDATE, its parameters numbered from `first`: worker, now, leased until, encoders, then the Room's free,
// capacity, hold_due_before and cores. The row is chosen and locked (rows other claims hold are skipped, not waited
// for), then taken: the first due job in queue order whose weight (0: the cores; at most the capacity) fits, unless
// the first due job of all does not fit and has waited since before hold_due_before (then none: its room is held). That
// head is read without a lock, once (an InitPlan), so that it is held for even while another claim is taking it.
std::string claim_sql(int first) {
  auto p = [first](int i) { return "$" + std::to_string(first + i); };
  const std::string worker = p(0), now = p(1) + "::bigint", until = p(2) + "::bigint", encoders = p(3);
  const std::string free = p(4) + "::integer", capacity = p(5) + "::integer", hold = p(6) + "::bigint";
  const std::string cores = p(7) + "::integer";
  const std::string weight = "LEAST(CASE WHEN weight <= 0 THEN " + cores + " ELSE weight END, " + capacity + ")";
  const std::string due = "state = 'queued' AND not_before <= " + now +
                          " AND (encoder = 'auto' OR encoder = ANY (string_to_array(" + encoders + ", ',')))";
  const std::string order = " ORDER BY priority DESC, created ASC, seq ASC LIMIT 1";
  const std::string head =
      "SELECT " + weight + " AS w, GREATEST(created, not_before) AS since FROM jobs WHERE " + due + order;
  const std::string pick = "SELECT seq FROM jobs WHERE " + due + " AND " + weight + " <= " + free +
                           " AND NOT EXISTS (SELECT 1 FROM (" + head + ") AS head WHERE head.w > " + free +
                           " AND head.since < " + hold + ")" + order + " FOR UPDATE SKIP LOCKED";
  return "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = " + worker + ", started = " + now +
         ", finished = 0, leased_until = " + until + ", token = nextval('job_tokens') WHERE seq = (" + pick +
         ") AND state = 'queued' RETURNING " PG_JOB_COLUMNS;
}

// The webhook events of a job's end: a data-modifying WITH part over `ended` (an UPDATE of the job RETURNING id and
// video_id: nothing when the end was fenced out), its parameters numbered from `first`: the job event's id and type,
// the video event's id and type ('' : none), and the time. One delivery per endpoint subscribed to the type, in the
// statement (and so the transaction) that writes the end.
std::string end_events_sql(int first) {
  auto p = [first](int i) { return "$" + std::to_string(first + i); };
  return "hooks AS (INSERT INTO webhook_deliveries (id, event_id, webhook_id, type, subject, created, next_attempt) "
         "SELECT ev.eid || w.id, ev.eid, w.id, ev.type, ev.subject, " +
         p(4) + "::bigint, " + p(4) + "::bigint FROM (SELECT 1 AS ord, " + p(0) + "::text AS eid, " + p(1) +
         "::text AS type, ended.id AS subject FROM ended UNION ALL SELECT 2, " + p(2) + "::text, " + p(3) +
         "::text, ended.video_id FROM ended) AS ev JOIN webhooks w ON ev.type <> '' AND "
         "position(',' || ev.type || ',' in ',' || w.events || ',') > 0 ORDER BY ev.ord, w.created, w.id)";
}

// end_events_sql's parameters for j's end.
struct EndEvents {
  std::string job_event = new_id(), job_type, video_event = new_id(), video_type;
  std::int64_t when = 0;
  explicit EndEvents(const Job &j) : when(j.finished ? j.finished : g_get_real_time()) {
    if (j.state == JobState::Succeeded) {
      job_type = "job.succeeded";
      video_type = j.streaming ? "video.ready" : "";
    } else if (j.state == JobState::Failed) {
      job_type = "job.failed";
      video_type = j.streaming ? "video.failed" : "";
    }
  }
};

} // namespace

void PgStore::plan_claims_by_queue_order() {
  // A claim reads the queue's index (jobs_next) in order and stops at the first job that fits: it costs the same for
  // a queue of ten jobs or ten thousand. The planner picks that plan only when the table's statistics say the queue is
  // long; right after a burst of jobs was queued (before autovacuum's next ANALYZE) they say it is short, and it
  // plans to read every queued job and sort them instead: 6 ms a claim at 8,000 queued jobs, against 0.3 ms. Sorting
  // is therefore ruled out for the claim's transaction only (a sort is then planned only where nothing else can give
  // the order), and so is JIT compilation, which the cost given to a plan with a ruled-out sort would otherwise start
  // for every claim (a benchmark run with it did not end in ten minutes).
  query("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)", {}, "plan a claim");
}

std::optional<Job> PgStore::claim_job(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                      const std::vector<std::string> &encoders, const Room &room) {
  // One statement: another process's claim never takes the same row, and the head held for is read with it.
  static const std::string sql = claim_sql(1);
  std::lock_guard lock(mu_);
  Transaction t(*this);
  plan_claims_by_queue_order();
  Rows r = write(
      sql.c_str(),
      {worker, now, now + lease_us, join_names(encoders), room.free, room.capacity, room.hold_due_before, room.cores},
      "claim a job");
  t.commit();
  if (r.size() == 0)
    return std::nullopt;
  return read_job(r, 0);
}

bool PgStore::renew_lease(const std::string &job_id, std::int64_t token, std::int64_t until) {
  return write("UPDATE jobs SET leased_until = $3 WHERE id = $1 AND token = $2 AND state = 'running'",
               {job_id, token, until}, "renew the lease of job " + job_id)
             .changed() > 0;
}

bool PgStore::finish_job(const Job &j) {
  // One statement: the end and its webhook events land together.
  static const std::string sql =
      "WITH ended AS (UPDATE jobs SET state = $3, priority = $4, attempts = $5, max_attempts = $6, started = $7, "
      "finished = $8, not_before = $9, error_code = $10, error = $11, result_json = $12, leased_until = 0 "
      "WHERE id = $1 AND token = $2 AND state = 'running' RETURNING id, video_id), " +
      end_events_sql(13) + " SELECT count(*) FROM ended";
  const EndEvents ev(j);
  Rows r = write(sql.c_str(),
                 {j.id, j.token, job_state_name(j.state), j.priority, j.attempts, j.max_attempts, j.started, j.finished,
                  j.not_before, j.error_code, j.error, j.result_json, ev.job_event, ev.job_type, ev.video_event,
                  ev.video_type, ev.when},
                 "write the end of job " + j.id);
  return r.size() > 0 && r.int64(0, 0) > 0;
}

Store::EndAndClaim PgStore::finish_and_claim(const Job &j, const std::string &worker, std::int64_t now,
                                             std::int64_t lease_us, const std::vector<std::string> &encoders,
                                             const Room &room) {
  // One statement, so one commit: finish_job's UPDATE and claim_job's as two data-modifying WITH parts. Both see the
  // snapshot the statement started with, so the job ending (running there) is never the one claimed. The outer SELECT
  // gives one row whether or not a job was claimed: its columns (NULL when none), then how many rows the end changed.
  static const std::string sql =
      "WITH ended AS (UPDATE jobs SET state = $3, priority = $4, attempts = $5, max_attempts = $6, "
      "started = $7, finished = $8, not_before = $9, error_code = $10, error = $11, result_json = $12, "
      "leased_until = 0 WHERE id = $1 AND token = $2 AND state = 'running' RETURNING seq, id, video_id), "
      "claimed AS (" +
      claim_sql(13) + "), " + end_events_sql(21) +
      " SELECT claimed.*, (SELECT count(*) FROM ended) FROM (SELECT 1) AS one LEFT JOIN claimed ON true";
  const EndEvents ev(j);
  std::lock_guard lock(mu_);
  Transaction t(*this);
  plan_claims_by_queue_order();
  Rows r = write(sql.c_str(),
                 {j.id,
                  j.token,
                  job_state_name(j.state),
                  j.priority,
                  j.attempts,
                  j.max_attempts,
                  j.started,
                  j.finished,
                  j.not_before,
                  j.error_code,
                  j.error,
                  j.result_json,
                  worker,
                  now,
                  now + lease_us,
                  join_names(encoders),
                  room.free,
                  room.capacity,
                  room.hold_due_before,
                  room.cores,
                  ev.job_event,
                  ev.job_type,
                  ev.video_event,
                  ev.video_type,
                  ev.when},
                 "write the end of job " + j.id + " and claim the next");
  t.commit();
  EndAndClaim out;
  if (r.size() == 0)
    return out;
  out.ended = r.int64(0, kJobColumns) > 0;
  if (!r.text(0, 1).empty())
    out.claimed = read_job(r, 0);
  return out;
}

std::vector<Job> PgStore::requeue_expired(std::int64_t now, const std::vector<std::string> &not_streaming) {
  // One statement, so that processes doing it at once take each job back once (the second finds it queued); a job
  // that fails there writes its job.failed deliveries with it, and video.failed unless its pipeline is one of
  // not_streaming (an event id per event: the subquery is not flattened).
  Rows r = write("WITH taken AS (UPDATE jobs SET leased_until = 0, started = 0, "
                 "state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
                 "finished = CASE WHEN attempts >= max_attempts THEN $1::bigint ELSE 0 END, "
                 "error_code = CASE WHEN attempts >= max_attempts THEN 'internal' ELSE error_code END, "
                 "error = CASE WHEN attempts >= max_attempts THEN 'the job was interrupted ' || attempts || "
                 "' times (its worker stopped or lost its lease); giving up' ELSE error END "
                 "WHERE state = 'running' AND leased_until < $1::bigint RETURNING " PG_JOB_COLUMNS "), "
                 "hooks AS (INSERT INTO webhook_deliveries (id, event_id, webhook_id, type, subject, created, "
                 "next_attempt) SELECT ev.eid || w.id, ev.eid, w.id, ev.type, ev.subject, $1::bigint, $1::bigint "
                 "FROM (SELECT seq, ord, type, subject, "
                 "substr(md5(random()::text || clock_timestamp()::text || subject || type), 1, 16) AS eid FROM "
                 "(SELECT seq, 1 AS ord, 'job.failed' AS type, id AS subject FROM taken WHERE state = 'failed' "
                 "UNION ALL SELECT seq, 2, 'video.failed', video_id FROM taken WHERE state = 'failed' AND "
                 "NOT (pipeline = ANY (string_to_array($2, ',')))) AS e OFFSET 0) AS ev JOIN webhooks w "
                 "ON position(',' || ev.type || ',' in ',' || w.events || ',') > 0 "
                 "ORDER BY ev.seq, ev.ord, w.created, w.id) "
                 "SELECT * FROM taken",
                 {now, join_names(not_streaming)}, "requeue jobs whose lease ran out");
  std::vector<Job> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_job(r, i));
  std::sort(out.begin(), out.end(), [](const Job &a, const Job &b) { return a.seq < b.seq; });
  return out;
}

void PgStore::beat_worker(const Worker &w, std::int64_t forget_before) {
  write("INSERT INTO workers (name, role, started, heartbeat, encoders, concurrent, capacity, used) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (name) DO UPDATE SET role = excluded.role, started = excluded.started, "
        "heartbeat = excluded.heartbeat, encoders = excluded.encoders, concurrent = excluded.concurrent, "
        "capacity = excluded.capacity, used = excluded.used",
        {w.name, w.role, w.started, w.heartbeat, join_names(w.encoders), w.concurrent, w.capacity, w.used},
        "register worker " + w.name);
  write("DELETE FROM workers WHERE heartbeat < $1", {forget_before}, "forget silent workers");
}

std::vector<Worker> PgStore::workers() {
  Rows r = query("SELECT name, role, started, heartbeat, encoders, concurrent, capacity, used FROM workers "
                 "ORDER BY name",
                 {}, "list the workers");
  std::vector<Worker> out;
  for (int i = 0; i < r.size(); i++) {
    Worker w;
    w.name = r.text(i, 0);
    w.role = r.text(i, 1);
    w.started = r.int64(i, 2);
    w.heartbeat = r.int64(i, 3);
    w.encoders = split_names(r.text(i, 4));
    w.concurrent = r.int32(i, 5);
    w.capacity = r.int32(i, 6);
    w.used = r.int32(i, 7);
    out.push_back(std::move(w));
  }
  return out;
}

void PgStore::remove_worker(const std::string &name) {
  write("DELETE FROM workers WHERE name = $1", {name}, "remove worker " + name);
}

} // namespace sluice::store::pg
