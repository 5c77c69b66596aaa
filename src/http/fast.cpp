// SPDX-License-Identifier: LGPL-2.1-or-later
// The fast path's answers: an open video's finished package files in the data folder, and the files of the live
// streams this process runs, answered as the chain and handlers::media (handlers::live_media) answer them (the same
// status, headers and body; the request counted in the metrics and the access log) but written by the connections
// themselves, without libsoup's work for every message: its objects, signals and sources. That work costs several times
// the file's own (docs/architecture.md, "The fast path"). Anything else (another route, an error, a running job's or a
// stored package's file, a token, CORS, a request over the media budget) is left to libsoup and answered there.
#include "http/fast.h"

#include "core/metrics.h"
#include "http/limits.h"
#include "http/middleware.h"
#include "http/routes.h"

#include <memory>
#include <string>
#include <utility>

namespace sluice::http {

namespace {

struct HeadersUnref {
  void operator()(SoupMessageHeaders *h) const { soup_message_headers_unref(h); }
};

// The Date header, made once a second.
const std::string &http_date_now() {
  static gint64 at = -1;
  static std::string text;
  const gint64 now = g_get_real_time() / G_USEC_PER_SEC;
  if (now != at) {
    at = now;
    GDateTime *d = g_date_time_new_from_unix_utc(now);
    char *s = soup_date_time_to_string(d, SOUP_DATE_HTTP);
    text = s;
    g_free(s);
    g_date_time_unref(d);
  }
  return text;
}

// ?v= of the query (the last one, as libsoup's form decoding keeps), or false when the query carries a token (signed
// playback is media()'s). The query is plain: nothing in it is encoded.
bool read_query(std::string_view query, std::string &pinned) {
  for (std::size_t at = 0; at < query.size();) {
    std::size_t end = query.find('&', at);
    if (end == std::string_view::npos)
      end = query.size();
    std::string_view pair = query.substr(at, end - at), key = pair, value;
    if (auto eq = pair.find('='); eq != std::string_view::npos) {
      key = pair.substr(0, eq);
      value = pair.substr(eq + 1);
    }
    if (key == "token")
      return false;
    if (key == "v")
      pinned = value;
    at = end + 1;
  }
  return true;
}

bool answer(Context &cx, const std::string &server_header, const FastRequest &rq, FastResponse &out) {
  const gint64 start = g_get_monotonic_time();
  if ((!rq.path.starts_with("/videos/") && !rq.path.starts_with("/streams/")) || !host_allowed(cx.config, rq.headers))
    return false;
  const std::string path(rq.path);
  Match m = match_route(rq.method, path);
  const bool live = m.route && m.route->handler == handlers::live_media;
  if (!m.route || (m.route->handler != handlers::media && !live) || m.params.size() != 2)
    return false;
  std::string pinned;
  if (!read_query(rq.query, pinned))
    return false;
  const bool head = rq.method[0] == 'H';
  std::unique_ptr<SoupMessageHeaders, HeadersUnref> response(soup_message_headers_new(SOUP_MESSAGE_HEADERS_RESPONSE));
  FileAnswer a;
  if (live ? !handlers::live_media_fast(cx, m.params[0], m.params[1], head, rq.headers, response.get(), a)
           : !handlers::media_fast(cx, m.params[0], m.params[1], pinned, head, rq.headers, response.get(), a))
    return false;
  if (!take_media_request(cx, rq.remote, rq.headers, response.get()))
    return false;

  char id[65];
  make_request_id(soup_message_headers_get_one(rq.headers, "X-Request-Id"), id);
  std::string &h = out.head;
  h.reserve(512);
  h += "HTTP/1.1 ";
  h += std::to_string(a.status);
  h += ' ';
  h += soup_status_get_phrase(a.status);
  h += "\r\nServer: ";
  h += server_header;
  h += "\r\nDate: ";
  h += http_date_now();
  h += "\r\n";
  SoupMessageHeadersIter iter;
  soup_message_headers_iter_init(&iter, response.get());
  const char *name, *value;
  while (soup_message_headers_iter_next(&iter, &name, &value)) {
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  h += "X-Request-Id: ";
  h += id;
  h += "\r\n\r\n";
  if (!head && (a.body || a.fd >= 0) && a.status != SOUP_STATUS_NOT_MODIFIED) {
    out.body = a.body ? g_bytes_ref(a.body) : nullptr;
    out.fd = std::exchange(a.fd, -1);
    out.offset = static_cast<std::size_t>(a.offset);
    out.length = static_cast<std::size_t>(a.length);
  }

  // Counted once it is written, as the chain's metrics and access log steps count a message once it is finished.
  out.done = [metrics = &cx.service.metrics(), alive = cx.alive, route = m.route->pattern, method = rq.method,
              status = a.status, start,
              request = std::string(id) + ' ' + rq.method + ' ' + path](std::uint64_t sent, bool complete) {
    // A response the client stopped reading is finished by libsoup as a 500, after headers sent with its status.
    const gint64 took = g_get_monotonic_time() - start;
    SLUICE_LOG(http_log(), Info, "%s -> %u (%.1f ms)%s", request.c_str(), status, static_cast<double>(took) / 1000.0,
               complete ? "" : " (cut)");
    if (*alive) {
      metrics->http_request(method, route, status, static_cast<double>(took) / 1e6, sent);
      metrics->fast_path_request();
    }
  };
  return true;
}

} // namespace

void start_fast_path(Context &cx) {
  if (!cx.connections)
    return;
  gchar *header = nullptr;
  g_object_get(cx.server, "server-header", &header, nullptr);
  std::string server_header = header ? header : "";
  g_free(header);
  cx.connections->set_fast([&cx, server_header](const FastRequest &rq, FastResponse &out) {
    try {
      return answer(cx, server_header, rq, out);
    } catch (const std::exception &e) {
      SLUICE_LOG(http_log(), Warning, "the fast path left a request to libsoup: %s", e.what());
      return false;
    }
  });
}

} // namespace sluice::http
