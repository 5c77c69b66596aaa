// SPDX-License-Identifier: LGPL-2.1-or-later
// The event hub: a bounded history for Last-Event-ID replay and synchronous fan-out.
#include "jobs/events.h"

#include "jobs/pg_bus.h"
#include "store/store.h"

#include <glib.h>

namespace sluice::jobs {

EventHub::EventHub(std::size_t keep) : keep_(keep), next_id_(static_cast<std::uint64_t>(g_get_real_time() / 1000)) {}

std::uint64_t EventHub::publish(std::string name, std::string job_id, std::string video_id, std::string data) {
  Event e{next_id_++, std::move(name), std::move(job_id), std::move(video_id), std::move(data)};
  events_.push_back(std::move(e));
  while (events_.size() > keep_)
    events_.pop_front();
  const Event ev = events_.back();
  deliver(ev);
  return ev.id;
}

void EventHub::deliver(const Event &ev) {
  // A subscriber may unsubscribe (itself or another) while being called: iterate over a copy of the tokens.
  std::vector<std::uint64_t> tokens;
  tokens.reserve(subscribers_.size());
  for (const auto &[token, fn] : subscribers_)
    tokens.push_back(token);
  for (auto token : tokens) {
    auto it = subscribers_.find(token);
    if (it != subscribers_.end()) {
      Subscriber fn = it->second; // keep the callable alive even if it unsubscribes itself
      fn(ev);
    }
  }
}

std::uint64_t EventHub::subscribe(Subscriber fn) {
  std::uint64_t token = next_token_++;
  subscribers_.emplace(token, std::move(fn));
  return token;
}

void EventHub::unsubscribe(std::uint64_t token) {
  subscribers_.erase(token);
}

bool EventHub::since(std::uint64_t last_id, std::vector<Event> &out) {
  out.clear();
  if (last_id >= next_id_)
    return false;
  if (last_id == next_id_ - 1)
    return true;
  if (events_.empty() || last_id + 1 < events_.front().id)
    return false;
  for (const auto &e : events_)
    if (e.id > last_id)
      out.push_back(e);
  return true;
}

std::unique_ptr<EventHub> make_event_hub(const std::string &store_url, int timeout_s) {
  if (store::check_url(store_url) == store::Backend::Postgres) {
    PgBusOptions options;
    options.timeout_us = static_cast<std::int64_t>(timeout_s) * 1'000'000;
    return std::make_unique<PgEventHub>(store_url, options);
  }
  return std::make_unique<EventHub>();
}

} // namespace sluice::jobs
