// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: the fast path's reading of the bytes waiting on a connection (read_fast_head). A head it offers ends at
// its first empty line and nowhere a reader could end it sooner (CRLF line ends only, no NUL), is a GET or HEAD of
// HTTP/1.1 with one Host and nothing that frames a body, and has a plain path and query; bytes after the head never
// change the decision.
#include "http/connections.h"

#include "fuzz.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace {

using namespace sluice::http;

bool plain(std::string_view s, const char *also) {
  for (char c : s)
    if (!g_ascii_isalnum(c) && !strchr(also, c))
      return false;
  return true;
}

void check(const std::string &bytes) {
  FastHead h;
  if (!read_fast_head(bytes.data(), bytes.size(), h))
    return;
  const std::string head = bytes.substr(0, h.length);
  FUZZ_CHECK(h.length >= 4 && h.length <= bytes.size(), "a head of " + std::to_string(h.length) + " bytes");
  FUZZ_CHECK(head.find("\r\n\r\n") == h.length - 4, "not at the first empty line: " + head);
  for (std::size_t i = 0; i < head.size(); i++) {
    FUZZ_CHECK(head[i] != '\0', "a NUL in an offered head");
    if (head[i] == '\r')
      FUZZ_CHECK(i + 1 < head.size() && head[i + 1] == '\n', "a bare CR in: " + head);
    if (head[i] == '\n')
      FUZZ_CHECK(i > 0 && head[i - 1] == '\r', "a bare LF in: " + head);
  }
  FUZZ_CHECK(strcmp(h.method, "GET") == 0 || strcmp(h.method, "HEAD") == 0, h.method);
  // Empty lines before the request line are skipped (RFC 9112 2.2), by libsoup's reader and parser alike.
  const std::size_t line = head.find_first_not_of("\r\n");
  const std::size_t after = line == std::string::npos ? 0 : line + strlen(h.method);
  FUZZ_CHECK(line != std::string::npos && head.compare(line, strlen(h.method), h.method) == 0 && after < head.size() &&
                 (head[after] == ' ' || head[after] == '\t'),
             "the method is the head's (libsoup's parser, the server's own, also takes a tab after it)");
  FUZZ_CHECK(!h.path.empty() && h.path.front() == '/' && plain(h.path, "._~/-"), std::string(h.path));
  FUZZ_CHECK(plain(h.query, "._~=&-"), std::string(h.query));
  FUZZ_CHECK(h.path.find("//") == std::string_view::npos && h.path.find("/./") == std::string_view::npos &&
                 h.path.find("/../") == std::string_view::npos && !h.path.ends_with("/.") && !h.path.ends_with("/.."),
             "a path a reader would normalise: " + std::string(h.path));
  const char *host = soup_message_headers_get_list(h.headers, "Host");
  FUZZ_CHECK(host && !strchr(host, ','), "one Host");
  for (const char *name : {"Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Origin"})
    FUZZ_CHECK(!soup_message_headers_get_list(h.headers, name), std::string("an offered head with ") + name);
  // The head alone, or followed by anything: the same decision, the same length.
  for (const std::string &rest : {std::string(), std::string("\r\n"), std::string("\0\n\r", 3)}) {
    FastHead again;
    const std::string more = head + rest;
    FUZZ_CHECK(read_fast_head(more.data(), more.size(), again) && again.length == h.length && again.target == h.target,
               "the bytes after the head changed the decision");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  check(sluice::fuzz::text_of(data, size));
  return 0;
}
