// SPDX-License-Identifier: LGPL-2.1-or-later
// The event hub shared by the processes of one PostgreSQL catalog: an events table, NOTIFY, and LISTEN on the loop.
#pragma once

#include "jobs/events.h"

#include <glib.h>
#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace sluice::jobs {

struct PgBusOptions {
  std::size_t keep_rows = 10000;            // the events table keeps at most this many of the newest events...
  std::int64_t keep_us = 3600'000'000;      // ...and none older than this
  std::int64_t prune_every_us = 60'000'000; // how often the publishing thread prunes the table
  std::size_t queue_max = 10000;            // events waiting to be written (PostgreSQL away): the oldest go first
  std::int64_t timeout_us = 5'000'000;      // a replay's connecting and reading wait at most this long each
};

// publish() appends the event to the queue of a thread of its own, which writes it with one statement on its own
// connection (sluice_publish_event: the row, its id from a sequence, and pg_notify, under a lock so that ids are in
// the order of commits), in order, again after a lost connection. Every process LISTENs on another connection of its
// own, watched on the main loop (never blocking it), and delivers every process's events (its own included) to its
// subscribers in id order, each once; after a lost connection it connects again and catches up from the table from
// the last id it delivered. since() reads the table, so a client may resume on any process; since_later() reads it
// on a thread of its own (one connection, one replay at a time), every statement bounded by options.timeout_us.
class PgEventHub : public EventHub {
public:
  // Connects (the listening connection first, synchronously); throws Error (Io) when it cannot.
  explicit PgEventHub(const std::string &conninfo, PgBusOptions options = {});
  ~PgEventHub() override;

  std::uint64_t publish(std::string name, std::string job_id, std::string video_id, std::string data) override;
  // Blocks its caller (bounded): since_later() is the main loop's.
  bool since(std::uint64_t last_id, std::vector<Event> &out) override;
  void since_later(std::uint64_t last_id, Replayed done) override;
  std::uint64_t last_id() const override { return delivered_; }

  // Waits up to timeout_us for the queued events to be written; false when some are still waiting.
  bool flush(std::int64_t timeout_us);
  // Whether the listening connection is up and caught up (tests, health).
  bool listening() const { return state_ == State::Idle && pending_.empty(); }

private:
  enum class State { Down, Connecting, Listen, CatchUp, Idle };
  struct Notice {
    Event e;
    bool whole = false; // false: only the id came (the event did not fit in a notification)
  };

  // The listening side, on the main loop (pg_bus.cpp).
  PGconn *connect_now(const char *application_name, int timeout_s) const;
  void watch(GIOCondition condition);
  void unwatch();
  static gboolean on_socket(gint fd, GIOCondition condition, gpointer self);
  void on_ready(GIOCondition condition);
  void poll_connect();
  void start_listen();
  void read_results();
  void take_notifies();
  void advance();
  void catch_up();
  void deliver_in_order(Event e);
  void lost(const std::string &why);
  void reconnect();

  // The replaying side (pg_bus.cpp): read() on the reader's connection, made when first needed; its thread.
  bool read(std::uint64_t last_id, std::vector<Event> &out);
  void replayer_main();

  // The publishing side, on its thread (pg_bus_publish.cpp).
  void publisher_main();
  bool write_one(PGconn *conn, const Event &e, bool &refused);
  void prune(PGconn *conn);

  std::string conninfo_;
  std::string where_; // the url without its password, for messages
  PgBusOptions options_;

  PGconn *listen_ = nullptr;
  State state_ = State::Down;
  guint watch_ = 0, retry_ = 0;
  GIOCondition watching_ = GIOCondition(0);
  guint retry_ms_ = 250;
  std::deque<Notice> pending_;
  std::uint64_t delivered_ = 0;
  int caught_up_rows_ = 0;
  struct Replay {
    std::uint64_t last_id = 0;
    Replayed done;
    std::int64_t asked = 0; // monotonic microseconds
  };
  std::mutex reader_mu_;     // one replay at a time on the reader's connection
  PGconn *reader_ = nullptr; // since(): its own connection, made when first needed
  std::condition_variable replay_wake_;
  std::deque<Replay> replays_;                                 // under mu_
  bool replay_stop_ = false;                                   // under mu_
  std::thread replayer_;                                       // started by the first since_later()
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true); // answers posted after the hub went do nothing

  std::mutex mu_;
  std::condition_variable wake_, written_;
  std::deque<Event> queue_;
  std::uint64_t queued_ = 0; // events ever queued: an event's id while it waits
  bool writing_ = false, stop_ = false;
  std::int64_t stop_by_ = 0;
  std::size_t dropped_ = 0;
  std::thread publisher_;
};

} // namespace sluice::jobs
