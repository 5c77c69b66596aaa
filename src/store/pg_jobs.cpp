// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog's job queue across processes: claims (FOR UPDATE SKIP LOCKED), leases, fencing, workers.
#include "store/pg_internal.h"

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

} // namespace

std::optional<Job> PgStore::claim_job(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                      const std::vector<std::string> &encoders, const Room &room) {
  // One statement: another process's claim never takes the same row, and the head held for is read with it.
  static const std::string sql = claim_sql(1);
  Rows r = write(
      sql.c_str(),
      {worker, now, now + lease_us, join_names(encoders), room.free, room.capacity, room.hold_due_before, room.cores},
      "claim a job");
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
  return write("UPDATE jobs SET state = $3, priority = $4, attempts = $5, max_attempts = $6, started = $7, "
               "finished = $8, not_before = $9, error_code = $10, error = $11, result_json = $12, leased_until = 0 "
               "WHERE id = $1 AND token = $2 AND state = 'running'",
               {j.id, j.token, job_state_name(j.state), j.priority, j.attempts, j.max_attempts, j.started, j.finished,
                j.not_before, j.error_code, j.error, j.result_json},
               "write the end of job " + j.id)
             .changed() > 0;
}

Store::EndAndClaim PgStore::finish_and_claim(const Job &j, const std::string &worker, std::int64_t now,
                                             std::int64_t lease_us, const std::vector<std::string> &encoders,
                                             const Room &room) {
  // One statement, so one round trip and one commit: finish_job's UPDATE and claim_job's as two data-modifying WITH
  // parts. Both see the snapshot the statement started with, so the job ending (running there) is never the one
  // claimed. The outer SELECT gives one row whether or not a job was claimed: its columns (NULL when none), then how
  // many rows the end changed.
  static const std::string sql =
      "WITH ended AS (UPDATE jobs SET state = $3, priority = $4, attempts = $5, max_attempts = $6, "
      "started = $7, finished = $8, not_before = $9, error_code = $10, error = $11, result_json = $12, "
      "leased_until = 0 WHERE id = $1 AND token = $2 AND state = 'running' RETURNING seq), "
      "claimed AS (" +
      claim_sql(13) +
      ") SELECT claimed.*, (SELECT count(*) FROM ended) FROM (SELECT 1) AS one LEFT JOIN claimed ON true";
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
                  room.cores},
                 "write the end of job " + j.id + " and claim the next");
  EndAndClaim out;
  if (r.size() == 0)
    return out;
  out.ended = r.int64(0, kJobColumns) > 0;
  if (!r.text(0, 1).empty())
    out.claimed = read_job(r, 0);
  return out;
}

std::vector<Job> PgStore::requeue_expired(std::int64_t now) {
  // One statement, so that processes doing it at once take each job back once (the second finds it queued).
  Rows r = write("UPDATE jobs SET leased_until = 0, started = 0, "
                 "state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
                 "finished = CASE WHEN attempts >= max_attempts THEN $1::bigint ELSE 0 END, "
                 "error_code = CASE WHEN attempts >= max_attempts THEN 'internal' ELSE error_code END, "
                 "error = CASE WHEN attempts >= max_attempts THEN 'the job was interrupted ' || attempts || "
                 "' times (its worker stopped or lost its lease); giving up' ELSE error END "
                 "WHERE state = 'running' AND leased_until < $1::bigint RETURNING " PG_JOB_COLUMNS,
                 {now}, "requeue jobs whose lease ran out");
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
