// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog's job claims: the same leases and fencing tokens as PostgreSQL's, each in one write transaction.
#include "store/sqlite_internal.h"

#include <algorithm>

namespace sluice::store::sqlite {

void SqliteStore::prepare_claims() {
  // The first due job in queue order whose weight (0: the worker's ?8 cores; at most its capacity ?6) fits the room
  // (?5 free), unless the first due job of all does not fit and has waited since before ?7: then none, its room held.
  // The head is an uncorrelated subquery: read once per claim.
#define SLUICE_DUE                                                                                                     \
  "state = 'queued' AND not_before <= ?2 AND (encoder = 'auto' OR instr(',' || ?4 || ',', ',' || encoder || ',') > 0)"
#define SLUICE_WEIGHT "min(CASE WHEN weight <= 0 THEN ?8 ELSE weight END, ?6)"
#define SLUICE_ORDER " ORDER BY priority DESC, created ASC, seq ASC LIMIT 1"
  claim_job_ =
      prepare("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?1, started = ?2, "
              "finished = 0, leased_until = ?3, token = (SELECT COALESCE(MAX(token), 0) + 1 FROM jobs) "
              "WHERE seq = (SELECT seq FROM jobs WHERE " SLUICE_DUE " AND " SLUICE_WEIGHT " <= ?5 "
              "AND NOT EXISTS (SELECT 1 FROM (SELECT " SLUICE_WEIGHT " AS w, max(created, not_before) AS since "
              "FROM jobs WHERE " SLUICE_DUE SLUICE_ORDER ") AS head WHERE head.w > ?5 AND head.since < ?7)" SLUICE_ORDER
              ") AND state = 'queued' RETURNING " JOB_COLUMNS);
#undef SLUICE_DUE
#undef SLUICE_WEIGHT
#undef SLUICE_ORDER
  renew_lease_ = prepare("UPDATE jobs SET leased_until = ?3 WHERE id = ?1 AND token = ?2 AND state = 'running'");
  finish_job_ = prepare("UPDATE jobs SET state = ?3, priority = ?4, attempts = ?5, max_attempts = ?6, started = ?7, "
                        "finished = ?8, not_before = ?9, error_code = ?10, error = ?11, result_json = ?12, "
                        "leased_until = 0 WHERE id = ?1 AND token = ?2 AND state = 'running'");
  requeue_expired_ = prepare("UPDATE jobs SET leased_until = 0, started = 0, "
                             "state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, "
                             "finished = CASE WHEN attempts >= max_attempts THEN ?1 ELSE 0 END, "
                             "error_code = CASE WHEN attempts >= max_attempts THEN 'internal' ELSE error_code END, "
                             "error = CASE WHEN attempts >= max_attempts THEN 'the job was interrupted ' || attempts "
                             "|| ' times (its worker stopped or lost its lease); giving up' ELSE error END "
                             "WHERE state = 'running' AND leased_until < ?1 RETURNING " JOB_COLUMNS);
  beat_worker_ =
      prepare("INSERT INTO workers (name, role, started, heartbeat, encoders, concurrent, capacity, used) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (name) DO UPDATE SET "
              "role = excluded.role, started = excluded.started, heartbeat = excluded.heartbeat, "
              "encoders = excluded.encoders, concurrent = excluded.concurrent, capacity = excluded.capacity, "
              "used = excluded.used");
  forget_workers_ = prepare("DELETE FROM workers WHERE heartbeat < ?1");
  workers_ =
      prepare("SELECT name, role, started, heartbeat, encoders, concurrent, capacity, used FROM workers ORDER BY name");
  remove_worker_ = prepare("DELETE FROM workers WHERE name = ?1");
}

std::optional<Job> SqliteStore::claim_next(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                           const std::vector<std::string> &encoders, const Room &room) {
  std::optional<Job> claimed;
  Query q = query(claim_job_, "claim a job");
  q.bind(1, worker).bind(2, now).bind(3, now + lease_us).bind(4, join_names(encoders));
  q.bind(5, room.free).bind(6, room.capacity).bind(7, room.hold_due_before).bind(8, room.cores);
  while (q.step())
    claimed = read_job(q);
  return claimed;
}

std::optional<Job> SqliteStore::claim_job(const std::string &worker, std::int64_t now, std::int64_t lease_us,
                                          const std::vector<std::string> &encoders, const Room &room) {
  return write([&]() -> std::optional<Job> {
    // The write lock first (BEGIN IMMEDIATE): the row is chosen and taken by one writer at a time.
    Transaction tx(*this);
    std::optional<Job> claimed = claim_next(worker, now, lease_us, encoders, room);
    tx.commit();
    return claimed;
  });
}

bool SqliteStore::renew_lease(const std::string &job_id, std::int64_t token, std::int64_t until) {
  return write([&] {
    Query q = query(renew_lease_, "renew the lease of job " + job_id);
    q.bind(1, job_id).bind(2, token).bind(3, until);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

bool SqliteStore::end_job(const Job &j) {
  Query q = query(finish_job_, "write the end of job " + j.id);
  q.bind(1, j.id).bind(2, j.token).bind(3, std::string(job_state_name(j.state))).bind(4, j.priority);
  q.bind(5, j.attempts).bind(6, j.max_attempts).bind(7, j.started).bind(8, j.finished).bind(9, j.not_before);
  q.bind(10, j.error_code).bind(11, j.error).bind(12, j.result_json);
  q.run();
  if (sqlite3_changes(db_.get()) == 0)
    return false;
  job_end_events(j);
  return true;
}

bool SqliteStore::finish_job(const Job &j) {
  return write([&] {
    Transaction tx(*this); // the job's end and its webhook events land together
    const bool ended = end_job(j);
    tx.commit();
    return ended;
  });
}

Store::EndAndClaim SqliteStore::finish_and_claim(const Job &j, const std::string &worker, std::int64_t now,
                                                 std::int64_t lease_us, const std::vector<std::string> &encoders,
                                                 const Room &room) {
  return write([&] {
    Transaction tx(*this);
    EndAndClaim out;
    // The claim first, while the job ending is still running: as with PostgreSQL (whose two parts see one
    // snapshot), that job is not the one claimed.
    out.claimed = claim_next(worker, now, lease_us, encoders, room);
    out.ended = end_job(j);
    tx.commit();
    return out;
  });
}

std::vector<Job> SqliteStore::requeue_expired(std::int64_t now, const std::vector<std::string> &not_streaming) {
  std::vector<Job> out = write([&] {
    Transaction tx(*this);
    std::vector<Job> taken;
    {
      Query q = query(requeue_expired_, "requeue jobs whose lease ran out");
      q.bind(1, now);
      while (q.step())
        taken.push_back(read_job(q));
    }
    for (const auto &j : taken) {
      if (j.state != JobState::Failed)
        continue;
      fan_out({"job.failed", j.id}, now);
      if (std::find(not_streaming.begin(), not_streaming.end(), j.pipeline) == not_streaming.end())
        fan_out({"video.failed", j.video_id}, now);
    }
    tx.commit();
    return taken;
  });
  std::sort(out.begin(), out.end(), [](const Job &a, const Job &b) { return a.seq < b.seq; });
  return out;
}

void SqliteStore::beat_worker(const Worker &w, std::int64_t forget_before) {
  write([&] {
    Transaction tx(*this);
    {
      Query q = query(beat_worker_, "register worker " + w.name);
      q.bind(1, w.name).bind(2, w.role).bind(3, w.started).bind(4, w.heartbeat).bind(5, join_names(w.encoders));
      q.bind(6, w.concurrent).bind(7, w.capacity).bind(8, w.used);
      q.run();
    }
    {
      Query q = query(forget_workers_, "forget silent workers");
      q.bind(1, forget_before);
      q.run();
    }
    tx.commit();
  });
}

std::vector<Worker> SqliteStore::workers() {
  Query q = query(workers_, "list the workers");
  std::vector<Worker> out;
  while (q.step()) {
    Worker w;
    w.name = q.text(0);
    w.role = q.text(1);
    w.started = q.int64(2);
    w.heartbeat = q.int64(3);
    w.encoders = split_names(q.text(4));
    w.concurrent = q.int32(5);
    w.capacity = q.int32(6);
    w.used = q.int32(7);
    out.push_back(std::move(w));
  }
  return out;
}

void SqliteStore::remove_worker(const std::string &name) {
  write([&] {
    Query q = query(remove_worker_, "remove worker " + name);
    q.bind(1, name);
    q.run();
  });
}

} // namespace sluice::store::sqlite
