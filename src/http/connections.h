// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP server's connections: accepted by sluice and handed to libsoup, with timeouts and a per-client cap.
#pragma once

#include "core/config.h"

#include <libsoup/soup.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::http {

// Accepts the connections of a listening socket itself and hands each one to libsoup
// (soup_server_accept_iostream), keeping its stream, so that:
//  - a keep-alive connection the client closes between two requests is closed here too. libsoup 3.2
//    ends the message that waits for the next request without telling its server, which then keeps the
//    connection and its descriptor forever (fixed in libsoup 3.3.0: "server: do not leak idle
//    connections closed by the client");
//  - a request's headers must arrive within [server] header-timeout seconds, a request body may not
//    pause for longer than body-timeout, and a keep-alive connection waits idle-timeout seconds at most
//    for its next request. A response being written, however slowly (an event stream), is never cut;
//  - one client address holds at most max-connections-per-client connections: the next ones get 503.
// A request the connections may answer without libsoup (the fast path, connections_fast.cpp): GET or HEAD of
// HTTP/1.1 with no body, the whole head in one read, a plain origin-form path.
struct FastRequest {
  const char *method;          // "GET" or "HEAD"
  std::string_view path;       // only [A-Za-z0-9._~/-], no "//", "." or ".." segment
  std::string_view query;      // after '?', only [A-Za-z0-9._~=&-]; "" when none
  SoupMessageHeaders *headers; // the request's
  GSocketAddress *remote;      // the client's address
};

// What the fast path reads of the bytes waiting on a connection.
struct FastHead {
  std::size_t length = 0;                // of the head, its empty line included
  const char *method = nullptr;          // "GET" or "HEAD"
  std::string target;                    // the request target, as sent
  std::string_view path, query;          // of target
  SoupMessageHeaders *headers = nullptr; // owned
  FastHead() = default;
  FastHead(const FastHead &) = delete;
  FastHead &operator=(const FastHead &) = delete;
  ~FastHead();
};
// Whether the n bytes of data (what a connection has received, peeked) start with a head the fast path may offer:
// whole, every line ended by CRLF (no bare CR or LF, no NUL: it ends where any reader would end it), read by
// libsoup's parser as a GET or HEAD of HTTP/1.1 with one Host, no body, Expect, Upgrade or Origin, Connection absent
// or keep-alive, a plain path and query (FastRequest). Fills out when it does.
bool read_fast_head(const char *data, std::size_t n, FastHead &out);

// The answer to a FastRequest, written by the connections.
struct FastResponse {
  std::string head;       // the status line and the headers, with the empty line
  GBytes *body = nullptr; // owned; its [offset, offset + length) is the body
  int fd = -1;            // or owned: a file whose [offset, offset + length) is the body, sent with sendfile()
  std::size_t offset = 0, length = 0;
  // Once the response is written (complete) or the connection is gone before (not complete): the body bytes sent.
  std::function<void(std::uint64_t sent, bool complete)> done;
  FastResponse() = default;
  FastResponse(const FastResponse &) = delete;
  FastResponse &operator=(const FastResponse &) = delete;
  ~FastResponse();
};

// Answers the request (true) or leaves it to libsoup (false: the connection is then libsoup's for good).
using FastHandler = std::function<bool(const FastRequest &, FastResponse &)>;

class Connections {
public:
  Connections(SoupServer *server, const ServerConfig &config);
  ~Connections();
  Connections(const Connections &) = delete;
  Connections &operator=(const Connections &) = delete;

  // Accepts the connections of `listening` (bound and listening) from now on; throws sluice::Error (Io).
  void listen(GSocket *listening);
  // Accepts no more connections and closes the listening socket; open connections stay with the server.
  void stop();
  // From now on, each new connection's requests are offered to `handler` first, one at a time, until one of them is
  // not answered (or cannot be offered: a head that came in pieces, a body, another method or version); then the
  // connection goes to libsoup with that request unread. An empty handler turns the fast path off.
  void set_fast(FastHandler handler);
  // Connections open now (handed to the server, or being closed).
  std::size_t size() const;

  // Sends msg's response as it stands (status, headers, body) with "Connection: close" and closes the
  // connection without reading the rest of the request: for a request whose body cannot be framed
  // safely. Call it from an early handler.
  void answer_and_close(SoupServerMessage *msg);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// Why the body of a request could be framed in two ways (request smuggling), or "" when it cannot:
// Content-Length headers that disagree or are not a number, Content-Length with Transfer-Encoding, or a
// Transfer-Encoding other than a single "chunked".
std::string ambiguous_framing(SoupMessageHeaders *request_headers);

} // namespace sluice::http
