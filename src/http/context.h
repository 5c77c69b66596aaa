// SPDX-License-Identifier: LGPL-2.1-or-later
// What every HTTP handler works with: the service, the server's state, and the request being answered.
#pragma once

#include "app/service.h"
#include "auth/authenticator.h"
#include "core/config.h"
#include "http/connections.h"
#include "http/files.h"
#include "http/idempotency.h"
#include "http/log.h"

#include <libsoup/soup.h>

#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice::http {

struct SseClient;
struct RateLimits; // http/limits.cpp

// The URL layout: spelled here and in the handlers, nowhere below http/.
inline constexpr const char *kApi = "/api/v1";

// One request as the handlers see it. `path` is still percent-encoded (the server is raw-paths):
// file names are decoded once, segment by segment, by split_path.
struct Request {
  SoupServerMessage *msg = nullptr;
  std::string method;
  std::string path;
  GHashTable *query = nullptr;
  std::vector<std::string> params; // the {id} captures of the route's pattern, then the rest for '*'
  std::string id;                  // the request id (X-Request-Id)
};

// The server's state shared by the handlers.
struct Context {
  Context(const ServerConfig &c, app::Service &s) : config(c), service(s), idempotency(s) {}

  const ServerConfig &config;
  app::Service &service;
  IdempotencyKeys idempotency;
  std::unique_ptr<auth::Authenticator> auth; // [auth]: checks the credentials of every route that is not open
  std::shared_ptr<RateLimits> limits;        // [limits]: made by the chain's first request
  SoupServer *server = nullptr;
  std::unique_ptr<Connections> connections; // accepts for server (http/connections.h)
  std::set<SseClient *> sse_clients;
  // Media serving: small files in memory, rewritten playlists by file version.
  FileCache files;
  std::unordered_map<std::string, std::pair<std::string, std::shared_ptr<const ServedText>>> playlists;
  std::string web_root;
  // Cleared when the server goes: callbacks that outlive it do nothing.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

// libsoup's pause is a flag, not a count: a wait that starts another before it ends (a catalog call whose answer
// makes the next one) would be unpaused by the first one's end. hold() pauses msg and counts; release() unpauses it
// when the last hold ends.
inline void hold(SoupServerMessage *msg) {
  static const GQuark holds = g_quark_from_static_string("sluice-holds");
  auto n = GPOINTER_TO_INT(g_object_get_qdata(G_OBJECT(msg), holds));
  g_object_set_qdata(G_OBJECT(msg), holds, GINT_TO_POINTER(n + 1));
  if (n == 0)
    soup_server_message_pause(msg);
}
inline void release(SoupServerMessage *msg) {
  static const GQuark holds = g_quark_from_static_string("sluice-holds");
  auto n = GPOINTER_TO_INT(g_object_get_qdata(G_OBJECT(msg), holds));
  g_object_set_qdata(G_OBJECT(msg), holds, GINT_TO_POINTER(n - 1));
  if (n == 1)
    soup_server_message_unpause(msg);
}

// Answers a paused message later, on the main loop, unless the server is gone by then: pauses msg and returns the
// callback that answers it (with answer) and unpauses it. The callback may start another later() on msg.
template <typename Fn> auto later(Context &cx, SoupServerMessage *msg, Fn &&answer) {
  g_object_ref(msg);
  hold(msg);
  return [alive = cx.alive, msg, answer = std::forward<Fn>(answer)](auto &&...result) {
    if (*alive)
      answer(std::forward<decltype(result)>(result)...);
    release(msg);
    g_object_unref(msg);
  };
}

// Ends every open event stream (http/events.cpp).
void close_event_streams(Context &cx);

} // namespace sluice::http
