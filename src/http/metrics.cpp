// SPDX-License-Identifier: LGPL-2.1-or-later
// GET /metrics: the server's metrics in the Prometheus text format, served by libsoup.
#include "http/respond.h"
#include "http/routes.h"

#include <array>
#include <functional>
#include <memory>

namespace sluice::http::handlers {

namespace {

// A scrape waits this long at most for the jobs' counts (read on the executor), then is answered with the last ones
// read: a catalog that stopped answering never holds it for [store] timeout (health says the catalog is unreadable).
constexpr guint kCountsWaitMs = 1000;

constexpr std::array kStates = {store::JobState::Queued, store::JobState::Running, store::JobState::Succeeded,
                                store::JobState::Failed, store::JobState::Canceled};
using Counts = std::array<int, kStates.size()>;

Counts count_jobs(store::Store &s) {
  Counts n{};
  for (std::size_t i = 0; i < kStates.size(); i++)
    n[i] = s.count_jobs(kStates[i]);
  return n;
}

void set_counts(metrics::Metrics &m, const Counts &n) {
  for (std::size_t i = 0; i < kStates.size(); i++)
    m.set_jobs_in_state(store::job_state_name(kStates[i]), n[i]);
}

// What is read rather than counted (free space, event streams; the jobs' counts are set before), then the text.
void answer(Context &cx, SoupServerMessage *msg) {
  auto &m = cx.service.metrics();
  m.set_free_bytes(static_cast<double>(cx.service.scheduler().free_space()));
  m.set_sse_clients(static_cast<double>(cx.sse_clients.size()));
  const std::string text = m.text();
  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control", "no-store");
  soup_server_message_set_response(msg, "text/plain; version=0.0.4; charset=utf-8", SOUP_MEMORY_COPY, text.data(),
                                   text.size());
}

} // namespace

void metrics(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  store::Executor &ex = cx.service.executor();
  if (ex.is_inline()) {
    // One process's file: read at once, each count on its own (one that cannot be read keeps its last value).
    for (std::size_t i = 0; i < kStates.size(); i++) {
      try {
        cx.service.metrics().set_jobs_in_state(store::job_state_name(kStates[i]),
                                               cx.service.store().count_jobs(kStates[i]));
      } catch (const Error &) {
      }
    }
    return answer(cx, msg);
  }
  // Answered once, by whichever comes first: the counts, or the end of the wait for them.
  Context *c = &cx;
  auto reply = std::make_shared<std::function<void()>>(later(cx, msg, [c, msg] { answer(*c, msg); }));
  auto once = [reply] {
    if (!*reply)
      return;
    auto f = std::move(*reply);
    *reply = nullptr;
    f();
  };
  ex.run(count_jobs, [c, alive = cx.alive, once](store::Outcome<Counts> &o) {
    if (*alive && o.ok())
      set_counts(c->service.metrics(), *o.value); // also when the scrape was answered already: the next one has them
    once();
  });
  g_timeout_add_full(
      G_PRIORITY_DEFAULT, kCountsWaitMs,
      [](gpointer data) -> gboolean {
        (*static_cast<std::function<void()> *>(data))();
        return G_SOURCE_REMOVE;
      },
      new std::function<void()>(once), [](gpointer data) { delete static_cast<std::function<void()> *>(data); });
}

} // namespace sluice::http::handlers
