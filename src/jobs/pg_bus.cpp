// SPDX-License-Identifier: LGPL-2.1-or-later
// The shared event hub's listening side: LISTEN on a connection of its own, watched on the main loop, and since().
#include "jobs/pg_bus.h"

#include "core/error.h"
#include "core/log.h"
#include "core/mainloop.h"
#include "store/pg_internal.h"
#include "store/store.h"

#include <glib-unix.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace sluice::jobs {

namespace {

constexpr const char *kColumns = "id, name, job_id, video_id, data";
constexpr int kCatchUpRows = 1000;  // rows per catch-up query (it goes on until it has them all)
constexpr guint kRetryMaxMs = 5000; // the longest wait between two attempts to listen again

log::Category *events_log() {
  static log::Category *c = log::category("sluice-events", "sluice events across processes");
  return c;
}

using store::pg::trimmed;

std::uint64_t parse_id(const char *text) {
  return text ? std::strtoull(text, nullptr, 10) : 0;
}

Event read_event(PGresult *r, int row) {
  auto text = [&](int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
  };
  return Event{parse_id(PQgetvalue(r, row, 0)), text(1), text(2), text(3), text(4)};
}

// The connection keywords: fallbacks first, what the url says wins (expand_dbname), as the catalog connects.
struct ConnParams {
  std::string timeout;
  const char *keys[5] = {"application_name", "connect_timeout", "client_encoding", "dbname", nullptr};
  const char *values[5] = {};
  ConnParams(const std::string &conninfo, const char *application_name, int timeout_s)
      : timeout(std::to_string(timeout_s)) {
    values[0] = application_name;
    values[1] = timeout.c_str();
    values[2] = "UTF8";
    values[3] = conninfo.c_str();
  }
};

} // namespace

PgEventHub::PgEventHub(const std::string &conninfo, PgBusOptions options)
    : conninfo_(conninfo), where_(store::redact_url(conninfo)), options_(options) {
  // Listening before the latest id is read: an event committed after it is read arrives as a notification.
  listen_ = connect_now("sluice-events", 10);
  const char *fail = nullptr;
  PGresult *r = PQexec(listen_, "LISTEN sluice_events");
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail = "listen";
  PQclear(r);
  r = fail ? nullptr : PQexec(listen_, "SELECT coalesce(max(id), 0) FROM events");
  if (!fail && PQresultStatus(r) != PGRES_TUPLES_OK)
    fail = "read the latest event";
  if (!fail)
    delivered_ = parse_id(PQgetvalue(r, 0, 0));
  PQclear(r);
  if (fail) {
    std::string why = trimmed(PQerrorMessage(listen_));
    PQfinish(listen_);
    listen_ = nullptr;
    throw Error(ErrorCode::Io, "events " + where_ + ": cannot " + fail + ": " + why);
  }
  state_ = State::Idle;
  watch(G_IO_IN);
  publisher_ = std::thread([this] { publisher_main(); });
}

PgEventHub::~PgEventHub() {
  {
    // What was published is written first, for a while: the events of a shutdown (jobs requeued) are not lost.
    std::lock_guard lock(mu_);
    stop_ = true;
    stop_by_ = g_get_monotonic_time() + 2'000'000;
  }
  {
    std::lock_guard lock(mu_);
    replay_stop_ = true; // a replay in progress ends within its bound; those not started are dropped
  }
  *alive_ = false;
  wake_.notify_all();
  replay_wake_.notify_all();
  publisher_.join();
  if (replayer_.joinable())
    replayer_.join();
  unwatch();
  if (retry_)
    g_source_remove(retry_);
  if (listen_)
    PQfinish(listen_);
  if (reader_)
    PQfinish(reader_);
}

PGconn *PgEventHub::connect_now(const char *application_name, int timeout_s) const {
  ConnParams p(conninfo_, application_name, timeout_s);
  PGconn *c = PQconnectdbParams(p.keys, p.values, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    std::string why = c ? trimmed(PQerrorMessage(c)) : std::string("out of memory");
    PQfinish(c);
    throw Error(ErrorCode::Io, "events " + where_ + ": cannot connect: " + why);
  }
  PQsetNoticeProcessor(
      c, [](void *, const char *) {}, nullptr);
  return c;
}

void PgEventHub::watch(GIOCondition condition) {
  if (watch_ && watching_ == condition)
    return;
  unwatch();
  watching_ = condition;
  watch_ =
      g_unix_fd_add(PQsocket(listen_), GIOCondition(condition | G_IO_HUP | G_IO_ERR), &PgEventHub::on_socket, this);
}

void PgEventHub::unwatch() {
  if (watch_)
    g_source_remove(watch_);
  watch_ = 0;
}

gboolean PgEventHub::on_socket(gint, GIOCondition condition, gpointer self) {
  auto *hub = static_cast<PgEventHub *>(self);
  // The source is removed by unwatch() when the connection is dropped or its socket changes, never by returning.
  hub->on_ready(condition);
  return G_SOURCE_CONTINUE;
}

void PgEventHub::on_ready(GIOCondition) {
  if (state_ == State::Connecting)
    return poll_connect();
  if (!PQconsumeInput(listen_) || PQstatus(listen_) != CONNECTION_OK)
    return lost(trimmed(PQerrorMessage(listen_)));
  read_results();
  if (!listen_)
    return;
  take_notifies();
  advance();
}

void PgEventHub::poll_connect() {
  switch (PQconnectPoll(listen_)) {
  case PGRES_POLLING_OK:
    PQsetNoticeProcessor(
        listen_, [](void *, const char *) {}, nullptr);
    retry_ms_ = 250;
    start_listen();
    return;
  case PGRES_POLLING_READING:
    // The socket may change from one attempt to the next (several hosts): watched afresh.
    unwatch();
    return watch(G_IO_IN);
  case PGRES_POLLING_WRITING: unwatch(); return watch(G_IO_OUT);
  default: return lost(trimmed(PQerrorMessage(listen_)));
  }
}

void PgEventHub::start_listen() {
  // Queries are sent in blocking mode (a few bytes); their answers and notifications are read as they come.
  if (!PQsendQuery(listen_, "LISTEN sluice_events"))
    return lost(trimmed(PQerrorMessage(listen_)));
  state_ = State::Listen;
  watch(G_IO_IN);
}

void PgEventHub::read_results() {
  while ((state_ == State::Listen || state_ == State::CatchUp) && !PQisBusy(listen_)) {
    PGresult *r = PQgetResult(listen_);
    if (!r) {
      // The query is done.
      if (state_ == State::Listen) {
        SLUICE_LOG(events_log(), Info, "listening for events again; catching up after event %" G_GUINT64_FORMAT,
                   static_cast<guint64>(delivered_));
        catch_up();
      } else if (caught_up_rows_ == kCatchUpRows) {
        catch_up(); // more rows than one query takes
      } else {
        state_ = State::Idle;
      }
      continue;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK && state_ == State::CatchUp) {
      caught_up_rows_ = PQntuples(r);
      for (int i = 0; i < caught_up_rows_; i++)
        deliver_in_order(read_event(r, i));
    } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      std::string why = trimmed(PQresultErrorMessage(r));
      PQclear(r);
      return lost(why);
    }
    PQclear(r);
  }
}

void PgEventHub::take_notifies() {
  while (PGnotify *n = PQnotifies(listen_)) {
    // "ID\nNAME\nJOB\nVIDEO\nDATA", or "ID" alone for an event too big for a notification.
    Notice notice;
    const char *p = n->extra;
    notice.e.id = parse_id(p);
    const char *fields[4] = {};
    for (auto &f : fields) {
      p = p ? std::strchr(p, '\n') : nullptr;
      f = p ? ++p : nullptr;
    }
    if (fields[3]) {
      notice.whole = true;
      notice.e.name.assign(fields[0], static_cast<std::size_t>(fields[1] - 1 - fields[0]));
      notice.e.job_id.assign(fields[1], static_cast<std::size_t>(fields[2] - 1 - fields[1]));
      notice.e.video_id.assign(fields[2], static_cast<std::size_t>(fields[3] - 1 - fields[2]));
      notice.e.data = fields[3];
    }
    PQfreemem(n);
    if (notice.e.id > delivered_)
      pending_.push_back(std::move(notice));
  }
}

void PgEventHub::advance() {
  // Notifications come in the order of commits, which is the order of ids (sluice_publish_event's lock).
  while (state_ == State::Idle && !pending_.empty()) {
    Notice &front = pending_.front();
    if (front.e.id <= delivered_) {
      pending_.pop_front();
    } else if (front.whole) {
      Event e = std::move(front.e);
      pending_.pop_front();
      deliver_in_order(std::move(e));
    } else {
      catch_up(); // the event is read from the table, with any other after it
    }
  }
}

void PgEventHub::catch_up() {
  const std::string after = std::to_string(delivered_), rows = std::to_string(kCatchUpRows);
  const char *values[] = {after.c_str(), rows.c_str()};
  const std::string sql = std::string("SELECT ") + kColumns + " FROM events WHERE id > $1 ORDER BY id LIMIT $2";
  caught_up_rows_ = 0;
  if (!PQsendQueryParams(listen_, sql.c_str(), 2, nullptr, values, nullptr, nullptr, 0))
    return lost(trimmed(PQerrorMessage(listen_)));
  state_ = State::CatchUp;
}

void PgEventHub::deliver_in_order(Event e) {
  if (e.id <= delivered_)
    return;
  delivered_ = e.id;
  deliver(e);
}

void PgEventHub::lost(const std::string &why) {
  SLUICE_LOG(events_log(), Warning, "events %s: the listening connection was lost (%s): connecting again",
             where_.c_str(), why.c_str());
  unwatch();
  if (listen_)
    PQfinish(listen_);
  listen_ = nullptr;
  state_ = State::Down;
  // Whatever was notified is in the table: the catch-up after connecting again reads it in order.
  pending_.clear();
  if (!retry_)
    retry_ = g_timeout_add(
        retry_ms_,
        [](gpointer self) -> gboolean {
          auto *hub = static_cast<PgEventHub *>(self);
          hub->retry_ = 0;
          hub->reconnect();
          return G_SOURCE_REMOVE;
        },
        this);
  retry_ms_ = std::min(retry_ms_ * 2, kRetryMaxMs);
}

void PgEventHub::reconnect() {
  ConnParams p(conninfo_, "sluice-events", 10);
  listen_ = PQconnectStartParams(p.keys, p.values, 1);
  if (!listen_ || PQstatus(listen_) == CONNECTION_BAD)
    return lost(listen_ ? trimmed(PQerrorMessage(listen_)) : std::string("out of memory"));
  state_ = State::Connecting;
  // As if PQconnectPoll had last said PGRES_POLLING_WRITING.
  watch(G_IO_OUT);
}

bool PgEventHub::since(std::uint64_t last_id, std::vector<Event> &out) {
  std::lock_guard lock(reader_mu_);
  return read(last_id, out);
}

void PgEventHub::since_later(std::uint64_t last_id, Replayed done) {
  {
    std::lock_guard lock(mu_);
    replays_.push_back(Replay{last_id, std::move(done), g_get_monotonic_time()});
    if (!replayer_.joinable())
      replayer_ = std::thread([this] { replayer_main(); });
  }
  replay_wake_.notify_one();
}

void PgEventHub::replayer_main() {
  std::unique_lock lock(mu_);
  for (;;) {
    replay_wake_.wait(lock, [this] { return replay_stop_ || !replays_.empty(); });
    if (replay_stop_)
      return;
    Replay r = std::move(replays_.front());
    replays_.pop_front();
    lock.unlock();
    auto out = std::make_shared<std::vector<Event>>();
    bool ok = false;
    // One waiting behind a catalog that stopped answering fails unread, so that every replay is answered within
    // about two timeouts (the client then gets the current state, or reconnects).
    if (g_get_monotonic_time() - r.asked < options_.timeout_us) {
      std::lock_guard reading(reader_mu_);
      ok = read(r.last_id, *out);
    }
    post([alive = alive_, ok, out, done = std::move(r.done)] {
      if (*alive)
        done(ok, std::move(*out));
    });
    lock.lock();
  }
}

bool PgEventHub::read(std::uint64_t last_id, std::vector<Event> &out) {
  out.clear();
  if (last_id > static_cast<std::uint64_t>(G_MAXINT64))
    return false; // no id of a sequence
  if (reader_ && PQstatus(reader_) != CONNECTION_OK) {
    PQfinish(reader_);
    reader_ = nullptr;
  }
  if (!reader_) {
    try {
      reader_ = connect_now("sluice-events-replay",
                            static_cast<int>(std::max<std::int64_t>(options_.timeout_us / 1'000'000, 1)));
    } catch (const Error &e) {
      SLUICE_LOG(events_log(), Warning, "%s", e.what());
      return false;
    }
  }
  // The client's last event and what follows it: when that event is no longer kept (or never was), the table cannot
  // say what the client missed.
  const std::string from = std::to_string(last_id), limit = std::to_string(options_.keep_rows + 2);
  const char *values[] = {from.c_str(), limit.c_str()};
  const std::string sql = std::string("SELECT ") + kColumns + " FROM events WHERE id >= $1 ORDER BY id LIMIT $2";
  bool timed_out = false;
  PGresult *r = store::pg::exec_bounded(reader_, sql.c_str(), 2, values, false,
                                        g_get_monotonic_time() + options_.timeout_us, timed_out);
  bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    SLUICE_LOG(events_log(), Warning, "events %s: cannot read the events after %s: %s", where_.c_str(), from.c_str(),
               timed_out ? "no answer within [store] timeout" : trimmed(PQerrorMessage(reader_)).c_str());
  if (timed_out || !r) {
    // Mid-statement (or broken): the next replay connects again.
    PQfinish(reader_);
    reader_ = nullptr;
  }
  const int rows = ok ? PQntuples(r) : 0;
  ok = ok && rows > 0 && parse_id(PQgetvalue(r, 0, 0)) == last_id &&
       static_cast<std::size_t>(rows) <= options_.keep_rows + 1;
  for (int i = 1; ok && i < rows; i++)
    out.push_back(read_event(r, i));
  PQclear(r);
  return ok;
}

} // namespace sluice::jobs
