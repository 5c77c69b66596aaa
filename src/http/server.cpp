// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP server: libsoup set up with sluice's connections, the middleware chain and the route table.
#include "http/server.h"

#include "core/error.h"
#include "core/paths.h"
#include "http/connections.h"
#include "http/context.h"
#include "http/fast.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/tus.h"
#include "http/upload.h"
#include "http/views.h"
#include "sluice-config.h"

namespace sluice::http {

log::Category *http_log() {
  static log::Category *c = log::category("sluice-http", "sluice HTTP server");
  return c;
}

namespace {

// Once the headers are in, on either address: the framing check, then the chain (run_middleware or
// run_metrics_middleware).
void early(Context &cx, Connections *connections, SoupServerMessage *msg, const char *path,
           bool (*chain)(Context &, SoupServerMessage *, const std::string &)) {
  // A body two readers could frame differently (request smuggling): 400, and the connection is closed
  // without reading it.
  if (std::string why = ambiguous_framing(soup_server_message_get_request_headers(msg)); !why.empty()) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", why);
    apply_cors(cx.config, msg);
    if (connections)
      connections->answer_and_close(msg);
    return;
  }
  try {
    chain(cx, msg, path ? path : "/");
  } catch (const std::exception &e) {
    // Nothing thrown crosses libsoup's callback: the request fails, the server serves on.
    SLUICE_LOG(http_log(), Error, "%s: %s", request_id(msg).c_str(), e.what());
    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
  }
}

void on_early(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer data) {
  auto &cx = *static_cast<Context *>(data);
  early(cx, cx.connections.get(), msg, path, run_middleware);
}

void on_request(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data) {
  auto &cx = *static_cast<Context *>(data);
  Request rq;
  rq.msg = msg;
  rq.method = soup_server_message_get_method(msg);
  rq.path = path ? path : "/";
  rq.query = query;
  rq.id = request_id(msg);
  try {
    if (rq.method == "OPTIONS") {
      // A CORS preflight (the chain set the headers), or a tus client asking what this server speaks.
      if (is_tus_path(rq.path))
        tus_options(cx, msg);
      set_no_content(msg);
      return;
    }
    Match m = match_route(rq.method, rq.path);
    if (!m.route) {
      if (!m.allow.empty())
        return set_method_not_allowed(msg, m.allow);
      if (g_str_has_prefix(rq.path.c_str(), "/videos/"))
        return set_not_found(msg, "no such file");
      return set_not_found(msg,
                           (g_str_has_prefix(rq.path.c_str(), kApi) ? "no API route " : "no route for ") + rq.path);
    }
    rq.params = std::move(m.params);
    m.route->handler(cx, rq);
  } catch (const UploadError &e) {
    set_error(msg, e.status, e.code, e.message, e.field);
  } catch (const Error &e) {
    SLUICE_LOG(http_log(), Error, "%s %s %s: %s", rq.id.c_str(), rq.method.c_str(), rq.path.c_str(), e.what());
    set_failure(msg, app::failure_of(e));
  } catch (const std::exception &e) {
    SLUICE_LOG(http_log(), Error, "%s %s %s: %s", rq.id.c_str(), rq.method.c_str(), rq.path.c_str(), e.what());
    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
  }
}

// A bound, listening TCP socket on host:port ("localhost", "*" and "0.0.0.0" besides IP addresses); throws
// Error (Invalid, Io) naming `what`.
GSocket *listening_socket(const std::string &host, int port, const std::string &what) {
  GError *err = nullptr;
  g_autoptr(GInetAddress) addr = g_inet_address_new_from_string(host.c_str());
  if (!addr) {
    if (host == "localhost")
      addr = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    else if (host == "*" || host == "0.0.0.0")
      addr = g_inet_address_new_any(G_SOCKET_FAMILY_IPV4);
    else
      throw Error(ErrorCode::Invalid, what + ": '" + host + "' is not an IP address");
  }
  g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(addr, static_cast<guint16>(port));
  std::string where = host + ":" + std::to_string(port);
  // Our own socket, for the listen backlog: GSocket's default of 10 makes bursts of new connections (64
  // players starting at once) overflow and wait a second for the client's retransmission.
  g_autoptr(GSocket) sock =
      g_socket_new(g_inet_address_get_family(addr), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &err);
  if (!sock)
    throw Error::from_gerror(ErrorCode::Io, "cannot listen on " + where, err);
  g_socket_set_listen_backlog(sock, 511);
  if (!g_socket_bind(sock, sa, TRUE, &err) || !g_socket_listen(sock, &err))
    throw Error::from_gerror(ErrorCode::Io, "cannot listen on " + where, err);
  return G_SOCKET(g_steal_pointer(&sock));
}

// "http://127.0.0.1:8080/" of a listening socket, with its real port.
std::string url_of(GSocket *sock) {
  GError *err = nullptr;
  g_autoptr(GSocketAddress) bound = g_socket_get_local_address(sock, &err);
  if (!bound)
    throw Error::from_gerror(ErrorCode::Io, "cannot listen", err);
  auto *inet = G_INET_SOCKET_ADDRESS(bound);
  g_autofree gchar *ip = g_inet_address_to_string(g_inet_socket_address_get_address(inet));
  g_autoptr(GUri) uri =
      g_uri_build(G_URI_FLAGS_NONE, "http", nullptr, ip, g_inet_socket_address_get_port(inet), "/", nullptr, nullptr);
  g_autofree gchar *s = g_uri_to_string(uri);
  return s;
}

} // namespace

// [metrics] listen: a libsoup server of its own that answers GET /metrics alone, without credentials (every other
// path 404), its connections accepted as the main address's are. Its requests go through the chain but
// authentication, and are counted in the metrics like the others.
struct MetricsListener {
  Context &cx;
  SoupServer *server;
  std::unique_ptr<Connections> connections;

  explicit MetricsListener(Context &c)
      : cx(c), server(soup_server_new("server-header", "sluice/" SLUICE_VERSION " ", "raw-paths", TRUE, nullptr)) {
    soup_server_add_early_handler(server, nullptr, on_early, this, nullptr);
    soup_server_add_handler(server, nullptr, on_request, this, nullptr);
  }
  ~MetricsListener() {
    if (connections)
      connections->stop();
    soup_server_disconnect(server);
    connections.reset();
    g_object_unref(server);
  }
  MetricsListener(const MetricsListener &) = delete;
  MetricsListener &operator=(const MetricsListener &) = delete;

  static void on_early(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer data) {
    auto *self = static_cast<MetricsListener *>(data);
    early(self->cx, self->connections.get(), msg, path, run_metrics_middleware);
  }

  static void on_request(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data) {
    auto &cx = static_cast<MetricsListener *>(data)->cx;
    Request rq;
    rq.msg = msg;
    rq.method = soup_server_message_get_method(msg);
    rq.path = path ? path : "/";
    rq.query = query;
    rq.id = request_id(msg);
    try {
      Match m = rq.path == "/metrics" ? match_route(rq.method, rq.path) : Match{};
      if (!m.route) {
        if (!m.allow.empty())
          return set_method_not_allowed(msg, m.allow);
        return set_not_found(msg, "no route for " + rq.path + ": this address serves GET /metrics alone");
      }
      m.route->handler(cx, rq);
    } catch (const std::exception &e) {
      SLUICE_LOG(http_log(), Error, "%s %s %s: %s", rq.id.c_str(), rq.method.c_str(), rq.path.c_str(), e.what());
      set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
    }
  }
};

Server::Server(const ServerConfig &config, app::Service &service) : cx_(std::make_unique<Context>(config, service)) {
  cx_->web_root = paths::web_dir();
  cx_->auth = std::make_unique<auth::Authenticator>(config, service.store());
  cx_->auth->set_executor(&service.scheduler().executor());
  // raw-paths: handlers get the path still percent-encoded, so that "..%2f" or "%00" reach our own checks
  // (and get a JSON 404) instead of libsoup's bare 400, and file names are decoded exactly once.
  cx_->server = soup_server_new("server-header", "sluice/" SLUICE_VERSION " ", "raw-paths", TRUE, nullptr);
  soup_server_add_early_handler(cx_->server, nullptr, on_early, cx_.get(), nullptr);
  soup_server_add_handler(cx_->server, nullptr, on_request, cx_.get(), nullptr);
  // The URL layout is ours: the scheduler's "playable" events name the master playlist by it.
  service.scheduler().set_url_speller(media_url);
}

Server::~Server() {
  cx_->service.scheduler().set_url_speller(nullptr);
  *cx_->alive = false;
  stop_accepting();
  metrics_.reset();
  if (cx_->connections)
    cx_->connections->stop();
  soup_server_disconnect(cx_->server);
  cx_->connections.reset();
  g_object_unref(cx_->server);
}

void Server::stop_accepting() {
  cx_->service.stop_accepting();
  // Ending the event streams lets clients reconnect to the next server.
  close_event_streams(*cx_);
}

void Server::listen() {
  const ServerConfig &config = cx_->config;
  g_autoptr(GSocket) sock = listening_socket(config.host, config.port, "listen address");
  std::string url = url_of(sock);
  // The metrics address is bound before anything accepts: a bad one stops the start.
  g_autoptr(GSocket) metrics_sock =
      config.metrics_port >= 0 ? listening_socket(config.metrics_host, config.metrics_port, "metrics listen address")
                               : nullptr;
  // Connections are accepted by sluice and handed to libsoup, which leaks those that clients close
  // between two requests and has no timeouts (http/connections.h).
  cx_->connections = std::make_unique<Connections>(cx_->server, config);
  if (config.media_fast_path)
    start_fast_path(*cx_);
  cx_->connections->listen(sock);
  url_ = url;
  if (metrics_sock) {
    metrics_ = std::make_unique<MetricsListener>(*cx_);
    metrics_->connections = std::make_unique<Connections>(metrics_->server, config);
    metrics_->connections->listen(metrics_sock);
    metrics_url_ = url_of(metrics_sock);
  }
}

} // namespace sluice::http
