// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog's statements with a deadline: a server that stops answering fails the call, never hangs it.
#include "store/pg_internal.h"

#include <glib.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

namespace sluice::store::pg {

namespace {

// Waits until the connection's socket is ready for `events`, or the deadline (monotonic microseconds) passes.
bool wait_socket(PGconn *c, short events, std::int64_t deadline) {
  const int fd = PQsocket(c);
  if (fd < 0)
    return true; // nothing to wait on: the next libpq call says what is wrong
  for (;;) {
    const std::int64_t left = deadline - g_get_monotonic_time();
    if (left <= 0)
      return false;
    struct pollfd p = {fd, events, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left / 1000 + 1, 60000)));
    if (n > 0)
      return true;
    if (n < 0 && errno != EINTR)
      return true;
  }
}

bool failed(PGresult *r) {
  const ExecStatusType st = PQresultStatus(r);
  return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

} // namespace

void PgStore::reconnect() {
  if (conn_) {
    PQreset(conn_.get()); // bounded by connect_timeout
    return;
  }
  try {
    connect();
  } catch (const Error &) {
    // conn_ says why (or is null): the caller reads it
  }
}

PGresult *exec_bounded(PGconn *c, const char *sql, int n, const char *const *values, bool simple, std::int64_t deadline,
                       bool &timed_out) {
  timed_out = false;
  if (!c)
    return nullptr;
  const int sent = simple ? PQsendQuery(c, sql) : PQsendQueryParams(c, sql, n, nullptr, values, nullptr, nullptr, 0);
  if (!sent)
    return nullptr;
  auto give_up = [&timed_out](PGresult *held) -> PGresult * {
    // The server did not answer in time: the caller drops the session (what it was doing is rolled back by the
    // server when it notices), since the connection is still in the middle of this statement.
    PQclear(held);
    timed_out = true;
    return nullptr;
  };
  // What does not fit in the socket's buffer at once (a large parameter) is written as the server reads.
  for (int f = PQflush(c); f != 0; f = PQflush(c)) {
    if (f < 0)
      return nullptr;
    if (!wait_socket(c, POLLIN | POLLOUT, deadline))
      return give_up(nullptr);
    if (!PQconsumeInput(c))
      return nullptr;
  }
  // PQexec's answer: the last result, or the first that failed.
  PGresult *last = nullptr;
  for (;;) {
    while (PQisBusy(c)) {
      if (!wait_socket(c, POLLIN, deadline))
        return give_up(last);
      if (!PQconsumeInput(c)) {
        PQclear(last);
        return nullptr; // the connection broke: PQerrorMessage says how
      }
    }
    PGresult *r = PQgetResult(c);
    if (!r)
      return last;
    if (last && failed(last)) {
      PQclear(r);
      continue;
    }
    PQclear(last);
    last = r;
  }
}

PGresult *PgStore::exec_bounded(const char *sql, int n, const char *const *values, bool simple) {
  PGresult *r = pg::exec_bounded(conn_.get(), sql, n, values, simple, g_get_monotonic_time() + timeout_us_, timed_out_);
  if (timed_out_)
    conn_.reset(); // the next call connects again
  return r;
}

} // namespace sluice::store::pg
