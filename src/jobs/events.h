// SPDX-License-Identifier: LGPL-2.1-or-later
// The event stream of the server: job state changes, progress and catalog changes, with replay.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
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

// Lives on the main loop; subscribers are called synchronously from publish().
class EventHub {
public:
  using Subscriber = std::function<void(const Event &)>;
  // Ids start from the current time in milliseconds, so that they keep increasing across restarts.
  explicit EventHub(std::size_t keep = 1024);

  std::uint64_t publish(std::string name, std::string job_id, std::string video_id, std::string data);
  std::uint64_t subscribe(Subscriber fn);
  void unsubscribe(std::uint64_t token);
  std::size_t subscribers() const { return subscribers_.size(); }

  // The kept events after `last_id`. false when last_id is older than what is kept (or from the
  // future): the caller must then send the current state instead.
  bool since(std::uint64_t last_id, std::vector<Event> &out) const;
  std::uint64_t last_id() const { return next_id_ - 1; }

private:
  std::size_t keep_;
  std::uint64_t next_id_;
  std::deque<Event> events_;
  std::uint64_t next_token_ = 1;
  std::map<std::uint64_t, Subscriber> subscribers_;
};

} // namespace sluice::jobs
