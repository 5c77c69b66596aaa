// SPDX-License-Identifier: LGPL-2.1-or-later
// Accepting the HTTP connections for libsoup: their phases, timeouts, per-client cap and orderly closing.
#include "http/connections.h"

#include "core/error.h"
#include "http/log.h"

#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <unordered_map>
#include <vector>

struct SluiceConnInput;

namespace sluice::http {

namespace {

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

} // namespace

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
  GSource *timer = nullptr;
  GSource *drain = nullptr;
  std::size_t drained = 0;
  guint idle_close = 0;
};

namespace {
// Called by the input stream when libsoup reads the end of the stream or an error: true to hold it back.
bool hold_back_end(ClientConnection *c);
// Called when libsoup (or we) close the stream.
void input_closed(ClientConnection *c);
} // namespace

} // namespace sluice::http

// ---------------------------------------------------------------------------------------------
// The input side of a connection as libsoup reads it: the socket's, except that the end of a keep-alive
// connection between two requests is held back from libsoup. libsoup 3.2 waits for the next request
// with a message that has no completion callback; when that read fails, it drops the message and
// forgets the connection without closing it (soup_server_message_io_http1_finished). Held back, the
// message keeps waiting, and the connection is taken back and closed (ClientConnection::msg).

struct SluiceConnInput {
  GInputStream parent;
  GInputStream *base; // the socket's input stream
  sluice::http::ClientConnection *conn;
};

struct SluiceConnInputClass {
  GInputStreamClass parent_class;
};

GType sluice_conn_input_get_type();
static void sluice_conn_input_pollable_init(GPollableInputStreamInterface *iface);

G_DEFINE_TYPE_WITH_CODE(SluiceConnInput, sluice_conn_input, G_TYPE_INPUT_STREAM,
                        G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_INPUT_STREAM, sluice_conn_input_pollable_init))

static SluiceConnInput *conn_input(gpointer p) {
  return G_TYPE_CHECK_INSTANCE_CAST(p, sluice_conn_input_get_type(), SluiceConnInput);
}

static gssize conn_input_read(SluiceConnInput *self, void *buffer, gsize count, gboolean blocking,
                              GCancellable *cancellable, GError **error) {
  if (self->conn && self->conn->end_held) {
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "the client has left");
    return -1;
  }
  GError *err = nullptr;
  gssize n = g_pollable_stream_read(self->base, buffer, count, blocking, cancellable, &err);
  bool ended = count > 0 && (n == 0 || (n < 0 && !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) &&
                                        !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)));
  if (ended && self->conn && sluice::http::hold_back_end(self->conn)) {
    g_clear_error(&err);
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "the client has left");
    return -1;
  }
  if (err)
    g_propagate_error(error, err);
  return n;
}

static gssize sluice_conn_input_read_fn(GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable,
                                        GError **error) {
  return conn_input_read(conn_input(stream), buffer, count, TRUE, cancellable, error);
}

static gboolean sluice_conn_input_close_fn(GInputStream *stream, GCancellable *, GError **) {
  SluiceConnInput *self = conn_input(stream);
  if (self->conn)
    sluice::http::input_closed(self->conn);
  return TRUE;
}

static void sluice_conn_input_finalize(GObject *object) {
  g_clear_object(&conn_input(object)->base);
  G_OBJECT_CLASS(sluice_conn_input_parent_class)->finalize(object);
}

static void sluice_conn_input_init(SluiceConnInput *) {}

static void sluice_conn_input_class_init(SluiceConnInputClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_conn_input_finalize;
  G_INPUT_STREAM_CLASS(klass)->read_fn = sluice_conn_input_read_fn;
  G_INPUT_STREAM_CLASS(klass)->close_fn = sluice_conn_input_close_fn;
}

static gboolean sluice_conn_input_is_readable(GPollableInputStream *stream) {
  SluiceConnInput *self = conn_input(stream);
  if (self->conn && self->conn->end_held)
    return FALSE;
  return g_pollable_input_stream_is_readable(G_POLLABLE_INPUT_STREAM(self->base));
}

static GSource *sluice_conn_input_create_source(GPollableInputStream *stream, GCancellable *cancellable) {
  SluiceConnInput *self = conn_input(stream);
  // Once the end is held back, libsoup's source never fires: the connection is closed before.
  GSource *child = nullptr;
  if (!(self->conn && self->conn->end_held))
    child = g_pollable_input_stream_create_source(G_POLLABLE_INPUT_STREAM(self->base), cancellable);
  GSource *source = g_pollable_source_new_full(stream, child, cancellable);
  if (child)
    g_source_unref(child);
  return source;
}

static gssize sluice_conn_input_read_nonblocking(GPollableInputStream *stream, void *buffer, gsize count,
                                                 GError **error) {
  return conn_input_read(conn_input(stream), buffer, count, FALSE, nullptr, error);
}

static void sluice_conn_input_pollable_init(GPollableInputStreamInterface *iface) {
  iface->is_readable = sluice_conn_input_is_readable;
  iface->create_source = sluice_conn_input_create_source;
  iface->read_nonblocking = sluice_conn_input_read_nonblocking;
}

// ---------------------------------------------------------------------------------------------

namespace sluice::http {

namespace {

gboolean timer_dispatch(GSource *source, GSourceFunc callback, gpointer data) {
  g_source_set_ready_time(source, -1);
  return callback ? callback(data) : G_SOURCE_REMOVE;
}

// A source that fires at its ready time only: one per connection, moved as its phase changes.
GSourceFuncs timer_funcs = {nullptr, nullptr, timer_dispatch, nullptr, nullptr, nullptr};

std::string address_text(GSocketAddress *a) {
  if (!a || !G_IS_INET_SOCKET_ADDRESS(a))
    return "?";
  g_autofree gchar *s = g_inet_address_to_string(g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(a)));
  return s ? s : "?";
}

std::string lower_trimmed(const std::string &s) {
  std::size_t b = 0, e = s.size();
  while (b < e && g_ascii_isspace(s[b]))
    ++b;
  while (e > b && g_ascii_isspace(s[e - 1]))
    --e;
  std::string out = s.substr(b, e - b);
  for (auto &ch : out)
    ch = g_ascii_tolower(ch);
  return out;
}

// The response as libsoup would write it, with "Connection: close" and its Content-Length.
std::string serialize_response(SoupServerMessage *msg) {
  guint status = soup_server_message_get_status(msg);
  const char *reason = soup_server_message_get_reason_phrase(msg);
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + (reason ? reason : soup_status_get_phrase(status)) + "\r\n";
  soup_message_headers_foreach(
      soup_server_message_get_response_headers(msg),
      [](const char *name, const char *value, gpointer data) {
        for (const char *skip : {"Content-Length", "Transfer-Encoding", "Connection"})
          if (g_ascii_strcasecmp(name, skip) == 0)
            return;
        auto *o = static_cast<std::string *>(data);
        *o += name;
        *o += ": ";
        *o += value;
        *o += "\r\n";
      },
      &out);
  GBytes *body = soup_message_body_flatten(soup_server_message_get_response_body(msg));
  gsize len = 0;
  auto data = static_cast<const char *>(g_bytes_get_data(body, &len));
  out += "Content-Length: " + std::to_string(len) + "\r\nConnection: close\r\n\r\n";
  if (g_strcmp0(soup_server_message_get_method(msg), "HEAD") != 0 && len > 0)
    out.append(data, len);
  g_bytes_unref(body);
  return out;
}

std::string too_many_response(int max) {
  std::string body = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this address has " +
                     std::to_string(max) + " connections open, the most one client may have\"}}\n";
  return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
         "Retry-After: 1\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

} // namespace

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

  Impl(SoupServer *s, const ServerConfig &c) : server(s), config(c) {}

  // -- accepting

  void start_accepting() {
    accept_source = g_socket_create_source(listening, G_IO_IN, nullptr);
    g_source_set_callback(accept_source, G_SOURCE_FUNC(on_accept), this, nullptr);
    g_source_attach(accept_source, g_main_context_get_thread_default());
  }

  void stop_accepting() {
    if (accept_source) {
      g_source_destroy(accept_source);
      g_source_unref(accept_source);
      accept_source = nullptr;
    }
    if (accept_retry)
      g_source_remove(accept_retry);
    accept_retry = 0;
  }

  static gboolean on_accept(GSocket *, GIOCondition, gpointer data) {
    auto *self = static_cast<Impl *>(data);
    for (int i = 0; i < kAcceptBatch; ++i) {
      GError *err = nullptr;
      GSocket *s = g_socket_accept(self->listening, nullptr, &err);
      if (s) {
        self->adopt(s);
        continue;
      }
      if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        g_error_free(err);
        return G_SOURCE_CONTINUE;
      }
      // Out of descriptors (or another failure): the connection waits in the backlog; retry shortly
      // instead of spinning on a listening socket that stays readable.
      gint64 now = g_get_monotonic_time();
      if (now - self->accept_error_logged > 10 * kSecond) {
        SLUICE_LOG(http_log(), Warning, "cannot accept a connection: %s (%zu open); retrying every %u ms", err->message,
                   self->all.size(), kAcceptRetryMs);
        self->accept_error_logged = now;
      }
      g_error_free(err);
      g_source_unref(self->accept_source);
      self->accept_source = nullptr;
      self->accept_retry = g_timeout_add(kAcceptRetryMs, on_accept_retry, self);
      return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
  }

  static gboolean on_accept_retry(gpointer data) {
    auto *self = static_cast<Impl *>(data);
    self->accept_retry = 0;
    if (self->listening)
      self->start_accepting();
    return G_SOURCE_REMOVE;
  }

  ClientConnection *make(GSocket *s, GSocketAddress *remote) {
    auto *c = new ClientConnection();
    c->owner = this;
    c->socket = s;
    c->remote = remote;
    c->client = address_text(remote);
    c->timer = g_source_new(&timer_funcs, sizeof(GSource));
    g_source_set_callback(c->timer, on_timer, c, nullptr);
    g_source_set_ready_time(c->timer, -1);
    g_source_attach(c->timer, g_main_context_get_thread_default());
    all.insert(c);
    return c;
  }

  void adopt(GSocket *s) {
    g_socket_set_option(s, IPPROTO_TCP, TCP_NODELAY, TRUE, nullptr);
    GError *err = nullptr;
    GSocketAddress *remote = g_socket_get_remote_address(s, &err);
    GSocketAddress *local = remote ? g_socket_get_local_address(s, &err) : nullptr;
    if (!local) {
      SLUICE_LOG(http_log(), Debug, "dropping a connection: %s", err ? err->message : "no address");
      g_clear_error(&err);
      g_clear_object(&remote);
      g_socket_close(s, nullptr);
      g_object_unref(s);
      return;
    }
    ClientConnection *c = make(s, remote);
    c->local = local;
    std::size_t max = static_cast<std::size_t>(std::max(config.max_connections_per_client, 0));
    if (max > 0 && open_for(c->client) >= max) {
      SLUICE_LOG(http_log(), Info, "%s: refusing a connection: %zu open already", c->client.c_str(),
                 open_for(c->client));
      linger(c, too_many_response(static_cast<int>(max)));
      return;
    }
    c->counted = true;
    per_client[c->client].insert(c);
    c->socket_conn = g_socket_connection_factory_create_connection(s);
    c->input = conn_input(g_object_new(sluice_conn_input_get_type(), nullptr));
    c->input->base = G_INPUT_STREAM(g_object_ref(g_io_stream_get_input_stream(G_IO_STREAM(c->socket_conn))));
    c->input->conn = c;
    c->stream =
        g_simple_io_stream_new(G_INPUT_STREAM(c->input), g_io_stream_get_output_stream(G_IO_STREAM(c->socket_conn)));
    by_remote[remote] = c;
    enter(c, ConnPhase::Headers);
    c->in_soup = true;
    // libsoup starts the first message (request-started) before this returns.
    if (!soup_server_accept_iostream(server, c->stream, local, remote, &err)) {
      SLUICE_LOG(http_log(), Warning, "%s: the server did not take the connection: %s", c->client.c_str(),
                 err ? err->message : "?");
      g_clear_error(&err);
      c->in_soup = false;
      drop(c);
    }
  }

  // The connections `client` has open. A client that closes connections and opens new ones at once
  // may be at the cap only because the main loop has not read those ends yet: its connections between
  // two requests whose end is already there are closed first.
  std::size_t open_for(const std::string &client) {
    auto it = per_client.find(client);
    if (it == per_client.end())
      return 0;
    if (it->second.size() >= static_cast<std::size_t>(config.max_connections_per_client)) {
      std::vector<ClientConnection *> ended;
      for (auto *c : it->second) {
        if (!c->between || !c->in_soup)
          continue;
        char b;
        ssize_t n = c->end_held ? 0 : recv(g_socket_get_fd(c->socket), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
          ended.push_back(c);
      }
      for (auto *c : ended)
        close_idle(c);
      it = per_client.find(client);
    }
    return it == per_client.end() ? 0 : it->second.size();
  }

  // -- phases and timeouts

  gint64 deadline(const ClientConnection *c) const {
    auto after = [c](int s) { return s > 0 ? c->since + s * kSecond : -1; };
    switch (c->phase) {
    case ConnPhase::Headers: return after(config.header_timeout_s);
    case ConnPhase::Body: return after(config.body_timeout_s);
    case ConnPhase::Idle: return after(config.idle_timeout_s);
    case ConnPhase::Closing: return c->since + kClosingGraceUs;
    case ConnPhase::Lingering: return c->since + kLingerUs;
    case ConnPhase::Busy: return -1;
    }
    return -1;
  }

  void enter(ClientConnection *c, ConnPhase phase) {
    c->phase = phase;
    c->since = g_get_monotonic_time();
    g_source_set_ready_time(c->timer, deadline(c));
  }

  static gboolean on_timer(gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    if (c->closed)
      return G_SOURCE_CONTINUE;
    gint64 due = c->owner->deadline(c);
    if (due < 0)
      return G_SOURCE_CONTINUE;
    if (g_get_monotonic_time() < due) {
      // Body bytes came since the timer was set.
      g_source_set_ready_time(c->timer, due);
      return G_SOURCE_CONTINUE;
    }
    c->owner->expire(c);
    return G_SOURCE_CONTINUE;
  }

  void expire(ClientConnection *c) {
    const ServerConfig &k = config;
    switch (c->phase) {
    case ConnPhase::Headers:
      SLUICE_LOG(http_log(), Info, "%s: closing a connection: no complete request headers within %d s",
                 c->client.c_str(), k.header_timeout_s);
      shut(c);
      break;
    case ConnPhase::Body:
      SLUICE_LOG(http_log(), Info, "%s: closing a connection: its request body sent nothing for %d s",
                 c->client.c_str(), k.body_timeout_s);
      shut(c);
      break;
    case ConnPhase::Idle:
      SLUICE_LOG(http_log(), Debug, "%s: closing a connection idle for %d s", c->client.c_str(), k.idle_timeout_s);
      close_idle(c);
      break;
    case ConnPhase::Closing:
      SLUICE_LOG(http_log(), Warning, "%s: the server still held a connection %d s after it was shut down: closed",
                 c->client.c_str(), static_cast<int>(kClosingGraceUs / kSecond));
      drop(c);
      break;
    case ConnPhase::Lingering: drop(c); break;
    case ConnPhase::Busy: break;
    }
  }

  // A request in progress: libsoup reads the end of the stream, fails the message as when a client
  // leaves (its "finished" handlers run: an upload removes its temporary file) and closes the connection.
  void shut(ClientConnection *c) {
    g_socket_shutdown(c->socket, TRUE, TRUE, nullptr);
    enter(c, ConnPhase::Closing);
  }

  // Between two requests: libsoup would not notice the end (see SluiceConnInput), so the connection is
  // taken back from it and closed here.
  void close_idle(ClientConnection *c) {
    if (c->closed)
      return;
    if (!c->between) {
      shut(c);
      return;
    }
    if (c->in_soup && c->msg) {
      c->in_soup = false;
      if (GIOStream *s = soup_server_message_steal_connection(c->msg))
        g_object_unref(s);
    }
    drop(c);
  }

  static gboolean on_idle_close(gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    c->idle_close = 0;
    c->owner->close_idle(c);
    return G_SOURCE_REMOVE;
  }

  // -- answering and closing ourselves

  // Sends `response`, shuts the sending side, and reads what the client still sends until it closes its
  // side (or kLingerUs), so that the answer is not lost to a reset; then closes.
  void linger(ClientConnection *c, const std::string &response) {
    enter(c, ConnPhase::Lingering);
    GError *err = nullptr;
    // An answer this small fits in the socket's buffer; a client that reads nothing may lose it.
    if (g_socket_send_with_blocking(c->socket, response.data(), response.size(), FALSE, nullptr, &err) < 0) {
      SLUICE_LOG(http_log(), Debug, "%s: cannot send the answer: %s", c->client.c_str(), err->message);
      g_clear_error(&err);
    }
    g_socket_shutdown(c->socket, FALSE, TRUE, nullptr);
    if (lingering >= kMaxLingering) {
      drop(c);
      return;
    }
    ++lingering;
    c->drain = g_socket_create_source(c->socket, GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR), nullptr);
    g_source_set_callback(c->drain, G_SOURCE_FUNC(on_drain), c, nullptr);
    g_source_attach(c->drain, g_main_context_get_thread_default());
  }

  static gboolean on_drain(GSocket *s, GIOCondition, gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    char buf[16384];
    for (int i = 0; i < 16; ++i) {
      GError *err = nullptr;
      gssize n = g_socket_receive_with_blocking(s, buf, sizeof buf, FALSE, nullptr, &err);
      if (n > 0) {
        c->drained += static_cast<std::size_t>(n);
        if (c->drained <= kMaxLingerBytes)
          continue;
      } else if (n < 0 && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        g_error_free(err);
        return G_SOURCE_CONTINUE;
      }
      g_clear_error(&err);
      c->owner->drop(c);
      return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
  }

  void answer_and_close(SoupServerMessage *msg) {
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
    auto it = by_remote.find(soup_server_message_get_remote_address(msg));
    if (it == by_remote.end() || it->second->closed || !it->second->in_soup || it->second->msg != msg)
      return; // libsoup answers after reading the body, then closes
    ClientConnection *c = it->second;
    std::string response = serialize_response(msg);
    SLUICE_LOG(http_log(), Info, "%s: %s %s -> %u, connection closed", c->client.c_str(),
               soup_server_message_get_method(msg), g_uri_get_path(soup_server_message_get_uri(msg)),
               soup_server_message_get_status(msg));
    c->in_soup = false;
    if (GIOStream *s = soup_server_message_steal_connection(msg))
      g_object_unref(s);
    linger(c, response);
  }

  // -- the end

  // Closes the descriptor now; the rest goes when the main loop is idle.
  void drop(ClientConnection *c) {
    if (c->closed)
      return;
    c->closed = true;
    if (c->drain) {
      g_source_destroy(c->drain);
      g_source_unref(c->drain);
      c->drain = nullptr;
      --lingering;
    }
    if (c->stream && !g_io_stream_is_closed(c->stream))
      g_io_stream_close(c->stream, nullptr, nullptr);
    if (c->socket_conn)
      g_io_stream_close(G_IO_STREAM(c->socket_conn), nullptr, nullptr);
    g_socket_close(c->socket, nullptr);
    if (c->counted) {
      if (auto it = per_client.find(c->client); it != per_client.end()) {
        it->second.erase(c);
        if (it->second.empty())
          per_client.erase(it);
      }
      c->counted = false;
    }
    if (auto it = by_remote.find(c->remote); it != by_remote.end() && it->second == c)
      by_remote.erase(it);
    g_source_set_ready_time(c->timer, -1);
    dead.push_back(c);
    if (!reap_source)
      reap_source = g_idle_add(on_reap, this);
  }

  static gboolean on_reap(gpointer data) {
    auto *self = static_cast<Impl *>(data);
    self->reap_source = 0;
    auto dead = std::move(self->dead);
    self->dead.clear();
    for (auto *c : dead)
      self->destroy(c);
    return G_SOURCE_REMOVE;
  }

  void destroy(ClientConnection *c) {
    all.erase(c);
    if (c->idle_close)
      g_source_remove(c->idle_close);
    g_source_destroy(c->timer);
    g_source_unref(c->timer);
    if (c->input)
      c->input->conn = nullptr;
    if (c->msg) {
      g_signal_handlers_disconnect_by_data(c->msg, c);
      g_object_unref(c->msg);
    }
    g_clear_object(&c->stream);
    g_clear_object(&c->input);
    g_clear_object(&c->socket_conn);
    g_clear_object(&c->socket);
    g_clear_object(&c->remote);
    g_clear_object(&c->local);
    delete c;
  }

  // -- libsoup's view of the requests

  ClientConnection *find(SoupServerMessage *msg) {
    auto it = by_remote.find(soup_server_message_get_remote_address(msg));
    if (it == by_remote.end() || it->second->closed)
      return nullptr;
    return it->second;
  }

  static bool active(const ClientConnection *c) {
    return c->phase != ConnPhase::Closing && c->phase != ConnPhase::Lingering && !c->closed;
  }

  static void on_request_started(SoupServer *, SoupServerMessage *msg, gpointer data) {
    auto *self = static_cast<Impl *>(data);
    ClientConnection *c = self->find(msg);
    if (!c || !active(c))
      return;
    if (c->msg != msg) {
      if (c->msg) {
        g_signal_handlers_disconnect_by_data(c->msg, c);
        g_object_unref(c->msg);
      }
      c->msg = SOUP_SERVER_MESSAGE(g_object_ref(msg));
      g_signal_connect(msg, "got-headers", G_CALLBACK(on_got_headers), c);
      g_signal_connect(msg, "got-chunk", G_CALLBACK(on_got_chunk), c);
      g_signal_connect(msg, "got-body", G_CALLBACK(on_handling), c);
      g_signal_connect(msg, "wrote-headers", G_CALLBACK(on_handling), c);
    }
    c->between = false;
    self->enter(c, ConnPhase::Headers);
  }

  static void on_got_headers(SoupServerMessage *, gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    if (active(c) && c->phase == ConnPhase::Headers)
      c->owner->enter(c, ConnPhase::Body);
  }

  static void on_got_chunk(SoupServerMessage *, GBytes *, gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    if (active(c) && c->phase == ConnPhase::Body)
      c->since = g_get_monotonic_time(); // the timer catches up when it fires
  }

  // The body is read (or the answer is being written without it): handling and writing take their time.
  static void on_handling(SoupServerMessage *, gpointer data) {
    auto *c = static_cast<ClientConnection *>(data);
    if (active(c) && (c->phase == ConnPhase::Headers || c->phase == ConnPhase::Body))
      c->owner->enter(c, ConnPhase::Busy);
  }

  // request-finished and request-aborted. When libsoup keeps the connection, it now waits for the next
  // request; otherwise it closes the stream right after this (input_closed).
  static void on_request_done(SoupServer *, SoupServerMessage *msg, gpointer data) {
    auto *self = static_cast<Impl *>(data);
    ClientConnection *c = self->find(msg);
    if (!c || c->msg != msg)
      return;
    c->between = true;
    if (active(c))
      self->enter(c, ConnPhase::Idle);
  }
};

namespace {

bool hold_back_end(ClientConnection *c) {
  if (!c->between || c->closed || !c->in_soup)
    return false;
  if (!c->end_held)
    SLUICE_LOG(http_log(), Debug, "%s: the client closed a keep-alive connection", c->client.c_str());
  c->end_held = true;
  if (!c->idle_close)
    c->idle_close = g_idle_add_full(G_PRIORITY_DEFAULT, Connections::Impl::on_idle_close, c, nullptr);
  return true;
}

void input_closed(ClientConnection *c) {
  if (c->phase == ConnPhase::Lingering && !c->closed)
    return; // taken from libsoup: closed when the lingering ends
  c->in_soup = false;
  c->owner->drop(c);
}

} // namespace

// ---------------------------------------------------------------------------------------------

Connections::Connections(SoupServer *server, const ServerConfig &config)
    : impl_(std::make_unique<Impl>(server, config)) {
  auto *i = impl_.get();
  i->handlers.push_back(g_signal_connect(server, "request-started", G_CALLBACK(Impl::on_request_started), i));
  i->handlers.push_back(g_signal_connect(server, "request-finished", G_CALLBACK(Impl::on_request_done), i));
  i->handlers.push_back(g_signal_connect(server, "request-aborted", G_CALLBACK(Impl::on_request_done), i));
}

Connections::~Connections() {
  stop();
  for (gulong id : impl_->handlers)
    g_signal_handler_disconnect(impl_->server, id);
  std::vector<ClientConnection *> open(impl_->all.begin(), impl_->all.end());
  for (auto *c : open)
    impl_->drop(c);
  if (impl_->reap_source)
    g_source_remove(impl_->reap_source);
  impl_->reap_source = 0;
  auto dead = std::move(impl_->dead);
  for (auto *c : dead)
    impl_->destroy(c);
  if (impl_->anchor_peer) {
    g_socket_close(impl_->anchor_peer, nullptr);
    g_object_unref(impl_->anchor_peer);
  }
}

void Connections::listen(GSocket *listening) {
  // libsoup 3.2 keeps a connection alive after a response only while the server has a listener of its
  // own (request_finished in soup-server.c). It gets one that never accepts anything: one end of a
  // socket pair, connected, that nothing writes to (SoupListener also takes connected sockets).
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    throw Error(ErrorCode::Io, std::string("cannot create a socket pair: ") + g_strerror(errno));
  GError *err = nullptr;
  GSocket *anchor = g_socket_new_from_fd(fds[0], &err);
  if (!anchor) {
    close(fds[0]);
    close(fds[1]);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  }
  impl_->anchor_peer = g_socket_new_from_fd(fds[1], &err);
  if (!impl_->anchor_peer) {
    close(fds[1]);
    g_object_unref(anchor);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  }
  gboolean ok = soup_server_listen_socket(impl_->server, anchor, static_cast<SoupServerListenOptions>(0), &err);
  g_object_unref(anchor);
  if (!ok)
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  impl_->listening = G_SOCKET(g_object_ref(listening));
  g_socket_set_blocking(listening, FALSE);
  impl_->start_accepting();
}

void Connections::stop() {
  impl_->stop_accepting();
  if (impl_->listening) {
    g_socket_close(impl_->listening, nullptr);
    g_clear_object(&impl_->listening);
  }
}

std::size_t Connections::size() const {
  std::size_t n = 0;
  for (auto *c : impl_->all)
    n += c->closed ? 0 : 1;
  return n;
}

void Connections::answer_and_close(SoupServerMessage *msg) {
  impl_->answer_and_close(msg);
}

std::string ambiguous_framing(SoupMessageHeaders *request_headers) {
  struct Found {
    std::vector<std::string> lengths, codings;
  } found;
  soup_message_headers_foreach(
      request_headers,
      [](const char *name, const char *value, gpointer data) {
        auto *f = static_cast<Found *>(data);
        std::vector<std::string> *into = nullptr;
        if (g_ascii_strcasecmp(name, "Content-Length") == 0)
          into = &f->lengths;
        else if (g_ascii_strcasecmp(name, "Transfer-Encoding") == 0)
          into = &f->codings;
        if (!into)
          return;
        g_auto(GStrv) parts = g_strsplit(value, ",", -1);
        for (gchar **p = parts; *p; ++p)
          into->push_back(lower_trimmed(*p));
      },
      &found);
  if (!found.codings.empty()) {
    if (!found.lengths.empty())
      return "a request may not have both Content-Length and Transfer-Encoding";
    if (found.codings.size() != 1 || found.codings[0] != "chunked") {
      std::string list;
      for (const auto &c : found.codings)
        list += (list.empty() ? "" : ", ") + c;
      return "Transfer-Encoding '" + list + "' is not supported: only chunked is";
    }
    return "";
  }
  const std::string *first = nullptr;
  for (const auto &l : found.lengths) {
    if (l.empty() || l.size() > 18 || l.find_first_not_of("0123456789") != std::string::npos)
      return "Content-Length '" + l + "' is not a number";
    if (first && std::strtoull(l.c_str(), nullptr, 10) != std::strtoull(first->c_str(), nullptr, 10))
      return "Content-Length headers disagree (" + *first + ", " + l + ")";
    first = &l;
  }
  return "";
}

} // namespace sluice::http
