// SPDX-License-Identifier: LGPL-2.1-or-later
// What the parts of the HTTP connections share: a connection's state and phases, the table of connections.
#pragma once

#include "http/connections.h"

#include <gio/gio.h>
#include <libsoup/soup.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

// The input side of a connection as libsoup reads it (connections_input.cpp).
struct SluiceConnInput;

namespace sluice::http {

namespace detail {

constexpr gint64 kSecond = G_USEC_PER_SEC;
// A connection answered and shut down by us reads what the client still sends for this long at most
// before it is closed, so that the client reads the answer instead of a reset.
constexpr gint64 kLingerUs = 2 * kSecond;
constexpr std::size_t kMaxLingerBytes = 1 << 20;
constexpr int kMaxLingering = 64;
// A connection shut down on a timeout is normally closed by libsoup at once; after this it is closed here.
constexpr gint64 kClosingGraceUs = 5 * kSecond;
constexpr int kAcceptBatch = 64;
constexpr guint kAcceptRetryMs = 100;

} // namespace detail

enum class ConnPhase {
  Headers,   // new, or a request has started: its headers are awaited (header-timeout)
  Body,      // its body is being read (body-timeout between bytes)
  Busy,      // the request is being handled or its response written: no timeout
  Idle,      // between two requests of a keep-alive connection (idle-timeout)
  Closing,   // shut down on a timeout: libsoup is about to close it
  Lingering, // answered and shut down by us, taken from libsoup: draining before the close
};

struct ClientConnection {
  Connections::Impl *owner = nullptr;
  GSocket *socket = nullptr;                // ours (a reference)
  GSocketConnection *socket_conn = nullptr; // over socket
  SluiceConnInput *input = nullptr;
  GIOStream *stream = nullptr; // what libsoup reads (input) and writes (the socket's output)
  GSocketAddress *remote = nullptr, *local = nullptr;
  std::string client; // the remote IP address
  bool counted = false;
  ConnPhase phase = ConnPhase::Headers;
  gint64 since = 0; // when the phase began (Body: when bytes last came), monotonic µs
  // The latest request's message (a reference). libsoup offers no handle on a connection but its
  // messages: this one takes an idle connection back from libsoup (soup_server_message_steal_connection).
  SoupServerMessage *msg = nullptr;
  bool in_soup = false;  // libsoup holds it
  bool between = false;  // the last request is finished and the next has not started
  bool end_held = false; // the client left between two requests; libsoup was not told
  bool closed = false;   // the descriptor is closed
  // The fast path (connections_fast.cpp): requests read and answered by us until one goes to libsoup.
  bool fast = false;
  GSource *watch = nullptr;               // the socket's readiness, while fast
  std::unique_ptr<FastResponse> response; // being written
  std::size_t written = 0;                // of response's head and body
  std::uint64_t requests = 0;             // answered on the fast path
  GSource *timer = nullptr;
  GSource *drain = nullptr;
  std::size_t drained = 0;
  guint idle_close = 0;
};

struct Connections::Impl {
  SoupServer *server;
  const ServerConfig &config;
  GSocket *listening = nullptr;
  GSource *accept_source = nullptr;
  guint accept_retry = 0;
  gint64 accept_error_logged = 0;
  GSocket *anchor_peer = nullptr;
  std::set<ClientConnection *> all;
  std::unordered_map<GSocketAddress *, ClientConnection *> by_remote;
  std::unordered_map<std::string, std::set<ClientConnection *>> per_client; // open ones, by address
  std::vector<ClientConnection *> dead;
  guint reap_source = 0;
  int lingering = 0;
  std::vector<gulong> handlers;
  FastHandler fast;

  Impl(SoupServer *s, const ServerConfig &c) : server(s), config(c) {}

  // -- accepting (connections.cpp)

  void start_accepting();
  void stop_accepting();
  static gboolean on_accept(GSocket *, GIOCondition, gpointer data);
  static gboolean on_accept_retry(gpointer data);
  void adopt(GSocket *s);
  // The connections `client` has open. A client that closes connections and opens new ones at once
  // may be at the cap only because the main loop has not read those ends yet: its connections between
  // two requests whose end is already there are closed first.
  std::size_t open_for(const std::string &client);

  // Hands c to libsoup (its first request, or the next one, unread), ending its fast path.
  void to_soup(ClientConnection *c);

  // -- the fast path (connections_fast.cpp)

  void start_fast(ClientConnection *c);
  static gboolean on_fast_ready(ClientConnection *c, GIOCondition condition);
  // Reads the next request if it can be offered and answers it, or hands c to libsoup.
  void read_fast(ClientConnection *c);
  // Writes what is left of c->response: false when it must wait for the socket.
  bool write_fast(ClientConnection *c);
  void watch_for(ClientConnection *c, GIOCondition condition);
  // The fast path's part of drop(): the watch, and a response not written whole.
  void end_fast(ClientConnection *c);

  // -- phases and timeouts (connections_phases.cpp)

  ClientConnection *make(GSocket *s, GSocketAddress *remote);
  gint64 deadline(const ClientConnection *c) const;
  void enter(ClientConnection *c, ConnPhase phase);
  static gboolean on_timer(gpointer data);
  void expire(ClientConnection *c);
  // A request in progress: libsoup reads the end of the stream, fails the message as when a client
  // leaves (its "finished" handlers run: an upload removes its temporary file) and closes the connection.
  void shut(ClientConnection *c);
  // Between two requests: libsoup would not notice the end (see SluiceConnInput), so the connection is
  // taken back from it and closed here.
  void close_idle(ClientConnection *c);
  static gboolean on_idle_close(gpointer data);

  // -- answering and closing ourselves (connections_framing.cpp)

  // Sends `response`, shuts the sending side, and reads what the client still sends until it closes its
  // side (or kLingerUs), so that the answer is not lost to a reset; then closes.
  void linger(ClientConnection *c, const std::string &response);
  static gboolean on_drain(GSocket *s, GIOCondition, gpointer data);
  void answer_and_close(SoupServerMessage *msg);

  // -- the end (connections_phases.cpp)

  // Closes the descriptor now; the rest goes when the main loop is idle.
  void drop(ClientConnection *c);
  static gboolean on_reap(gpointer data);
  void destroy(ClientConnection *c);

  // -- libsoup's view of the requests (connections_phases.cpp)

  ClientConnection *find(SoupServerMessage *msg);
  static bool active(const ClientConnection *c);
  static void on_request_started(SoupServer *, SoupServerMessage *msg, gpointer data);
  static void on_got_headers(SoupServerMessage *msg, gpointer data);
  static void on_got_chunk(SoupServerMessage *, GBytes *, gpointer data);
  // The body is read (or the answer is being written without it): handling and writing take their time.
  static void on_handling(SoupServerMessage *, gpointer data);
  // request-finished and request-aborted. When libsoup keeps the connection, it now waits for the next
  // request; otherwise it closes the stream right after this (input_closed).
  static void on_request_done(SoupServer *, SoupServerMessage *msg, gpointer data);
};

namespace detail {

// A new input stream over `base` (the socket's; a reference is taken) for the connection c.
SluiceConnInput *new_conn_input(GInputStream *base, ClientConnection *c);
// The connection of the stream is gone: the stream reads on as the socket's.
void forget_conn(SluiceConnInput *input);
// Called by the input stream when libsoup reads the end of the stream or an error: true to hold it back.
bool hold_back_end(ClientConnection *c);
// Called when libsoup (or we) close the stream.
void input_closed(ClientConnection *c);
// Takes msg's connection back from libsoup (soup_server_message_steal_connection): it is ours to close.
void take_from_soup(SoupServerMessage *msg);

} // namespace detail

} // namespace sluice::http
