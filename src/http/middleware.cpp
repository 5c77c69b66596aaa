// SPDX-License-Identifier: LGPL-2.1-or-later
// Request ids, the access log, CORS, Host and Origin checks, metrics and body set-up, before any handler runs.
#include "http/middleware.h"

#include "core/metrics.h"
#include "http/limits.h"
#include "http/respond.h"
#include "http/tus.h"
#include "http/upload.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace sluice::http {

namespace {

constexpr std::int64_t kMaxJsonBody = 1 << 20;
constexpr const char *kBodyKey = "sluice-small-body";

// The chain's steps from `from` on (the auth step's among them when `credentials`); true when one answered msg or
// will go on later. step_after(name): the index of the step after the one named. Both below the chain itself.
bool run_steps(Context &cx, SoupServerMessage *msg, const Match &m, std::size_t from, bool credentials);
std::size_t step_after(const char *name);

// The body of a request other than an upload, kept by us (bounded) instead of by libsoup.
struct SmallBody {
  std::string text;
  bool too_large = false;
};

// What the chain keeps of a request until it is finished, in one record (one allocation, one "finished" handler): its
// id, when its headers came, whether it is logged, and what the metrics count of it.
struct Exchange {
  char id[65] = "";
  gint64 start = g_get_monotonic_time();
  bool logged = false;                 // the access log step ran
  metrics::Metrics *metrics = nullptr; // the metrics step ran: it is counted
  std::shared_ptr<bool> alive;         // the server's
  const char *route = "unmatched";     // the pattern of its route, never its path
  std::uint64_t sent = 0;              // bytes of its body written
  guint answered = 0;                  // the status its headers went out with (0: not yet)
  bool uploading = false;

  void upload_ended() {
    if (uploading && *alive)
      metrics->upload_ended();
    uploading = false;
  }
  ~Exchange() { upload_ended(); } // a message dropped without "finished"
};

GQuark exchange_quark() {
  static const GQuark q = g_quark_from_static_string("sluice-exchange");
  return q;
}

Exchange *exchange_of(SoupServerMessage *msg) {
  return static_cast<Exchange *>(g_object_get_qdata(G_OBJECT(msg), exchange_quark()));
}

// Once the request is finished: its access log line, and its count in the metrics.
// The status is the one the client got: a response whose body the client stopped reading (an event stream it closed,
// a download it gave up) is finished by libsoup as a 500, but its headers went out with its own status.
void exchange_finished(SoupServerMessage *msg, gpointer data) {
  auto *x = static_cast<Exchange *>(data);
  const gint64 took = g_get_monotonic_time() - x->start;
  const guint status = x->answered ? x->answered : soup_server_message_get_status(msg);
  if (x->logged)
    SLUICE_LOG(http_log(), Info, "%s %s %s -> %u (%.1f ms)", x->id, soup_server_message_get_method(msg),
               g_uri_get_path(soup_server_message_get_uri(msg)), status, static_cast<double>(took) / 1000.0);
  if (x->metrics) {
    x->upload_ended();
    if (*x->alive)
      x->metrics->http_request(soup_server_message_get_method(msg), x->route, status, static_cast<double>(took) / 1e6,
                               x->sent);
  }
}

void exchange_answered(SoupServerMessage *msg, gpointer data) {
  static_cast<Exchange *>(data)->answered = soup_server_message_get_status(msg);
}

// -- request id: the client's X-Request-Id when it is a sane token, else a fresh one; echoed back.
void request_id_step(SoupServerMessage *msg) {
  auto *x = new Exchange();
  make_request_id(soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "X-Request-Id"), x->id);
  g_object_set_qdata_full(G_OBJECT(msg), exchange_quark(), x, [](gpointer p) { delete static_cast<Exchange *>(p); });
  g_signal_connect(msg, "finished", G_CALLBACK(exchange_finished), x);
  g_signal_connect(msg, "wrote-headers", G_CALLBACK(exchange_answered), x);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "X-Request-Id", x->id);
}

} // namespace

void make_request_id(const char *asked, char (&id)[65]) {
  const std::size_t n = asked ? strlen(asked) : 0;
  bool sane = n > 0 && n < sizeof id && std::all_of(asked, asked + n, [](char c) {
                return g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
              });
  if (sane) {
    memcpy(id, asked, n + 1);
    return;
  }
  static const char hex[] = "0123456789abcdef";
  for (int half = 0; half < 2; half++) {
    guint32 r = g_random_int();
    for (int i = 7; i >= 0; i--, r >>= 4)
      id[half * 8 + i] = hex[r & 0xf];
  }
  id[16] = '\0';
}

namespace {

// -- access log: one line per request once it is finished (sluice-http, level 4).
void access_log_step(SoupServerMessage *msg) {
  if (Exchange *x = exchange_of(msg))
    x->logged = true;
}

// -- metrics: each request counted once it is finished, by the pattern of its route (never its path, so that
// the series stay few), its method and status, with its duration and the bytes of its body sent; uploads while
// their body arrives.
void metrics_step(Context &cx, SoupServerMessage *msg, const Match &m) {
  Exchange *x = exchange_of(msg);
  if (!x)
    return;
  x->metrics = &cx.service.metrics();
  x->alive = cx.alive;
  if (m.route)
    x->route = m.route->pattern;
  g_signal_connect(msg, "wrote-body-data",
                   G_CALLBACK(+[](SoupServerMessage *, guint n, gpointer p) { static_cast<Exchange *>(p)->sent += n; }),
                   x);
  if (m.route && (m.route->body == Body::Upload || (m.route->body == Body::Tus && !is_method(msg, "OPTIONS")))) {
    x->uploading = true;
    x->metrics->upload_started();
    g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *, GBytes *chunk, gpointer p) {
                       auto *e = static_cast<Exchange *>(p);
                       if (*e->alive)
                         e->metrics->upload_bytes(g_bytes_get_size(chunk));
                     }),
                     x);
  }
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
// DNS rebinding: a page whose own DNS name now points at this machine talks to us with its name in
// Host. IP literals, localhost and the listen address cannot be such names; others must be listed.
bool host_ok(const ServerConfig &config, const std::string &host) {
  return host.empty() || g_hostname_is_ip_address(host.c_str()) || host == "localhost" ||
         g_str_has_suffix(host.c_str(), ".localhost") || host == parse_authority(config.host).host ||
         listed(config.allowed_hosts, host);
}

bool refuse_foreign(const ServerConfig &config, SoupServerMessage *msg) {
  const Authority target = parse_authority(header(msg, "Host"));
  const std::string &host = target.host;
  if (!host_ok(config, host)) {
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

// -- authentication: a route that is not open needs a bearer credential (an API key or a JWT) granting its scope.
auth::Scopes scope_bits(Scope s) {
  switch (s) {
  case Scope::Read: return auth::kRead;
  case Scope::Upload: return auth::kUpload;
  case Scope::Admin: return auth::kAdmin;
  case Scope::Metrics: return auth::kMetrics;
  case Scope::Open: break;
  }
  return 0;
}

// The bearer credential of msg: the Authorization header's, or on the event stream (EventSource cannot send
// headers) the access_token query parameter's. "" when none; `malformed` when the header is not "Bearer X".
std::string bearer(SoupServerMessage *msg, const Match &m, bool &malformed) {
  malformed = false;
  std::string h = header(msg, "Authorization");
  if (h.empty()) {
    if (m.route->handler != handlers::events)
      return "";
    const char *query = g_uri_get_query(soup_server_message_get_uri(msg));
    g_autoptr(GHashTable) params = query ? g_uri_parse_params(query, -1, "&", G_URI_PARAMS_NONE, nullptr) : nullptr;
    auto *token = params ? static_cast<const char *>(g_hash_table_lookup(params, "access_token")) : nullptr;
    return token ? token : "";
  }
  if (h.size() <= 7 || g_ascii_strncasecmp(h.c_str(), "Bearer ", 7) != 0) {
    malformed = true;
    return "";
  }
  std::string token = h.substr(7);
  while (!token.empty() && token.front() == ' ')
    token.erase(0, 1);
  while (!token.empty() && token.back() == ' ')
    token.pop_back();
  malformed = token.empty() || token.find_first_of(" \t,") != std::string::npos;
  return malformed ? "" : token;
}

// The identity of the request's credential: true when it answered msg (401, 403), false when the chain goes on.
bool refuse(SoupServerMessage *msg, const Match &m, const auth::Identity &id) {
  SoupMessageHeaders *out = soup_server_message_get_response_headers(msg);
  if (!id.ok) {
    SLUICE_LOG(http_log(), Info, "%s: credential refused: %s", request_id(msg).c_str(), id.why.c_str());
    set_error(msg, SOUP_STATUS_UNAUTHORIZED, "unauthorized", id.why);
    soup_message_headers_replace(out, "WWW-Authenticate", "Bearer realm=\"sluice\", error=\"invalid_token\"");
    return true;
  }
  const auth::Scopes need = scope_bits(m.route->scope);
  if (!auth::allows(id.scopes, need)) {
    SLUICE_LOG(http_log(), Info, "%s: %s lacks scope %s", request_id(msg).c_str(), id.who.c_str(),
               auth::scopes_string(need).c_str());
    set_error(msg, SOUP_STATUS_FORBIDDEN, "forbidden",
              "this needs the scope '" + auth::scopes_string(need) + "', which the credential does not grant" +
                  (id.scopes ? " (it grants: " + auth::scopes_string(id.scopes) + ")" : ""));
    const std::string challenge =
        "Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"" + auth::scopes_string(need) + "\"";
    soup_message_headers_replace(out, "WWW-Authenticate", challenge.c_str());
    return true;
  }
  SLUICE_LOG(http_log(), Debug, "%s: %s", request_id(msg).c_str(), id.who.c_str());
  g_object_set_data_full(G_OBJECT(msg), kCallerKey, g_strdup(id.who.c_str()), g_free); // its rate limits
  return false;
}

// An API key not seen yet (or not for a minute), with a PostgreSQL catalog: read on the executor while msg stays
// paused, before a byte of its body is read and before any handler runs; then refused, or the chain goes on from the
// step after this one. A catalog that cannot be read: 503.
void authenticate_later(Context &cx, SoupServerMessage *msg, const Match &m, const std::string &token) {
  g_object_ref(msg);
  hold(msg);
  Context *c = &cx;
  cx.auth->authenticate_later(token, g_get_real_time(),
                              [c, alive = cx.alive, msg, m](const auth::Identity &id, const Error *failed) {
                                if (*alive) {
                                  try {
                                    if (failed)
                                      set_failure(msg, app::failure_of(*failed));
                                    else if (!refuse(msg, m, id))
                                      run_steps(*c, msg, m, step_after("auth"), true);
                                  } catch (const std::exception &e) {
                                    // As the chain's own exceptions (http/server.cpp): nothing crosses the main loop's
                                    // callback.
                                    SLUICE_LOG(http_log(), Error, "%s: %s", request_id(msg).c_str(), e.what());
                                    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
                                  }
                                }
                                release(msg);
                                g_object_unref(msg);
                              });
}

bool authenticate(Context &cx, SoupServerMessage *msg, const Match &m) {
  // A direct-upload token opens its own upload (whatever the mode: it also bounds the upload's size).
  switch (direct_auth(cx, msg, m)) {
  case DirectAuth::Allowed: return false;
  case DirectAuth::Refused: return true;
  case DirectAuth::None: break;
  }
  if (!m.route || m.route->scope == Scope::Open || cx.auth->mode() == auth::Mode::None)
    return false;
  SoupMessageHeaders *out = soup_server_message_get_response_headers(msg);
  bool malformed = false;
  const std::string token = bearer(msg, m, malformed);
  if (token.empty()) {
    set_error(msg, SOUP_STATUS_UNAUTHORIZED, "unauthorized",
              malformed ? "the Authorization header must be 'Bearer' and a key or token"
                        : "this needs an API key or a token: send Authorization: Bearer KEY");
    const char *challenge =
        malformed ? "Bearer realm=\"sluice\", error=\"invalid_request\"" : "Bearer realm=\"sluice\"";
    soup_message_headers_replace(out, "WWW-Authenticate", challenge);
    return true;
  }
  // Neither the key nor the token is ever logged.
  if (!cx.auth->answers_at_once(token)) {
    authenticate_later(cx, msg, m, token);
    return true; // the chain goes on (or the request is refused) once the key is known
  }
  return refuse(msg, m, cx.auth->authenticate(token, g_get_real_time()));
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
    auto up = std::make_shared<Upload>(msg, cx.service.scheduler().layout().uploads_dir(), cx.config.max_upload_size,
                                       cx.service.scheduler().storage());
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
  if (!has_body)
    return false; // nothing to collect: json_body() is nullptr
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
  const Exchange *x = exchange_of(msg);
  return x ? x->id : "-";
}

const std::string *json_body(SoupServerMessage *msg) {
  auto *b = static_cast<SmallBody *>(g_object_get_data(G_OBJECT(msg), kBodyKey));
  if (b && b->too_large)
    throw UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large", "request bodies here are limited to 1 MiB",
                      ""};
  return b ? &b->text : nullptr;
}

// A JSON object body read within limits: json-glib never sees a deeper or bigger document (it recurses
// once per level), a NUL inside a string or an integer it would wrap. Throws UploadError (400, 422).
json::Node read_json_object(const std::string &text, const json::Limits &limits) {
  if (auto v = json::check_limits(text, limits)) {
    if (v->kind == json::LimitViolation::Kind::IntegerRange)
      throw UploadError{SOUP_STATUS_UNPROCESSABLE_ENTITY, "invalid_parameter",
                        (v->member.empty() ? "" : "field '" + v->member + "': ") + v->message, v->member};
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_json",
                      "the request body is refused at byte " + std::to_string(v->offset) + ": " + v->message, ""};
  }
  json::Node root;
  try {
    root = json::parse(text, "the request body", limits);
  } catch (const Error &e) {
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_json", e.what(), ""};
  }
  if (!JSON_NODE_HOLDS_OBJECT(root.get()))
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_json", "the request body must be a JSON object", ""};
  return root;
}

bool host_allowed(const ServerConfig &config, SoupMessageHeaders *request) {
  const char *host = soup_message_headers_get_one(request, "Host");
  return host_ok(config, parse_authority(host ? host : "").host);
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
                               "Content-Length, Content-Range, ETag, Location, X-Request-Id, WWW-Authenticate, "
                               "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Upload-Offset, "
                               "Upload-Length, Upload-Expires, Upload-Metadata, Upload-Concat, Tus-Resumable, "
                               "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Sluice-Video-Id");
  if (is_method(msg, "OPTIONS")) {
    soup_message_headers_replace(h, "Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
    soup_message_headers_replace(h, "Access-Control-Allow-Headers",
                                 "Authorization, Content-Type, Range, If-None-Match, Last-Event-ID, X-Filename, "
                                 "Idempotency-Key, X-Request-Id, Tus-Resumable, Upload-Length, Upload-Defer-Length, "
                                 "Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Concat, X-Requested-With");
    soup_message_headers_replace(h, "Access-Control-Max-Age", "600");
  }
}

namespace {

// The steps, each given the request and the route it matched (none when no route has its method and
// path); a step that answers the request returns true and ends the chain.
struct Step {
  const char *name;
  bool (*run)(Context &, SoupServerMessage *, const Match &);
  bool credentials = false; // checks credentials: left out on the metrics address
};

const Step kChain[] = {
    {"request-id", [](Context &, SoupServerMessage *msg, const Match &) { return request_id_step(msg), false; }},
    {"access-log", [](Context &, SoupServerMessage *msg, const Match &) { return access_log_step(msg), false; }},
    {"cors",
     [](Context &cx, SoupServerMessage *msg, const Match &m) {
       if (!direct_cors(cx, msg, m))
         apply_cors(cx.config, msg);
       if (const char *path = g_uri_get_path(soup_server_message_get_uri(msg)); path && is_tus_path(path))
         soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Tus-Resumable", kTusVersion);
       return false;
     }},
    {"cross-site",
     [](Context &cx, SoupServerMessage *msg, const Match &m) {
       // A direct upload's page is on the site its token names: the auth step checks the token and its origin.
       return !carries_direct_token(msg, m) && refuse_foreign(cx.config, msg);
     }},
    {"auth", [](Context &cx, SoupServerMessage *msg, const Match &m) { return authenticate(cx, msg, m); }, true},
    {"rate-limit", [](Context &cx, SoupServerMessage *msg, const Match &m) { return rate_limit(cx, msg, m); }},
    {"metrics", [](Context &cx, SoupServerMessage *msg, const Match &m) { return metrics_step(cx, msg, m), false; }},
    {"body",
     [](Context &cx, SoupServerMessage *msg, const Match &m) {
       if (m.route && m.route->body == Body::Tus && !is_method(msg, "OPTIONS"))
         return tus_body(cx, msg, m);
       return m.route && m.route->body == Body::Upload ? upload_body(cx, msg) : json_body_step(msg);
     }},
};

bool run_steps(Context &cx, SoupServerMessage *msg, const Match &m, std::size_t from, bool credentials) {
  for (std::size_t i = from; i < std::size(kChain); i++)
    if ((credentials || !kChain[i].credentials) && kChain[i].run(cx, msg, m))
      return true;
  return false;
}

std::size_t step_after(const char *name) {
  for (std::size_t i = 0; i < std::size(kChain); i++)
    if (std::strcmp(kChain[i].name, name) == 0)
      return i + 1;
  return std::size(kChain);
}

} // namespace

bool run_middleware(Context &cx, SoupServerMessage *msg, const std::string &path) {
  return run_steps(cx, msg, match_route(soup_server_message_get_method(msg), path), 0, true);
}

bool run_metrics_middleware(Context &cx, SoupServerMessage *msg, const std::string &path) {
  const Match m = path == "/metrics" ? match_route(soup_server_message_get_method(msg), path) : Match{};
  return run_steps(cx, msg, m, 0, false);
}

} // namespace sluice::http
