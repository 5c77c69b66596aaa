// SPDX-License-Identifier: LGPL-2.1-or-later
// The service's answers that need the catalog without making the main loop wait for it: health, playback policies.
#include "app/service.h"
#include "app/service_internal.h"

#include <utility>
#include <vector>

namespace sluice::app {

namespace {

// A probe is made again once its answer is older than this; one unanswered for as long says "not readable".
constexpr std::int64_t kProbeEveryUs = 1'000'000;

} // namespace

// The latest readiness probe of the catalog, and the requests waiting for the first one.
struct HealthProbe {
  bool have = false; // an answer came back
  bool readable = false, writable = false;
  std::optional<int> queued;
  std::int64_t at = 0;                        // when that answer came (monotonic)
  std::int64_t asked = 0;                     // when the probe in flight was asked (0: none in flight)
  std::vector<std::function<void()>> waiting; // for the first answer
  guint wait_timer = 0;
};

namespace {

struct ProbeAnswer {
  bool readable = false, writable = false;
  std::optional<int> queued;
};

} // namespace

void Service::health(std::function<void(HealthView)> done) {
  if (executor().is_inline())
    return done(health());
  if (!probe_)
    probe_ = std::make_shared<HealthProbe>();
  std::shared_ptr<HealthProbe> p = probe_;
  const std::int64_t now = g_get_monotonic_time();
  if (!p->asked && (!p->have || now - p->at >= kProbeEveryUs)) {
    p->asked = now;
    executor().run(
        [](store::Store &s) {
          ProbeAnswer a;
          a.readable = s.ping();
          a.writable = a.readable && s.writable();
          if (a.readable)
            a.queued = s.count_jobs(store::JobState::Queued);
          return a;
        },
        [p](store::Outcome<ProbeAnswer> &o) {
          p->asked = 0;
          p->have = true;
          p->at = g_get_monotonic_time();
          p->readable = o.ok() && o.value->readable;
          p->writable = o.ok() && o.value->writable;
          p->queued = o.ok() ? o.value->queued : std::nullopt;
          auto waiting = std::move(p->waiting);
          p->waiting.clear();
          if (p->wait_timer) {
            g_source_remove(p->wait_timer);
            p->wait_timer = 0;
          }
          for (auto &w : waiting)
            w();
        });
  }
  auto answer = [this, alive = alive_, p, done] {
    if (!*alive)
      return;
    HealthView h;
    // A probe in flight for longer than a probe's life: the catalog is not answering now.
    const bool stalled = p->asked && g_get_monotonic_time() - p->asked >= kProbeEveryUs;
    h.readable = p->have && !stalled && p->readable;
    h.writable = h.readable && p->writable;
    h.unsaved_jobs = scheduler_.unsaved_count();
    h.free_bytes = scheduler_.free_space();
    h.min_free_bytes = config_.min_free_space;
    h.accepting = accepting_;
    if (h.readable) {
      h.queued = p->queued;
      h.running = scheduler_.running_count();
    }
    h.slots = config_.slots();
    done(h);
  };
  if (p->have)
    return answer();
  // The first probe: answered once it is back, or after a probe's life without it (not readable).
  p->waiting.push_back(std::move(answer));
  if (!p->wait_timer)
    p->wait_timer = g_timeout_add_full(
        G_PRIORITY_DEFAULT, static_cast<guint>(kProbeEveryUs / 1000) + 1,
        [](gpointer data) -> gboolean {
          auto &probe = *static_cast<std::shared_ptr<HealthProbe> *>(data);
          probe->wait_timer = 0;
          auto waiting = std::move(probe->waiting);
          probe->waiting.clear();
          for (auto &w : waiting)
            w();
          return G_SOURCE_REMOVE;
        },
        new std::shared_ptr<HealthProbe>(p),
        [](gpointer data) { delete static_cast<std::shared_ptr<HealthProbe> *>(data); });
}

bool Service::playback_known(const std::string &video_id) const {
  return scheduler_.executor().is_inline() || signed_.count(video_id) > 0;
}

void Service::learn_playback(const std::string &video_id, std::function<void(Result<bool>)> done) {
  executor().run(
      [video_id](store::Store &s) -> std::optional<std::string> {
        auto v = s.video(video_id);
        return v ? std::optional<std::string>(v->playback_policy) : std::nullopt;
      },
      [this, alive = alive_, video_id, done = std::move(done)](store::Outcome<std::optional<std::string>> &o) {
        if (!*alive)
          return;
        if (!o.ok())
          return done(failure_of(*o.error));
        if (!*o.value)
          return done(false);
        if (signed_.size() > 100000)
          signed_.clear();
        signed_[video_id] = **o.value == "signed";
        done(true);
      });
}

} // namespace sluice::app
