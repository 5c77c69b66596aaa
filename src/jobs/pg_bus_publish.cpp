// SPDX-License-Identifier: LGPL-2.1-or-later
// The shared event hub's publishing side: a thread that writes the queued events in order and prunes the table.
#include "jobs/pg_bus.h"

#include "core/error.h"
#include "core/log.h"
#include "store/pg_internal.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace sluice::jobs {

namespace {

constexpr std::int64_t kRetryMinUs = 250'000, kRetryMaxUs = 5'000'000;

log::Category *publish_log() {
  static log::Category *c = log::category("sluice-events", "sluice events across processes");
  return c;
}

using store::pg::trimmed;

// Whether a failed statement may succeed when tried again on a new connection: the connection, the server shutting
// down or short of resources. Anything else (a value PostgreSQL refuses) never will.
bool worth_retrying(PGconn *conn, PGresult *r) {
  if (PQstatus(conn) != CONNECTION_OK)
    return true;
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  if (!state)
    return true;
  for (const char *cls : {"08", "40", "53", "57", "58"})
    if (std::strncmp(state, cls, 2) == 0)
      return true;
  return false;
}

} // namespace

std::uint64_t PgEventHub::publish(std::string name, std::string job_id, std::string video_id, std::string data) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= options_.queue_max) {
      queue_.pop_front();
      if (dropped_++ % 1000 == 0)
        SLUICE_LOG(publish_log(), Warning, "events %s: %zu event(s) not written (PostgreSQL unreachable)",
                   where_.c_str(), dropped_);
    }
    // Until it is written, an event's id is its place in this process's queue.
    queue_.push_back(Event{++queued_, std::move(name), std::move(job_id), std::move(video_id), std::move(data)});
  }
  wake_.notify_one();
  return 0;
}

bool PgEventHub::flush(std::int64_t timeout_us) {
  std::unique_lock lock(mu_);
  return written_.wait_for(lock, std::chrono::microseconds(timeout_us), [this] { return queue_.empty() && !writing_; });
}

bool PgEventHub::write_one(PGconn *conn, const Event &e, bool &refused) {
  const char *values[] = {e.name.c_str(), e.job_id.c_str(), e.video_id.c_str(), e.data.c_str()};
  PGresult *r =
      PQexecParams(conn, "SELECT sluice_publish_event($1, $2, $3, $4)", 4, nullptr, values, nullptr, nullptr, 0);
  const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  refused = !ok && !worth_retrying(conn, r);
  if (!ok)
    SLUICE_LOG(publish_log(), Warning, "events %s: cannot write a %s event%s: %s", where_.c_str(), e.name.c_str(),
               refused ? " (dropped)" : " (tried again)", trimmed(PQresultErrorMessage(r)).c_str());
  PQclear(r);
  return ok;
}

void PgEventHub::prune(PGconn *conn) {
  // The table keeps the newest keep_rows events of the last keep_us, by the server's clock (one clock for all).
  const std::string age = std::to_string(options_.keep_us), rows = std::to_string(options_.keep_rows);
  const char *values[] = {age.c_str(), rows.c_str()};
  PGresult *r =
      PQexecParams(conn,
                   "DELETE FROM events WHERE created < (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT"
                   " - $1 OR id <= (SELECT id FROM events ORDER BY id DESC OFFSET $2 LIMIT 1)",
                   2, nullptr, values, nullptr, nullptr, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    SLUICE_LOG(publish_log(), Warning, "events %s: cannot prune the events table: %s", where_.c_str(),
               trimmed(PQresultErrorMessage(r)).c_str());
  PQclear(r);
}

void PgEventHub::publisher_main() {
  PGconn *conn = nullptr;
  std::int64_t retry_at = 0, retry_us = kRetryMinUs;
  std::int64_t prune_at = g_get_monotonic_time() + options_.prune_every_us;
  std::unique_lock lock(mu_);
  for (;;) {
    const std::int64_t now = g_get_monotonic_time();
    if (stop_ && (queue_.empty() || now >= stop_by_))
      break;
    const std::int64_t until = std::min(now < retry_at ? retry_at : prune_at, stop_ ? stop_by_ : G_MAXINT64);
    if (now < retry_at || (queue_.empty() && now < prune_at)) {
      wake_.wait_for(lock, std::chrono::microseconds(until - now),
                     [&] { return stop_ || (now >= retry_at && !queue_.empty()); });
      continue;
    }
    if (conn && PQstatus(conn) != CONNECTION_OK) {
      PQfinish(conn);
      conn = nullptr;
    }
    if (!conn) {
      lock.unlock();
      try {
        conn = connect_now("sluice-events-publish", 5);
        // Events are for watching, not a record: a commit does not wait for the disk (a crash of PostgreSQL may lose
        // the last few; a restart loses none), which keeps a publish to a round trip.
        PQclear(PQexec(conn, "SET synchronous_commit = off"));
      } catch (const Error &e) {
        SLUICE_LOG(publish_log(), Warning, "%s", e.what());
      }
      lock.lock();
      retry_at = conn ? 0 : g_get_monotonic_time() + retry_us;
      retry_us = conn ? kRetryMinUs : std::min(retry_us * 2, kRetryMaxUs);
      continue;
    }
    if (!queue_.empty()) {
      const Event e = queue_.front();
      writing_ = true;
      lock.unlock();
      bool refused = false;
      const bool ok = write_one(conn, e, refused);
      lock.lock();
      writing_ = false;
      // The queue may have dropped its oldest meanwhile (it was full): only this event leaves it.
      if ((ok || refused) && !queue_.empty() && queue_.front().id == e.id)
        queue_.pop_front();
      if (!ok && !refused) {
        PQfinish(conn);
        conn = nullptr;
        retry_at = g_get_monotonic_time() + retry_us;
        retry_us = std::min(retry_us * 2, kRetryMaxUs);
      }
      written_.notify_all();
      continue;
    }
    lock.unlock();
    prune(conn);
    lock.lock();
    prune_at = g_get_monotonic_time() + options_.prune_every_us;
  }
  if (!queue_.empty())
    SLUICE_LOG(publish_log(), Warning, "events %s: %zu event(s) not written at shutdown", where_.c_str(),
               queue_.size());
  queue_.clear();
  written_.notify_all();
  lock.unlock();
  if (conn)
    PQfinish(conn);
}

} // namespace sluice::jobs
