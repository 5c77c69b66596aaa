// SPDX-License-Identifier: LGPL-2.1-or-later
// The event stream of the server: job state changes, progress and catalog changes, with replay.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sluice::jobs {

struct Event {
  std::uint64_t id = 0;
  std::string name;     // "job", "progress", "video"
  std::string job_id;   // "" when not about a job
  std::string video_id; // "" when not about a video
  std::string data;     // one line of JSON
};

// Lives on the main loop. This one is the hub of a single process (a SQLite catalog): subscribers are called
// synchronously from publish(), and the last `keep` events are kept in memory for replay. A hub shared by several
// processes (PgEventHub, jobs/pg_bus.h) delivers every process's events to its subscribers later, on the main loop.
class EventHub {
public:
  using Subscriber = std::function<void(const Event &)>;
  // Ids start from the current time in milliseconds, so that they keep increasing across restarts.
  explicit EventHub(std::size_t keep = 1024);
  virtual ~EventHub() = default;
  EventHub(const EventHub &) = delete;
  EventHub &operator=(const EventHub &) = delete;

  // The event's id; 0 when it is given later (a shared hub numbers it when it is written).
  virtual std::uint64_t publish(std::string name, std::string job_id, std::string video_id, std::string data);
  std::uint64_t subscribe(Subscriber fn);
  void unsubscribe(std::uint64_t token);
  std::size_t subscribers() const { return subscribers_.size(); }

  // The kept events after `last_id`, in id order. false when last_id is older than what is kept (or from the
  // future): the caller must then send the current state instead.
  virtual bool since(std::uint64_t last_id, std::vector<Event> &out);
  // since() without the main loop waiting for it: done(ok, events) runs on the main loop (this process's hub: at
  // once; a shared hub reads its table on a thread, bounded by [store] timeout), never once the hub is gone.
  using Replayed = std::function<void(bool ok, std::vector<Event> events)>;
  virtual void since_later(std::uint64_t last_id, Replayed done) {
    std::vector<Event> out;
    const bool ok = since(last_id, out);
    done(ok, std::move(out));
  }
  // The id of the latest event delivered to subscribers.
  virtual std::uint64_t last_id() const { return next_id_ - 1; }

protected:
  // Calls every subscriber with e (a subscriber may unsubscribe itself or another meanwhile).
  void deliver(const Event &e);

private:
  std::size_t keep_;
  std::uint64_t next_id_;
  std::deque<Event> events_;
  std::uint64_t next_token_ = 1;
  std::map<std::uint64_t, Subscriber> subscribers_;
};

// The hub for the catalog that [store] url names: this process's own for SQLite, the one shared through
// PostgreSQL's events table and LISTEN/NOTIFY for PostgreSQL (its schema must be migrated: open the store first).
// timeout_s ([store] timeout) bounds the shared hub's replays (connecting and reading).
std::unique_ptr<EventHub> make_event_hub(const std::string &store_url, int timeout_s = 5);

} // namespace sluice::jobs
