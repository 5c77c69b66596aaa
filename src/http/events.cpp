// SPDX-License-Identifier: LGPL-2.1-or-later
// The event stream: Server-Sent Events of jobs and videos, with replay after a reconnect.
#include "core/json.h"
#include "http/log.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/views.h"

#include <cstdlib>
#include <memory>
#include <vector>

namespace sluice::http {

struct SseClient {
  Context *cx = nullptr;
  SoupServerMessage *msg = nullptr;
  std::string job, video;
  std::uint64_t token = 0;
  std::uint64_t seen = 0; // the latest event id sent (or that the client said it had)
  guint keep_alive = 0;
  bool closed = false;
  // While the current state is read from the catalog (a resume too old to replay), live events wait here.
  bool waiting = false;
  std::vector<jobs::Event> held;
  std::shared_ptr<bool> open = std::make_shared<bool>(true); // false once closed (the client may be gone then)

  bool wants(const jobs::Event &e) const {
    if (!job.empty() && e.job_id != job)
      return false;
    if (!video.empty() && e.video_id != video)
      return false;
    return true;
  }
  void write(const std::string &text) {
    if (closed)
      return;
    soup_message_body_append(soup_server_message_get_response_body(msg), SOUP_MEMORY_COPY, text.data(), text.size());
    soup_server_message_unpause(msg);
  }
  // An event of the hub: each once, in id order (with several processes, what was replayed from the catalog may
  // also arrive live).
  void send(const jobs::Event &e) {
    if (waiting)
      return held.push_back(e);
    if (e.id <= seen)
      return;
    seen = e.id;
    send_state(e);
  }
  // The end of a wait (replay or current state): what arrived meanwhile, each once.
  void release_held() {
    waiting = false;
    auto kept = std::move(held);
    held.clear();
    for (const auto &e : kept)
      send(e);
  }
  // A job's current state, under the latest id.
  void send_state(const jobs::Event &e) {
    if (wants(e))
      write("id: " + std::to_string(e.id) + "\nevent: " + e.name + "\ndata: " + e.data + "\n\n");
  }
  void close() {
    if (closed)
      return;
    closed = true;
    *open = false;
    if (token)
      cx->service.events().unsubscribe(token);
    token = 0;
    if (keep_alive)
      g_source_remove(keep_alive);
    keep_alive = 0;
    cx->sse_clients.erase(this);
  }
};

namespace {

void end_stream(SseClient *c) {
  SoupServerMessage *msg = c->msg;
  c->close();
  soup_message_body_complete(soup_server_message_get_response_body(msg));
  soup_server_message_unpause(msg);
}

// The queued and running jobs, newest first in each state.
std::vector<store::Job> unfinished_jobs(store::Store &s) {
  std::vector<store::Job> out;
  for (auto state : {store::JobState::Queued, store::JobState::Running}) {
    store::JobFilter f;
    f.state = state;
    for (auto &j : s.jobs(f))
      out.push_back(std::move(j));
  }
  return out;
}

// Too old to replay: the current state of every unfinished job instead, read on the executor (the live events that
// arrive meanwhile follow it). Inline executor: read at once, a failure thrown as any handler's catalog call.
void send_current_state(SseClient *c) {
  auto sent = [c, open = c->open, alive = c->cx->alive](store::Outcome<std::vector<store::Job>> &o) {
    if (!*alive || !*open)
      return;
    if (!o.ok()) {
      // The client reconnects (after `retry`) and asks again.
      SLUICE_LOG(http_log(), Warning, "event stream: cannot read the unfinished jobs: %s", o.error->what());
      return end_stream(c);
    }
    for (const auto &j : *o.value) {
      json::Node n(job_json(c->cx->service, j));
      c->send_state(
          jobs::Event{c->cx->service.events().last_id(), "job", j.id, j.video_id, json::to_string(n.get(), false)});
    }
    c->release_held();
  };
  store::Executor &ex = c->cx->service.executor();
  if (!ex.is_inline())
    return ex.run(unfinished_jobs, std::move(sent));
  store::Outcome<std::vector<store::Job>> o;
  o.value = unfinished_jobs(c->cx->service.store());
  sent(o);
}

} // namespace

void close_event_streams(Context &cx) {
  auto clients = cx.sse_clients;
  for (auto *c : clients)
    end_stream(c);
}

namespace handlers {

void events(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  GHashTable *query = rq.query;
  if (!cx.service.accepting())
    return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
  jobs::EventHub &events = cx.service.events();
  auto *c = new SseClient();
  c->cx = &cx;
  c->msg = msg;
  c->job = query_value(query, "job");
  c->video = query_value(query, "video");
  if ((!c->job.empty() && !store::is_id(c->job)) || (!c->video.empty() && !store::is_id(c->video))) {
    delete c;
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", "job and video must be ids (16 hex digits)");
    return;
  }
  std::string last = header(msg, "Last-Event-ID");
  if (last.empty())
    last = query_value(query, "last_event_id");

  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
  soup_message_headers_replace(h, "Content-Type", "text/event-stream; charset=utf-8");
  soup_message_headers_replace(h, "Cache-Control", "no-cache");
  soup_message_headers_replace(h, "X-Accel-Buffering", "no");
  // What has been written is not kept: a stream open for days uses no more memory than a fresh one.
  soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);

  c->msg = msg;
  cx.sse_clients.insert(c);
  c->write("retry: 2000\n\n");
  if (!last.empty()) {
    char *end = nullptr;
    const unsigned long long id = std::strtoull(last.c_str(), &end, 10);
    // The missed events are read where the main loop does not wait (a shared hub's table), the live events that
    // arrive meanwhile held back and sent after them; events no longer kept: the current state instead.
    c->waiting = true;
    c->token = events.subscribe([c](const jobs::Event &e) { c->send(e); });
    auto replayed = [c, open = c->open, alive = cx.alive, id](bool ok, std::vector<jobs::Event> missed) {
      if (!*alive || !*open)
        return;
      if (!ok)
        return send_current_state(c);
      c->seen = id;
      c->waiting = false;
      for (const auto &e : missed)
        c->send(e);
      c->release_held();
    };
    if (*end == '\0')
      events.since_later(id, std::move(replayed));
    else
      replayed(false, {});
  }
  if (!c->token)
    c->token = events.subscribe([c](const jobs::Event &e) { c->send(e); });
  c->keep_alive = g_timeout_add_seconds(
      static_cast<guint>(cx.config.keep_alive_s),
      [](gpointer data) -> gboolean {
        static_cast<SseClient *>(data)->write(": keep-alive\n\n");
        return G_SOURCE_CONTINUE;
      },
      c);
  g_signal_connect_data(
      msg, "finished", G_CALLBACK(+[](SoupServerMessage *, gpointer data) { static_cast<SseClient *>(data)->close(); }),
      c,
      [](gpointer data, GClosure *) {
        auto *cl = static_cast<SseClient *>(data);
        cl->close();
        delete cl;
      },
      GConnectFlags(0));
}

} // namespace handlers

} // namespace sluice::http
