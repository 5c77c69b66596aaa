// SPDX-License-Identifier: LGPL-2.1-or-later
// Request ids, the access log, CORS, Host and Origin checks and body set-up, before any handler runs.
#include "http/middleware.h"

#include "http/respond.h"
#include "http/upload.h"

#include <algorithm>

namespace sluice::http {

namespace {

constexpr std::int64_t kMaxJsonBody = 1 << 20;
constexpr const char *kBodyKey = "sluice-small-body";
constexpr const char *kIdKey = "sluice-request-id";
constexpr const char *kStartKey = "sluice-request-start";

// The body of a request other than an upload, kept by us (bounded) instead of by libsoup.
struct SmallBody {
  std::string text;
  bool too_large = false;
};

// -- request id: the client's X-Request-Id when it is a sane token, else a fresh one; echoed back.
void request_id_step(SoupServerMessage *msg) {
  std::string id = header(msg, "X-Request-Id");
  bool sane = !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
  });
  if (!sane) {
    char buf[17];
    g_snprintf(buf, sizeof buf, "%08x%08x", g_random_int(), g_random_int());
    id = buf;
  }
  g_object_set_data_full(G_OBJECT(msg), kIdKey, g_strdup(id.c_str()), g_free);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "X-Request-Id", id.c_str());
}

// -- access log: one line per request once it is finished (sluice-http, level 4).
void access_log_step(SoupServerMessage *msg) {
  auto *start = g_new(gint64, 1);
  *start = g_get_monotonic_time();
  g_object_set_data_full(G_OBJECT(msg), kStartKey, start, g_free);
  g_signal_connect(msg, "finished", G_CALLBACK(+[](SoupServerMessage *m, gpointer) {
                     auto *t0 = static_cast<gint64 *>(g_object_get_data(G_OBJECT(m), kStartKey));
                     double ms = t0 ? static_cast<double>(g_get_monotonic_time() - *t0) / 1000.0 : 0.0;
                     SLUICE_LOG(http_log(), Info, "%s %s %s -> %u (%.1f ms)", request_id(m).c_str(),
                                soup_server_message_get_method(m), g_uri_get_path(soup_server_message_get_uri(m)),
                                soup_server_message_get_status(m), ms);
                   }),
                   nullptr);
}

struct Authority {
  std::string host; // lower case, without brackets or a trailing dot
  std::string port; // "" when not given
  bool operator==(const Authority &) const = default;
};

// "Example.org:8080" -> {"example.org", "8080"}, "[::1]" -> {"::1", ""}.
Authority parse_authority(const std::string &text) {
  Authority a;
  std::string h = text;
  if (!h.empty() && h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string::npos)
      return {};
    if (close + 1 < h.size() && h[close + 1] == ':')
      a.port = h.substr(close + 2);
    h = h.substr(1, close - 1);
  } else if (auto colon = h.rfind(':'); colon != std::string::npos) {
    a.port = h.substr(colon + 1);
    h = h.substr(0, colon);
  }
  for (auto &c : h)
    c = g_ascii_tolower(c);
  while (!h.empty() && h.back() == '.')
    h.pop_back();
  a.host = h;
  return a;
}

bool listed(const std::vector<std::string> &list, const std::string &v) {
  return std::find(list.begin(), list.end(), "*") != list.end() || std::find(list.begin(), list.end(), v) != list.end();
}

// -- cross-site checks: what a page on another site could make a browser send, refused before the body.
bool refuse_foreign(const ServerConfig &config, SoupServerMessage *msg) {
  // DNS rebinding: a page whose own DNS name now points at this machine talks to us with its name in
  // Host. IP literals, localhost and the listen address cannot be such names; others must be listed.
  const Authority target = parse_authority(header(msg, "Host"));
  const std::string &host = target.host;
  bool host_ok = host.empty() || g_hostname_is_ip_address(host.c_str()) || host == "localhost" ||
                 g_str_has_suffix(host.c_str(), ".localhost") || host == parse_authority(config.host).host ||
                 listed(config.allowed_hosts, host);
  if (!host_ok) {
    set_error(msg, SOUP_STATUS_FORBIDDEN, "host_not_allowed",
              "this server does not answer to the host name '" + host + "' (see [server] allowed-hosts)");
    return true;
  }
  // Cross-site writes: a form or fetch() on another site needs no preflight for a multipart or
  // text/plain POST, but the browser says where it comes from. Same origin: the Origin's host and port
  // are the ones the request was sent to (whatever the scheme, for a TLS proxy in front).
  std::string origin = header(msg, "Origin");
  if (origin.empty() || !is_write_method(msg))
    return false;
  bool same = false;
  if (GUri *u = g_uri_parse(origin.c_str(), G_URI_FLAGS_NONE, nullptr)) {
    // GUri gives the host without brackets: "[" + host + "]" reads back the same for IPv6 and names.
    Authority from = parse_authority(std::string("[") + (g_uri_get_host(u) ? g_uri_get_host(u) : "") + "]");
    if (g_uri_get_port(u) != -1)
      from.port = std::to_string(g_uri_get_port(u));
    same = !from.host.empty() && from == target;
    g_uri_unref(u);
  }
  if (same || listed(config.cors_origins, origin))
    return false;
  set_error(msg, SOUP_STATUS_FORBIDDEN, "origin_not_allowed",
            "requests that change something are not accepted from the origin '" + origin +
                "' (see [server] cors-origins)");
  return true;
}

// -- body of an upload: streamed into a temporary file as it arrives.
bool upload_body(Context &cx, SoupServerMessage *msg) {
  if (!cx.service.accepting()) {
    set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
    return true;
  }
  try {
    // A retry of an upload whose answer was lost gets that answer, without sending the file again.
    if (cx.idempotency.begin(msg, "POST " + std::string(kApi) + "/videos", ""))
      return true;
    // Short of space (what /health reports as 503): refused before a byte of it is stored.
    if (cx.service.space_low()) {
      set_error(msg, SOUP_STATUS_INSUFFICIENT_STORAGE, "insufficient_storage",
                "the server is short of disk space (less than [health] min-free-space is free); try again later");
      return true;
    }
    auto up = std::make_shared<Upload>(msg, cx.service.scheduler().layout().uploads_dir(), cx.config.max_upload_size);
    Upload::attach(msg, std::move(up));
  } catch (const UploadError &e) {
    set_error(msg, e.status, e.code, e.message, e.field);
    return true;
  } catch (const Error &e) {
    set_failure(msg, app::failure_of(e));
    return true;
  }
  return false;
}

// -- any other body: small JSON at most, refused at once when larger or not said to be JSON, and
// collected by us so that a chunked body cannot grow past the limit in memory either.
bool json_body_step(SoupServerMessage *msg) {
  SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
  // Bodies here are JSON, and said to be: a text/plain body is what a page on another site can send
  // without a CORS preflight.
  const bool has_body = soup_message_headers_get_encoding(h) == SOUP_ENCODING_CHUNKED ||
                        (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH &&
                         soup_message_headers_get_content_length(h) > 0);
  if (has_body && is_write_method(msg)) {
    const char *type = soup_message_headers_get_content_type(h, nullptr);
    if (g_ascii_strcasecmp(type ? type : "", "application/json") != 0) {
      set_error(msg, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                std::string("the request body must be JSON, sent with Content-Type: application/json (got '") +
                    (type ? type : "none") + "')");
      return true;
    }
  }
  if (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH &&
      soup_message_headers_get_content_length(h) > kMaxJsonBody) {
    set_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large", "request bodies here are limited to 1 MiB");
    return true;
  }
  auto *body = new SmallBody();
  g_object_set_data_full(G_OBJECT(msg), kBodyKey, body, [](gpointer b) { delete static_cast<SmallBody *>(b); });
  soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
  g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *m, GBytes *chunk, gpointer) {
                     auto *b = static_cast<SmallBody *>(g_object_get_data(G_OBJECT(m), kBodyKey));
                     gsize len = 0;
                     auto bytes = static_cast<const char *>(g_bytes_get_data(chunk, &len));
                     if (b->text.size() + len > static_cast<std::size_t>(kMaxJsonBody))
                       b->too_large = true;
                     else
                       b->text.append(bytes, len);
                   }),
                   nullptr);
  return false;
}

} // namespace

std::string request_id(SoupServerMessage *msg) {
  auto *id = static_cast<const char *>(g_object_get_data(G_OBJECT(msg), kIdKey));
  return id ? id : "-";
}

const std::string *json_body(SoupServerMessage *msg) {
  auto *b = static_cast<SmallBody *>(g_object_get_data(G_OBJECT(msg), kBodyKey));
  if (b && b->too_large)
    throw UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large", "request bodies here are limited to 1 MiB",
                      ""};
  return b ? &b->text : nullptr;
}

void apply_cors(const ServerConfig &config, SoupServerMessage *msg) {
  std::string origin = header(msg, "Origin");
  const auto &origins = config.cors_origins;
  if (origin.empty() || origins.empty())
    return;
  bool any = std::find(origins.begin(), origins.end(), "*") != origins.end();
  if (!any && std::find(origins.begin(), origins.end(), origin) == origins.end())
    return;
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_replace(h, "Access-Control-Allow-Origin", any ? "*" : origin.c_str());
  if (!any)
    soup_message_headers_append(h, "Vary", "Origin");
  soup_message_headers_replace(h, "Access-Control-Expose-Headers",
                               "Content-Length, Content-Range, ETag, Location, X-Request-Id");
  if (is_method(msg, "OPTIONS")) {
    soup_message_headers_replace(h, "Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS");
    soup_message_headers_replace(h, "Access-Control-Allow-Headers",
                                 "Content-Type, Range, If-None-Match, Last-Event-ID, X-Filename, Idempotency-Key, "
                                 "X-Request-Id");
    soup_message_headers_replace(h, "Access-Control-Max-Age", "600");
  }
}

namespace {

// The steps, each given the request and the route it matched (none when no route has its method and
// path); a step that answers the request returns true and ends the chain.
struct Step {
  const char *name;
  bool (*run)(Context &, SoupServerMessage *, const Match &);
};

const Step kChain[] = {
    {"request-id", [](Context &, SoupServerMessage *msg, const Match &) { return request_id_step(msg), false; }},
    {"access-log", [](Context &, SoupServerMessage *msg, const Match &) { return access_log_step(msg), false; }},
    {"cors", [](Context &cx, SoupServerMessage *msg, const Match &) { return apply_cors(cx.config, msg), false; }},
    {"cross-site", [](Context &cx, SoupServerMessage *msg, const Match &) { return refuse_foreign(cx.config, msg); }},
    // authentication, rate limits and metrics come here, in that order.
    {"body", [](Context &cx, SoupServerMessage *msg, const Match &m) {
       return m.route && m.route->body == Body::Upload ? upload_body(cx, msg) : json_body_step(msg);
     }},
};

} // namespace

bool run_middleware(Context &cx, SoupServerMessage *msg, const std::string &path) {
  const Match m = match_route(soup_server_message_get_method(msg), path);
  for (const auto &step : kChain)
    if (step.run(cx, msg, m))
      return true;
  return false;
}

} // namespace sluice::http
