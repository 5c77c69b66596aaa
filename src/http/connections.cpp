// SPDX-License-Identifier: LGPL-2.1-or-later
// Accepting the HTTP connections for libsoup: the listening socket, the per-client cap, handing them over.
#include "http/connections.h"

#include "core/error.h"
#include "http/connections_internal.h"
#include "http/log.h"

#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace sluice::http {

using namespace detail;

namespace {

std::string too_many_response(int max) {
  std::string body = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this address has " +
                     std::to_string(max) + " connections open, the most one client may have\"}}\n";
  return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
         "Retry-After: 1\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

} // namespace

void Connections::Impl::start_accepting() {
  accept_source = g_socket_create_source(listening, G_IO_IN, nullptr);
  g_source_set_callback(accept_source, G_SOURCE_FUNC(on_accept), this, nullptr);
  g_source_attach(accept_source, g_main_context_get_thread_default());
}

void Connections::Impl::stop_accepting() {
  if (accept_source) {
    g_source_destroy(accept_source);
    g_source_unref(accept_source);
    accept_source = nullptr;
  }
  if (accept_retry)
    g_source_remove(accept_retry);
  accept_retry = 0;
}

gboolean Connections::Impl::on_accept(GSocket *, GIOCondition, gpointer data) {
  auto *self = static_cast<Impl *>(data);
  for (int i = 0; i < kAcceptBatch; ++i) {
    g_autoptr(GError) err = nullptr;
    GSocket *s = g_socket_accept(self->listening, nullptr, &err);
    if (s) {
      self->adopt(s);
      continue;
    }
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
      return G_SOURCE_CONTINUE;
    // Out of descriptors (or another failure): the connection waits in the backlog; retry shortly
    // instead of spinning on a listening socket that stays readable.
    gint64 now = g_get_monotonic_time();
    if (now - self->accept_error_logged > 10 * kSecond) {
      SLUICE_LOG(http_log(), Warning, "cannot accept a connection: %s (%zu open); retrying every %u ms", err->message,
                 self->all.size(), kAcceptRetryMs);
      self->accept_error_logged = now;
    }
    g_source_unref(self->accept_source);
    self->accept_source = nullptr;
    self->accept_retry = g_timeout_add(kAcceptRetryMs, on_accept_retry, self);
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

gboolean Connections::Impl::on_accept_retry(gpointer data) {
  auto *self = static_cast<Impl *>(data);
  self->accept_retry = 0;
  if (self->listening)
    self->start_accepting();
  return G_SOURCE_REMOVE;
}

void Connections::Impl::adopt(GSocket *s) {
  g_socket_set_option(s, IPPROTO_TCP, TCP_NODELAY, TRUE, nullptr);
  g_autoptr(GError) err = nullptr;
  GSocketAddress *remote = g_socket_get_remote_address(s, &err);
  GSocketAddress *local = remote ? g_socket_get_local_address(s, &err) : nullptr;
  if (!local) {
    SLUICE_LOG(http_log(), Debug, "dropping a connection: %s", err ? err->message : "no address");
    g_clear_object(&remote);
    g_socket_close(s, nullptr);
    g_object_unref(s);
    return;
  }
  ClientConnection *c = make(s, remote);
  c->local = local;
  std::size_t max = static_cast<std::size_t>(std::max(config.max_connections_per_client, 0));
  if (max > 0 && open_for(c->client) >= max) {
    SLUICE_LOG(http_log(), Info, "%s: refusing a connection: %zu open already", c->client.c_str(), open_for(c->client));
    linger(c, too_many_response(static_cast<int>(max)));
    return;
  }
  c->counted = true;
  per_client[c->client].insert(c);
  if (fast) {
    start_fast(c);
    return;
  }
  to_soup(c);
}

void Connections::Impl::to_soup(ClientConnection *c) {
  end_fast(c);
  g_autoptr(GError) err = nullptr;
  c->socket_conn = g_socket_connection_factory_create_connection(c->socket);
  c->input = new_conn_input(g_io_stream_get_input_stream(G_IO_STREAM(c->socket_conn)), c);
  c->stream =
      g_simple_io_stream_new(G_INPUT_STREAM(c->input), g_io_stream_get_output_stream(G_IO_STREAM(c->socket_conn)));
  by_remote[c->remote] = c;
  enter(c, ConnPhase::Headers);
  c->in_soup = true;
  // libsoup starts the first message (request-started) before this returns.
  if (!soup_server_accept_iostream(server, c->stream, c->local, c->remote, &err)) {
    SLUICE_LOG(http_log(), Warning, "%s: the server did not take the connection: %s", c->client.c_str(),
               err ? err->message : "?");
    c->in_soup = false;
    drop(c);
  }
}

std::size_t Connections::Impl::open_for(const std::string &client) {
  auto it = per_client.find(client);
  if (it == per_client.end())
    return 0;
  if (it->second.size() >= static_cast<std::size_t>(config.max_connections_per_client)) {
    std::vector<ClientConnection *> ended;
    for (auto *c : it->second) {
      const bool waiting = c->fast ? !c->response : c->between && c->in_soup;
      if (!waiting)
        continue;
      char b;
      ssize_t n = c->end_held ? 0 : recv(g_socket_get_fd(c->socket), &b, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        ended.push_back(c);
    }
    for (auto *c : ended)
      if (c->fast)
        drop(c);
      else
        close_idle(c);
    it = per_client.find(client);
  }
  return it == per_client.end() ? 0 : it->second.size();
}

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
  g_autoptr(GSocket) anchor = g_socket_new_from_fd(fds[0], &err);
  if (!anchor) {
    close(fds[0]);
    close(fds[1]);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  }
  impl_->anchor_peer = g_socket_new_from_fd(fds[1], &err);
  if (!impl_->anchor_peer) {
    close(fds[1]);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  }
  // The server takes a reference of its own.
  if (!soup_server_listen_socket(impl_->server, anchor, static_cast<SoupServerListenOptions>(0), &err))
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

void Connections::set_fast(FastHandler handler) {
  impl_->fast = std::move(handler);
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

} // namespace sluice::http
