// SPDX-License-Identifier: LGPL-2.1-or-later
// The fast path: a connection's plain GET and HEAD requests read and answered without libsoup, until one is not.
#include "http/connections_internal.h"

#include "http/log.h"

#include <glib-unix.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::http {

using namespace detail;

namespace {

// A head longer than this goes to libsoup (whose own limit answers it).
constexpr std::size_t kFastHeadMax = 8192;

struct Watch {
  GSource source;
  gpointer tag;
  ClientConnection *c;
};

gboolean watch_dispatch(GSource *source, GSourceFunc, gpointer) {
  auto *w = reinterpret_cast<Watch *>(source);
  return Connections::Impl::on_fast_ready(w->c, g_source_query_unix_fd(source, w->tag));
}

GSourceFuncs watch_funcs = {nullptr, nullptr, watch_dispatch, nullptr, nullptr, nullptr};

bool plain_path(std::string_view p) {
  if (p.empty() || p.front() != '/')
    return false;
  for (char ch : p)
    if (!g_ascii_isalnum(ch) && ch != '.' && ch != '_' && ch != '~' && ch != '/' && ch != '-')
      return false;
  // No empty, "." or ".." segment: the path is the same whatever normalises it.
  for (std::size_t at = 1; at <= p.size();) {
    std::size_t end = p.find('/', at);
    if (end == std::string_view::npos)
      end = p.size();
    std::string_view seg = p.substr(at, end - at);
    if ((seg.empty() && end != p.size()) || seg == "." || seg == "..")
      return false;
    at = end + 1;
  }
  return true;
}

bool plain_query(std::string_view q) {
  for (char ch : q)
    if (!g_ascii_isalnum(ch) && ch != '.' && ch != '_' && ch != '~' && ch != '=' && ch != '&' && ch != '-')
      return false;
  return true;
}

// A head every reader ends at the same place: lines ended by CRLF only (no bare CR or LF, which some readers take for
// a line's end and others not), no NUL.
bool plain_head(const char *head, std::size_t len) {
  for (std::size_t i = 0; i < len; i++) {
    const char ch = head[i];
    if (ch == '\0' || (ch == '\r' && (i + 1 == len || head[i + 1] != '\n')) ||
        (ch == '\n' && (i == 0 || head[i - 1] != '\r')))
      return false;
  }
  return true;
}

// A request the fast path may offer: one Host (libsoup refuses an HTTP/1.1 request without), no body, nothing that
// changes the connection, no cross-site question.
bool plain_headers(SoupMessageHeaders *h) {
  const char *host = soup_message_headers_get_list(h, "Host");
  if (!host || strchr(host, ',') || strchr(host, '/'))
    return false;
  for (const char *name : {"Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Origin"})
    if (soup_message_headers_get_list(h, name))
      return false;
  const char *connection = soup_message_headers_get_list(h, "Connection");
  return !connection || g_ascii_strcasecmp(connection, "keep-alive") == 0;
}

} // namespace

FastHead::~FastHead() {
  if (headers)
    soup_message_headers_unref(headers);
}

bool read_fast_head(const char *data, std::size_t n, FastHead &out) {
  const char *end = static_cast<const char *>(memmem(data, n, "\r\n\r\n", 4));
  if (!end)
    return false;
  const auto length = static_cast<std::size_t>(end - data) + 4;
  if (!plain_head(data, length))
    return false;
  out.headers = soup_message_headers_new(SOUP_MESSAGE_HEADERS_REQUEST);
  char *method = nullptr, *target = nullptr;
  SoupHTTPVersion version = SOUP_HTTP_1_0;
  const guint parsed =
      soup_headers_parse_request(data, static_cast<unsigned>(length), out.headers, &method, &target, &version);
  const bool get = g_strcmp0(method, "GET") == 0, head = g_strcmp0(method, "HEAD") == 0;
  bool ok =
      parsed == SOUP_STATUS_OK && version == SOUP_HTTP_1_1 && target && (get || head) && plain_headers(out.headers);
  if (ok) {
    out.target = target;
    std::string_view t(out.target);
    out.path = t;
    out.query = {};
    if (auto q = t.find('?'); q != std::string_view::npos) {
      out.path = t.substr(0, q);
      out.query = t.substr(q + 1);
    }
    ok = plain_path(out.path) && plain_query(out.query);
  }
  g_free(method);
  g_free(target);
  if (!ok)
    return false;
  out.method = get ? "GET" : "HEAD";
  out.length = length;
  return true;
}

void Connections::Impl::start_fast(ClientConnection *c) {
  c->fast = true;
  auto *w = reinterpret_cast<Watch *>(g_source_new(&watch_funcs, sizeof(Watch)));
  w->c = c;
  w->tag = g_source_add_unix_fd(&w->source, g_socket_get_fd(c->socket), G_IO_IN);
  c->watch = &w->source;
  g_source_attach(c->watch, g_main_context_get_thread_default());
  enter(c, ConnPhase::Headers);
}

void Connections::Impl::watch_for(ClientConnection *c, GIOCondition condition) {
  auto *w = reinterpret_cast<Watch *>(c->watch);
  g_source_modify_unix_fd(c->watch, w->tag, condition);
}

gboolean Connections::Impl::on_fast_ready(ClientConnection *c, GIOCondition condition) {
  if (c->closed || !c->fast)
    return G_SOURCE_CONTINUE;
  Impl *self = c->owner;
  if (c->response) {
    if (condition & (G_IO_OUT | G_IO_ERR | G_IO_HUP))
      if (self->write_fast(c) && !c->closed) {
        self->watch_for(c, G_IO_IN);
        self->enter(c, ConnPhase::Idle);
      }
    return G_SOURCE_CONTINUE;
  }
  self->read_fast(c);
  return G_SOURCE_CONTINUE;
}

void Connections::Impl::read_fast(ClientConnection *c) {
  const int fd = g_socket_get_fd(c->socket);
  char buf[kFastHeadMax];
  // Peeked, not read: a request the fast path does not take stays in the socket for libsoup.
  ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    SLUICE_LOG(http_log(), Debug, "%s: the client closed a connection%s", c->client.c_str(),
               c->requests ? " after its requests" : "");
    drop(c);
    return;
  }
  FastHead head;
  if (!read_fast_head(buf, static_cast<std::size_t>(n), head)) {
    // Part of a head, a long one, or one the fast path does not offer: libsoup reads it as it comes (within [server]
    // header-timeout), nothing of it taken from the socket.
    to_soup(c);
    return;
  }
  auto response = std::make_unique<FastResponse>();
  if (!fast(FastRequest{head.method, head.path, head.query, head.headers, c->remote}, *response)) {
    to_soup(c);
    return;
  }
  const std::size_t head_len = head.length;
  // The head is read now (it was peeked whole, so it is there).
  ssize_t got = recv(fd, buf, head_len, MSG_DONTWAIT);
  if (got != static_cast<ssize_t>(head_len)) {
    SLUICE_LOG(http_log(), Warning, "%s: a request's head could not be read again: closed", c->client.c_str());
    drop(c);
    return;
  }
  c->requests++;
  c->response = std::move(response);
  c->written = 0;
  if (write_fast(c)) {
    if (!c->closed)
      enter(c, ConnPhase::Idle);
    return;
  }
  if (!c->closed) {
    // A slow reader: its response is written as it reads, without a timeout (as libsoup does).
    enter(c, ConnPhase::Busy);
    watch_for(c, G_IO_OUT);
  }
}

FastResponse::~FastResponse() {
  if (body)
    g_bytes_unref(body);
  if (fd >= 0)
    close(fd);
}

bool Connections::Impl::write_fast(ClientConnection *c) {
  FastResponse &r = *c->response;
  const std::size_t head = r.head.size(), total = head + r.length;
  const char *body = r.body ? static_cast<const char *>(g_bytes_get_data(r.body, nullptr)) + r.offset : nullptr;
  const int fd = g_socket_get_fd(c->socket);
  while (c->written < total) {
    const std::size_t from = c->written > head ? c->written - head : 0;
    ssize_t n;
    if (c->written >= head && r.fd >= 0) {
      // The file's pages go to the socket without a copy through us.
      off_t at = static_cast<off_t>(r.offset + from);
      n = sendfile(fd, r.fd, &at, r.length - from);
      if (n == 0) {
        // The file is shorter than when it was answered (truncated meanwhile): the response cannot be completed.
        SLUICE_LOG(http_log(), Warning, "%s: a file ended %zu bytes early while it was sent: closed", c->client.c_str(),
                   r.length - from);
        drop(c);
        return false;
      }
    } else {
      iovec iov[2];
      int count = 0;
      if (c->written < head)
        iov[count++] = {const_cast<char *>(r.head.data()) + c->written, head - c->written};
      if (body && r.length > 0)
        iov[count++] = {const_cast<char *>(body) + from, r.length - from};
      msghdr mh{};
      mh.msg_iov = iov;
      mh.msg_iovlen = static_cast<std::size_t>(count);
      // The head of a file's response waits for its first bytes (MSG_MORE): one segment, as a copy would send.
      n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT | (r.fd >= 0 && r.length > 0 ? MSG_MORE : 0));
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return false;
    if (n < 0) {
      SLUICE_LOG(http_log(), Debug, "%s: a response was cut: %s", c->client.c_str(), g_strerror(errno));
      drop(c); // done(sent, false) runs there
      return false;
    }
    c->written += static_cast<std::size_t>(n);
  }
  auto done = std::move(c->response);
  if (done->done)
    done->done(done->length, true);
  return true;
}

void Connections::Impl::end_fast(ClientConnection *c) {
  c->fast = false;
  if (c->watch) {
    g_source_destroy(c->watch);
    g_source_unref(c->watch);
    c->watch = nullptr;
  }
  if (auto r = std::move(c->response); r && r->done) {
    const std::size_t head = r->head.size();
    r->done(c->written > head ? c->written - head : 0, false);
  }
}

} // namespace sluice::http
