// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP server's connections: accepted by sluice and handed to libsoup, with timeouts and a per-client cap.
#pragma once

#include "core/config.h"

#include <libsoup/soup.h>

#include <cstddef>
#include <memory>
#include <string>

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
