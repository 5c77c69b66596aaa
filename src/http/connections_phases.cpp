// SPDX-License-Identifier: LGPL-2.1-or-later
// The phases of an HTTP connection as libsoup's signals tell them: its timeouts, and its orderly closing.
#include "http/connections_internal.h"

#include "http/log.h"

#include <gio/gio.h>

#include <utility>

namespace sluice::http {

using namespace detail;

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

} // namespace

ClientConnection *Connections::Impl::make(GSocket *s, GSocketAddress *remote) {
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

// -- phases and timeouts

gint64 Connections::Impl::deadline(const ClientConnection *c) const {
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

void Connections::Impl::enter(ClientConnection *c, ConnPhase phase) {
  c->phase = phase;
  c->since = g_get_monotonic_time();
  // The timer is moved only to an earlier time: GLib 2.74 wakes the main loop up (a write to its eventfd, and one
  // more turn of the loop) at every g_source_set_ready_time, three phases a request. A timer that fires before the
  // phase's deadline moves itself to it (on_timer); one whose phase has none (Busy) does nothing.
  const gint64 due = deadline(c), set = g_source_get_ready_time(c->timer);
  if (due >= 0 && (set < 0 || due < set))
    g_source_set_ready_time(c->timer, due);
}

gboolean Connections::Impl::on_timer(gpointer data) {
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

void Connections::Impl::expire(ClientConnection *c) {
  const ServerConfig &k = config;
  if (c->fast) {
    // Waiting for a request on the fast path: nothing of it has been read; the connection is ours to close.
    SLUICE_LOG(http_log(), Debug, "%s: closing a connection: no request within %d s", c->client.c_str(),
               c->phase == ConnPhase::Idle ? k.idle_timeout_s : k.header_timeout_s);
    if (c->phase == ConnPhase::Headers || c->phase == ConnPhase::Idle)
      drop(c);
    return;
  }
  switch (c->phase) {
  case ConnPhase::Headers:
    SLUICE_LOG(http_log(), Info, "%s: closing a connection: no complete request headers within %d s", c->client.c_str(),
               k.header_timeout_s);
    shut(c);
    break;
  case ConnPhase::Body:
    SLUICE_LOG(http_log(), Info, "%s: closing a connection: its request body sent nothing for %d s", c->client.c_str(),
               k.body_timeout_s);
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

void Connections::Impl::shut(ClientConnection *c) {
  g_socket_shutdown(c->socket, TRUE, TRUE, nullptr);
  enter(c, ConnPhase::Closing);
}

void Connections::Impl::close_idle(ClientConnection *c) {
  if (c->closed)
    return;
  if (!c->between) {
    shut(c);
    return;
  }
  if (c->in_soup && c->msg) {
    c->in_soup = false;
    take_from_soup(c->msg);
  }
  drop(c);
}

gboolean Connections::Impl::on_idle_close(gpointer data) {
  auto *c = static_cast<ClientConnection *>(data);
  c->idle_close = 0;
  c->owner->close_idle(c);
  return G_SOURCE_REMOVE;
}

// -- the end

void Connections::Impl::drop(ClientConnection *c) {
  if (c->closed)
    return;
  c->closed = true;
  end_fast(c);
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

gboolean Connections::Impl::on_reap(gpointer data) {
  auto *self = static_cast<Impl *>(data);
  self->reap_source = 0;
  auto dead = std::move(self->dead);
  self->dead.clear();
  for (auto *c : dead)
    self->destroy(c);
  return G_SOURCE_REMOVE;
}

void Connections::Impl::destroy(ClientConnection *c) {
  all.erase(c);
  if (c->idle_close)
    g_source_remove(c->idle_close);
  g_source_destroy(c->timer);
  g_source_unref(c->timer);
  if (c->input)
    forget_conn(c->input);
  if (c->msg)
    g_signal_handlers_disconnect_by_data(c->msg, c);
  g_clear_object(&c->msg);
  g_clear_object(&c->stream);
  g_clear_object(&c->input);
  g_clear_object(&c->socket_conn);
  g_clear_object(&c->socket);
  g_clear_object(&c->remote);
  g_clear_object(&c->local);
  delete c;
}

// -- libsoup's view of the requests

ClientConnection *Connections::Impl::find(SoupServerMessage *msg) {
  auto it = by_remote.find(soup_server_message_get_remote_address(msg));
  if (it == by_remote.end() || it->second->closed)
    return nullptr;
  return it->second;
}

bool Connections::Impl::active(const ClientConnection *c) {
  return c->phase != ConnPhase::Closing && c->phase != ConnPhase::Lingering && !c->closed;
}

void Connections::Impl::on_request_started(SoupServer *, SoupServerMessage *msg, gpointer data) {
  auto *self = static_cast<Impl *>(data);
  ClientConnection *c = self->find(msg);
  if (!c || !active(c))
    return;
  if (c->msg != msg) {
    if (c->msg)
      g_signal_handlers_disconnect_by_data(c->msg, c);
    g_clear_object(&c->msg);
    c->msg = SOUP_SERVER_MESSAGE(g_object_ref(msg));
    g_signal_connect(msg, "got-headers", G_CALLBACK(on_got_headers), c);
  }
  c->between = false;
  self->enter(c, ConnPhase::Headers);
}

void Connections::Impl::on_got_headers(SoupServerMessage *msg, gpointer data) {
  auto *c = static_cast<ClientConnection *>(data);
  if (!active(c) || c->phase != ConnPhase::Headers)
    return;
  // A request without a body (most: GET) is handled at once: nothing more is read of it. One with a body is watched
  // while it comes (the signals are connected only then: every request of a player would pay for them).
  SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
  const SoupEncoding encoding = soup_message_headers_get_encoding(h);
  const bool body = encoding == SOUP_ENCODING_CHUNKED ||
                    (encoding == SOUP_ENCODING_CONTENT_LENGTH && soup_message_headers_get_content_length(h) > 0);
  if (!body) {
    c->owner->enter(c, ConnPhase::Busy);
    return;
  }
  g_signal_connect(msg, "got-chunk", G_CALLBACK(on_got_chunk), c);
  g_signal_connect(msg, "got-body", G_CALLBACK(on_handling), c);
  g_signal_connect(msg, "wrote-headers", G_CALLBACK(on_handling), c);
  c->owner->enter(c, ConnPhase::Body);
}

void Connections::Impl::on_got_chunk(SoupServerMessage *, GBytes *, gpointer data) {
  auto *c = static_cast<ClientConnection *>(data);
  if (active(c) && c->phase == ConnPhase::Body)
    c->since = g_get_monotonic_time(); // the timer catches up when it fires
}

void Connections::Impl::on_handling(SoupServerMessage *, gpointer data) {
  auto *c = static_cast<ClientConnection *>(data);
  if (active(c) && (c->phase == ConnPhase::Headers || c->phase == ConnPhase::Body))
    c->owner->enter(c, ConnPhase::Busy);
}

void Connections::Impl::on_request_done(SoupServer *, SoupServerMessage *msg, gpointer data) {
  auto *self = static_cast<Impl *>(data);
  ClientConnection *c = self->find(msg);
  if (!c || c->msg != msg)
    return;
  c->between = true;
  if (active(c))
    self->enter(c, ConnPhase::Idle);
}

// ---------------------------------------------------------------------------------------------

namespace detail {

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

void take_from_soup(SoupServerMessage *msg) {
  // The stream comes with a reference, which is not kept: the connection is closed by its ClientConnection.
  g_autoptr(GIOStream) stream = soup_server_message_steal_connection(msg);
}

} // namespace detail

} // namespace sluice::http
