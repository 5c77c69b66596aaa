// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP front of `sluice serve`: routing, JSON answers, uploads, events, media files.
#include "http/server.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/mainloop.h"
#include "core/paths.h"
#include "http/connections.h"
#include "http/files.h"
#include "http/idempotency.h"
#include "http/upload.h"
#include "jobs/outputs.h"
#include "media/dash.h"
#include "media/hls.h"
#include "media/probe.h"
#include "pipeline/description.h"
#include "sluice-config.h"

#include <gst/gst.h>
#include <malloc.h>
#include <cerrno>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

GST_DEBUG_CATEGORY(sluice_http_debug);
#define GST_CAT_DEFAULT sluice_http_debug

namespace sluice::http {

namespace {

constexpr std::int64_t kMaxJsonBody = 1 << 20;
constexpr const char *kSmallBodyKey = "sluice-small-body";

// The body of a request other than an upload, kept by us (bounded) instead of by libsoup.
struct SmallBody {
  std::string text;
  bool too_large = false;
};
const char *kApi = "/api/v1";

// ---------------------------------------------------------------------------------------------
// Answers

void set_json(SoupServerMessage *msg, guint status, JsonNode *node) {
  std::string body = json::to_string(node, false) + "\n";
  json_node_unref(node);
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body.data(), body.size());
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control", "no-store");
}

using json::object_node;

void set_error(SoupServerMessage *msg, guint status, const std::string &code, const std::string &message,
               const std::string &field = "") {
  JsonObject *e = json_object_new();
  json_object_set_string_member(e, "code", code.c_str());
  json_object_set_string_member(e, "message", message.c_str());
  if (!field.empty())
    json_object_set_string_member(e, "field", field.c_str());
  JsonObject *o = json_object_new();
  json_object_set_object_member(o, "error", e);
  set_json(msg, status, object_node(o));
}

void set_method_not_allowed(SoupServerMessage *msg, const char *allow) {
  set_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed",
            std::string(soup_server_message_get_method(msg)) + " is not allowed here; allowed: " + allow);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", allow);
}

void set_not_found(SoupServerMessage *msg, const std::string &what) {
  set_error(msg, SOUP_STATUS_NOT_FOUND, "not_found", what);
}

// A job specification error from the scheduler: which field, and 422.
void set_spec_error(SoupServerMessage *msg, const Error &e) {
  std::string m = e.what();
  std::string field = "params";
  for (const char *f : {"pipeline", "encoder", "ladder"})
    if (m.rfind(std::string(f) + ":", 0) == 0)
      field = f;
  set_error(msg, 422, "invalid_parameter", m, field);
}

// An error thrown while serving, answered the same on every route: the catalog or the file system failing (Io,
// Unavailable) is 503 unavailable, a full disk 507 insufficient_storage, anything else a bug (500).
void set_failure(SoupServerMessage *msg, const Error &e) {
  if (e.code() == ErrorCode::Io || e.code() == ErrorCode::Unavailable)
    set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", e.what());
  else if (e.code() == ErrorCode::NoSpace)
    set_error(msg, SOUP_STATUS_INSUFFICIENT_STORAGE, "insufficient_storage", e.what());
  else
    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
}

std::vector<std::string> split(const std::string &path) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos)
      j = path.size();
    parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

bool is_method(SoupServerMessage *msg, const char *m) {
  return g_strcmp0(soup_server_message_get_method(msg), m) == 0;
}

std::string header(SoupServerMessage *msg, const char *name) {
  const char *v = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), name);
  return v ? v : "";
}

std::string query_value(GHashTable *query, const char *name) {
  if (!query)
    return {};
  auto v = static_cast<const char *>(g_hash_table_lookup(query, name));
  return v ? v : "";
}

// Turns a JSON scalar into the string form the parameter validator reads.
std::string scalar_string(JsonNode *n, const std::string &field) {
  if (!JSON_NODE_HOLDS_VALUE(n))
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                      "field '" + field + "': expected a string, number or boolean", field};
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_STRING)
    return json_node_get_string(n);
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean(n) ? "true" : "false";
  if (t == G_TYPE_INT64)
    return std::to_string(json_node_get_int(n));
  double d = json_node_get_double(n);
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15)
    return std::to_string(static_cast<long long>(d));
  g_autofree gchar *s = g_strdup_printf("%.17g", d);
  return s;
}

int parse_priority(const std::string &text) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0')
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'priority': expected an integer", "priority"};
  // An integer, but not a priority (2^64 included: strtoll says ERANGE rather than wrapping).
  if (errno == ERANGE || v < -1000 || v > 1000)
    throw UploadError{422, "invalid_parameter", "field 'priority': expected an integer from -1000 to 1000",
                      "priority"};
  return static_cast<int>(v);
}

std::string safe_extension(const std::string &filename) {
  auto dot = filename.rfind('.');
  if (dot == std::string::npos || dot + 1 >= filename.size() || filename.size() - dot - 1 > 8)
    return "bin";
  std::string ext = filename.substr(dot + 1);
  for (auto &c : ext) {
    if (!g_ascii_isalnum(c))
      return "bin";
    c = g_ascii_tolower(c);
  }
  return ext;
}

// Keeps display text printable and bounded.
std::string clean_text(const std::string &s, std::size_t max) {
  std::string out;
  if (!g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr))
    return "";
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t')
      out += c;
  if (out.size() > max) {
    out.resize(max);
    while (!out.empty() && !g_utf8_validate(out.data(), static_cast<gssize>(out.size()), nullptr))
      out.pop_back();
  }
  return out;
}

} // namespace

// ---------------------------------------------------------------------------------------------

struct SseClient;

struct Server::Impl {
  const ServerConfig &config;
  store::Store &store;
  IdempotencyKeys idempotency{store};
  jobs::Scheduler &scheduler;
  jobs::EventHub &events;
  SoupServer *server = nullptr;
  std::unique_ptr<Connections> connections; // accepts for server (http/connections.h)
  bool accepting = true;
  std::set<SseClient *> sse_clients;
  // Media serving: small files in memory, resolved request paths, rewritten playlists by file version.
  FileCache files;
  std::unordered_map<std::string, std::string> resolved;
  std::unordered_map<std::string, std::pair<std::string, std::string>> playlists;
  std::string web_root = paths::web_dir();
  std::shared_ptr<bool> alive_flag = std::make_shared<bool>(true);

  Impl(const ServerConfig &c, store::Store &s, jobs::Scheduler &sch, jobs::EventHub &ev)
      : config(c), store(s), scheduler(sch), events(ev) {}

  static void on_early(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer data);
  static void on_request(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data);

  void route(SoupServerMessage *msg, const std::string &path, GHashTable *query);
  void route_api(SoupServerMessage *msg, const std::vector<std::string> &parts, GHashTable *query);
  void apply_cors(SoupServerMessage *msg);
  // Refuses, before the body is read, what a page on another site could make a browser send.
  bool refuse_foreign(SoupServerMessage *msg);

  // API
  void upload(SoupServerMessage *msg);
  void upload_probed(SoupServerMessage *msg, std::shared_ptr<Upload> up, jobs::JobSpec spec, const std::string &title,
                     const std::string &description, std::shared_ptr<media::ProbeResult> probe,
                     std::optional<Error> err);
  void create_job(SoupServerMessage *msg, const std::string &video_id);
  void delete_video(SoupServerMessage *msg, const std::string &video_id);
  void events_stream(SoupServerMessage *msg, GHashTable *query);
  void health(SoupServerMessage *msg);
  void web(SoupServerMessage *msg, const std::string &path);
  void media(SoupServerMessage *msg, const std::string &video_id, const std::string &rest, GHashTable *query);

  JsonNode *video_json(const store::Video &v);
  JsonNode *job_json(const store::Job &j) { return scheduler.job_to_json(j); }
  // {"jobs": [...]}, newest first.
  JsonNode *jobs_json(const store::JobFilter &f) {
    JsonArray *arr = json_array_new();
    for (const auto &j : store.jobs(f))
      json_array_add_element(arr, job_json(j));
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "jobs", arr);
    return object_node(o);
  }
};

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

struct SseClient {
  Server::Impl *impl = nullptr;
  SoupServerMessage *msg = nullptr;
  std::string job, video;
  std::uint64_t token = 0;
  guint keep_alive = 0;
  bool closed = false;

  bool wants(const jobs::Event &e) const {
    if (!job.empty() && e.job_id != job)
      return false;
    if (!video.empty() && e.video_id != video)
      return false;
    return true;
  }
  void write(const std::string &text) {
    if (closed)
      return;
    soup_message_body_append(soup_server_message_get_response_body(msg), SOUP_MEMORY_COPY, text.data(), text.size());
    soup_server_message_unpause(msg);
  }
  void send(const jobs::Event &e) {
    if (wants(e))
      write("id: " + std::to_string(e.id) + "\nevent: " + e.name + "\ndata: " + e.data + "\n\n");
  }
  void close() {
    if (closed)
      return;
    closed = true;
    if (token)
      impl->events.unsubscribe(token);
    token = 0;
    if (keep_alive)
      g_source_remove(keep_alive);
    keep_alive = 0;
    impl->sse_clients.erase(this);
  }
};

void Server::Impl::events_stream(SoupServerMessage *msg, GHashTable *query) {
  auto *c = new SseClient();
  c->impl = this;
  c->msg = msg;
  c->job = query_value(query, "job");
  c->video = query_value(query, "video");
  if ((!c->job.empty() && !store::is_id(c->job)) || (!c->video.empty() && !store::is_id(c->video))) {
    delete c;
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", "job and video must be ids (16 hex digits)");
    return;
  }
  std::string last = header(msg, "Last-Event-ID");
  if (last.empty())
    last = query_value(query, "last_event_id");

  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
  soup_message_headers_replace(h, "Content-Type", "text/event-stream; charset=utf-8");
  soup_message_headers_replace(h, "Cache-Control", "no-cache");
  soup_message_headers_replace(h, "X-Accel-Buffering", "no");
  // What has been written is not kept: a stream open for days uses no more memory than a fresh one.
  soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);

  std::string head = "retry: 2000\n\n";
  std::vector<jobs::Event> missed;
  bool replayed = false;
  if (!last.empty()) {
    char *end = nullptr;
    unsigned long long id = std::strtoull(last.c_str(), &end, 10);
    if (*end == '\0')
      replayed = events.since(id, missed);
  }
  c->msg = msg;
  sse_clients.insert(c);
  c->write(head);
  if (replayed) {
    for (const auto &e : missed)
      c->send(e);
  } else if (!last.empty()) {
    // Too old to replay: the current state of every unfinished job instead.
    for (auto state : {store::JobState::Queued, store::JobState::Running}) {
      store::JobFilter f;
      f.state = state;
      for (const auto &j : store.jobs(f)) {
        json::Node n(job_json(j));
        c->send(jobs::Event{events.last_id(), "job", j.id, j.video_id, json::to_string(n.get(), false)});
      }
    }
  }
  c->token = events.subscribe([c](const jobs::Event &e) { c->send(e); });
  c->keep_alive = g_timeout_add_seconds(
      static_cast<guint>(config.keep_alive_s),
      [](gpointer data) -> gboolean {
        static_cast<SseClient *>(data)->write(": keep-alive\n\n");
        return G_SOURCE_CONTINUE;
      },
      c);
  g_signal_connect_data(
      msg, "finished", G_CALLBACK(+[](SoupServerMessage *, gpointer data) { static_cast<SseClient *>(data)->close(); }),
      c,
      [](gpointer data, GClosure *) {
        auto *cl = static_cast<SseClient *>(data);
        cl->close();
        delete cl;
      },
      GConnectFlags(0));
}

// ---------------------------------------------------------------------------------------------
// Routing

void Server::Impl::apply_cors(SoupServerMessage *msg) {
  std::string origin = header(msg, "Origin");
  if (origin.empty() || config.cors_origins.empty())
    return;
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  bool any = std::find(config.cors_origins.begin(), config.cors_origins.end(), "*") != config.cors_origins.end();
  bool listed = std::find(config.cors_origins.begin(), config.cors_origins.end(), origin) != config.cors_origins.end();
  if (!any && !listed)
    return;
  soup_message_headers_replace(h, "Access-Control-Allow-Origin", any ? "*" : origin.c_str());
  if (!any)
    soup_message_headers_append(h, "Vary", "Origin");
  soup_message_headers_replace(h, "Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, Location");
  if (is_method(msg, "OPTIONS")) {
    soup_message_headers_replace(h, "Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS");
    soup_message_headers_replace(h, "Access-Control-Allow-Headers",
                                 "Content-Type, Range, If-None-Match, Last-Event-ID, X-Filename");
    soup_message_headers_replace(h, "Access-Control-Max-Age", "600");
  }
}

namespace {

bool is_write_method(SoupServerMessage *msg) {
  return is_method(msg, "POST") || is_method(msg, "PUT") || is_method(msg, "PATCH") || is_method(msg, "DELETE");
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

} // namespace

bool Server::Impl::refuse_foreign(SoupServerMessage *msg) {
  // DNS rebinding: a page whose own DNS name now points at this machine talks to us with its name in
  // Host. IP literals, localhost and the listen address cannot be such names; others must be listed.
  const Authority target = parse_authority(header(msg, "Host"));
  const std::string &host = target.host;
  const auto &allowed = config.allowed_hosts;
  auto listed = [](const std::vector<std::string> &list, const std::string &v) {
    return std::find(list.begin(), list.end(), "*") != list.end() ||
           std::find(list.begin(), list.end(), v) != list.end();
  };
  bool host_ok = host.empty() || g_hostname_is_ip_address(host.c_str()) || host == "localhost" ||
                 g_str_has_suffix(host.c_str(), ".localhost") || host == parse_authority(config.host).host ||
                 listed(allowed, host);
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

void Server::Impl::on_early(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer data) {
  auto *self = static_cast<Impl *>(data);
  // A body two readers could frame differently (request smuggling): 400, and the connection is closed
  // without reading it.
  if (std::string why = ambiguous_framing(soup_server_message_get_request_headers(msg)); !why.empty()) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", why);
    self->apply_cors(msg);
    if (self->connections)
      self->connections->answer_and_close(msg);
    return;
  }
  std::string p = path ? path : "";
  if (self->refuse_foreign(msg)) {
    self->apply_cors(msg);
    return;
  }
  if (is_method(msg, "POST") && (p == "/api/v1/videos" || p == "/api/v1/videos/")) {
    if (!self->accepting) {
      set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
      self->apply_cors(msg);
      return;
    }
    // A retry of an upload whose answer was lost gets that answer, without sending the file again.
    try {
      if (self->idempotency.begin(msg, "POST " + std::string(kApi) + "/videos", "")) {
        self->apply_cors(msg);
        return;
      }
    } catch (const UploadError &e) {
      set_error(msg, e.status, e.code, e.message, e.field);
      self->apply_cors(msg);
      return;
    } catch (const Error &e) {
      set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", e.what());
      self->apply_cors(msg);
      return;
    }
    // Short of space (what /health reports as 503): refused before a byte of it is stored.
    if (self->scheduler.space_low()) {
      set_error(msg, SOUP_STATUS_INSUFFICIENT_STORAGE, "insufficient_storage",
                "the server is short of disk space (less than [health] min-free-space is free); try again later");
      self->apply_cors(msg);
      return;
    }
    try {
      auto up = std::make_shared<Upload>(msg, self->scheduler.layout().uploads_dir(), self->config.max_upload_size);
      Upload::attach(msg, std::move(up));
    } catch (const UploadError &e) {
      set_error(msg, e.status, e.code, e.message, e.field);
      self->apply_cors(msg);
    }
    return;
  }
  // Every other route reads small JSON bodies at most: refuse a larger Content-Length at once, and
  // collect a chunked body ourselves so that it cannot grow past the limit in memory either.
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
      self->apply_cors(msg);
      return;
    }
  }
  if (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH &&
      soup_message_headers_get_content_length(h) > kMaxJsonBody) {
    set_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large", "request bodies here are limited to 1 MiB");
    self->apply_cors(msg);
    return;
  }
  auto *body = new SmallBody();
  g_object_set_data_full(G_OBJECT(msg), kSmallBodyKey, body, [](gpointer b) { delete static_cast<SmallBody *>(b); });
  soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
  g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *m, GBytes *chunk, gpointer) {
                     auto *b = static_cast<SmallBody *>(g_object_get_data(G_OBJECT(m), kSmallBodyKey));
                     gsize len = 0;
                     auto bytes = static_cast<const char *>(g_bytes_get_data(chunk, &len));
                     if (b->text.size() + len > static_cast<std::size_t>(kMaxJsonBody))
                       b->too_large = true;
                     else
                       b->text.append(bytes, len);
                   }),
                   nullptr);
}

void Server::Impl::on_request(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *query,
                              gpointer data) {
  auto *self = static_cast<Impl *>(data);
  std::string p = path ? path : "/";
  try {
    self->route(msg, p, query);
  } catch (const UploadError &e) {
    set_error(msg, e.status, e.code, e.message, e.field);
  } catch (const Error &e) {
    GST_ERROR("%s %s: %s", soup_server_message_get_method(msg), p.c_str(), e.what());
    set_failure(msg, e);
  } catch (const std::exception &e) {
    GST_ERROR("%s %s: %s", soup_server_message_get_method(msg), p.c_str(), e.what());
    set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
  }
  self->apply_cors(msg);
}

void Server::Impl::route(SoupServerMessage *msg, const std::string &path, GHashTable *query) {
  if (is_method(msg, "OPTIONS")) {
    soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
    return;
  }
  if (path == "/health") {
    if (!is_method(msg, "GET") && !is_method(msg, "HEAD"))
      return set_method_not_allowed(msg, "GET, HEAD");
    return health(msg);
  }
  if (path == "/" || path.empty() || path == "/index.html" || path.rfind("/web/", 0) == 0) {
    if (!is_method(msg, "GET") && !is_method(msg, "HEAD"))
      return set_method_not_allowed(msg, "GET, HEAD");
    return web(msg, path);
  }
  if (path.rfind("/videos/", 0) == 0) {
    // File names are matched still percent-encoded, decoded one segment at a time by split_path.
    const char *encoded = g_uri_get_path(soup_server_message_get_uri(msg));
    std::string raw = encoded ? encoded : path;
    if (raw.rfind("/videos/", 0) != 0)
      return set_not_found(msg, "no such file");
    std::string rest = raw.substr(std::string("/videos/").size());
    auto slash = rest.find('/');
    std::string id = rest.substr(0, slash);
    if (!store::is_id(id) || slash == std::string::npos)
      return set_not_found(msg, "no such file");
    if (!is_method(msg, "GET") && !is_method(msg, "HEAD"))
      return set_method_not_allowed(msg, "GET, HEAD");
    return media(msg, id, rest.substr(slash + 1), query);
  }
  if (path == kApi || path.rfind(std::string(kApi) + "/", 0) == 0) {
    auto parts = split(path.substr(std::string(kApi).size()));
    // "/videos/x" -> ["", "videos", "x"]; drop the leading empty part and one trailing slash.
    if (!parts.empty() && parts.front().empty())
      parts.erase(parts.begin());
    if (!parts.empty() && parts.back().empty())
      parts.pop_back();
    return route_api(msg, parts, query);
  }
  set_not_found(msg, "no route for " + path);
}

void Server::Impl::route_api(SoupServerMessage *msg, const std::vector<std::string> &parts, GHashTable *query) {
  const bool get = is_method(msg, "GET") || is_method(msg, "HEAD");
  const bool post = is_method(msg, "POST");
  const bool del = is_method(msg, "DELETE");
  auto n = parts.size();

  if (n == 1 && parts[0] == "videos") {
    if (post)
      return upload(msg);
    if (!get)
      return set_method_not_allowed(msg, "GET, HEAD, POST");
    JsonArray *arr = json_array_new();
    for (const auto &v : store.videos())
      json_array_add_element(arr, video_json(v));
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "videos", arr);
    return set_json(msg, SOUP_STATUS_OK, object_node(o));
  }
  if (n >= 2 && parts[0] == "videos") {
    const std::string &id = parts[1];
    auto video = store::is_id(id) ? store.video(id) : std::nullopt;
    if (n == 2) {
      if (!get && !del)
        return set_method_not_allowed(msg, "GET, HEAD, DELETE");
      if (!video)
        return set_not_found(msg, "no video " + id);
      if (del)
        return delete_video(msg, id);
      return set_json(msg, SOUP_STATUS_OK, video_json(*video));
    }
    if (n == 3 && parts[2] == "jobs") {
      if (!get && !post)
        return set_method_not_allowed(msg, "GET, HEAD, POST");
      if (!video)
        return set_not_found(msg, "no video " + id);
      if (post)
        return create_job(msg, id);
      store::JobFilter f;
      f.video_id = id;
      return set_json(msg, SOUP_STATUS_OK, jobs_json(f));
    }
  }
  if (n == 1 && parts[0] == "jobs") {
    if (!get)
      return set_method_not_allowed(msg, "GET, HEAD");
    store::JobFilter f;
    std::string state = query_value(query, "state");
    if (!state.empty()) {
      f.state = store::parse_job_state(state);
      if (!f.state)
        return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field",
                         "state: expected queued, running, succeeded, failed or canceled", "state");
    }
    f.video_id = query_value(query, "video");
    if (!f.video_id.empty() && !store::is_id(f.video_id))
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", "video: expected a video id", "video");
    return set_json(msg, SOUP_STATUS_OK, jobs_json(f));
  }
  if (n == 2 && parts[0] == "jobs") {
    if (!get && !del)
      return set_method_not_allowed(msg, "GET, HEAD, DELETE");
    auto job = store::is_id(parts[1]) ? store.job(parts[1]) : std::nullopt;
    if (!job)
      return set_not_found(msg, "no job " + parts[1]);
    if (del) {
      if (store::is_terminal(job->state))
        return set_error(msg, SOUP_STATUS_CONFLICT, "conflict",
                         std::string("the job has already finished (") + store::job_state_name(job->state) + ")");
      if (!scheduler.cancel(job->id))
        return set_error(msg, SOUP_STATUS_CONFLICT, "conflict", "the job has already finished");
      // A running job stops asynchronously: answer once it has.
      std::string job_id = job->id;
      if (job->state == store::JobState::Running) {
        g_object_ref(msg);
        soup_server_message_pause(msg);
        auto alive = alive_flag;
        scheduler.stop_video(job->video_id, [this, msg, job_id, alive] {
          if (*alive) {
            if (auto j = store.job(job_id))
              set_json(msg, SOUP_STATUS_OK, job_json(*j));
            else
              set_not_found(msg, "no job " + job_id);
            apply_cors(msg);
          }
          soup_server_message_unpause(msg);
          g_object_unref(msg);
        });
        return;
      }
      return set_json(msg, SOUP_STATUS_OK, job_json(*store.job(job_id)));
    }
    return set_json(msg, SOUP_STATUS_OK, job_json(*job));
  }
  if (n == 1 && parts[0] == "events") {
    if (!get)
      return set_method_not_allowed(msg, "GET");
    if (!accepting)
      return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
    return events_stream(msg, query);
  }
  if (n == 1 && parts[0] == "pipelines") {
    if (!get)
      return set_method_not_allowed(msg, "GET, HEAD");
    JsonArray *arr = json_array_new();
    for (const auto &d : pipeline::list_descriptions())
      json_array_add_element(arr, pipeline::description_to_json(d));
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "pipelines", arr);
    json_object_set_string_member(o, "default", config.pipeline.c_str());
    return set_json(msg, SOUP_STATUS_OK, object_node(o));
  }
  if (n == 1 && parts[0] == "encoders") {
    if (!get)
      return set_method_not_allowed(msg, "GET, HEAD");
    JsonNode *enc = scheduler.encoders().to_json(true);
    JsonObject *o = json_object_ref(json_node_get_object(enc));
    json_node_unref(enc);
    json_object_set_string_member(o, "default", config.encoder.c_str());
    try {
      json_object_set_string_member(o, "auto", scheduler.encoders().resolve("auto").c_str());
    } catch (const Error &) {
      json_object_set_null_member(o, "auto");
    }
    return set_json(msg, SOUP_STATUS_OK, object_node(o));
  }
  set_not_found(
      msg, "no API route /api/v1/" + [&] {
        std::string s;
        for (std::size_t i = 0; i < parts.size(); ++i)
          s += (i ? "/" : "") + parts[i];
        return s;
      }());
}

// ---------------------------------------------------------------------------------------------
// Videos and jobs

JsonNode *Server::Impl::video_json(const store::Video &v) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", v.id.c_str());
  json_object_set_string_member(o, "title", v.title.c_str());
  json_object_set_string_member(o, "description", v.description.c_str());
  json_object_set_string_member(o, "filename", v.filename.c_str());
  json_object_set_int_member(o, "size", v.size);
  json_object_set_string_member(o, "created", jobs::iso_time(v.created).c_str());
  try {
    json::Node media = json::parse(v.probe_json, "probe");
    JsonObject *mo = json_node_get_object(media.get());
    // The server's path of the upload is nobody's business.
    if (mo)
      json_object_remove_member(mo, "path");
    if (mo && json_object_has_member(mo, "duration"))
      json_object_set_member(o, "duration", json_node_copy(json_object_get_member(mo, "duration")));
    else
      json_object_set_null_member(o, "duration");
    json_object_set_member(o, "media", media.release());
  } catch (const Error &) {
    json_object_set_null_member(o, "media");
    json_object_set_null_member(o, "duration");
  }
  store::JobFilter f;
  f.video_id = v.id;
  auto jobs = store.jobs(f);
  // The video's state is that of its latest streaming job (hls, cmaf): posters and the like do not
  // make a video playable.
  std::string state = "uploaded";
  for (const auto &j : jobs) {
    std::string kind = scheduler.output_of(j.pipeline);
    if (!kind.empty() && !pipeline::is_streaming_output(kind))
      continue;
    switch (j.state) {
    case store::JobState::Queued: state = "queued"; break;
    case store::JobState::Running: state = "processing"; break;
    case store::JobState::Succeeded: state = "ready"; break;
    case store::JobState::Failed: state = "failed"; break;
    case store::JobState::Canceled: state = "canceled"; break;
    }
    break;
  }
  json_object_set_string_member(o, "state", state.c_str());
  JsonArray *arr = json_array_new();
  for (const auto &j : jobs)
    json_array_add_element(arr, job_json(j));
  json_object_set_array_member(o, "jobs", arr);

  // What can be fetched, newest job first: playback.hls / playback.dash (the newest package of each),
  // playback.packages (every package by pipeline), poster, storyboard and preview.
  JsonObject *pb = json_object_new();
  JsonObject *packages = json_object_new();
  std::set<std::string> seen;
  std::map<std::string, std::string> roles; // role -> URL
  bool live = false;
  for (const auto &j : jobs) {
    const std::string &p = j.pipeline;
    if (!seen.insert(p).second)
      continue;
    std::string kind = scheduler.output_of(p);
    const std::string base = "/videos/" + v.id + "/" + p + "/";
    std::string out = scheduler.layout().output_dir(v.id, p);
    JsonObject *pkg = json_object_new();
    if (kind == "hls" || kind == "cmaf" || kind.empty()) {
      // A running job is served from its working folder (playable once its master exists: every
      // rendition has a first segment), else the finished package. (A cmaf job that replaces a
      // finished package has no working folder served: see Scheduler::live_dir.)
      auto dir = scheduler.live_dir(v.id, p);
      bool growing = dir && fs::exists(fs::join(*dir, "master.m3u8"));
      if (growing || (!dir && fs::exists(fs::join(out, "master.m3u8")))) {
        json_object_set_string_member(pkg, "hls", (base + "master.m3u8").c_str());
        roles.emplace("hls", base + "master.m3u8");
        live = live || (growing && roles["hls"] == base + "master.m3u8");
      }
      // DASH: the MPD of a finished cmaf package.
      if (kind == "cmaf" && !dir && fs::exists(fs::join(out, "manifest.mpd"))) {
        json_object_set_string_member(pkg, "dash", (base + "manifest.mpd").c_str());
        roles.emplace("dash", base + "manifest.mpd");
      }
    } else {
      if (std::string file = jobs::artifact_file(kind); !file.empty() && fs::exists(fs::join(out, file)))
        roles.emplace(kind, base + file);
    }
    if (json_object_get_size(pkg) > 0)
      json_object_set_object_member(packages, p.c_str(), pkg);
    else
      json_object_unref(pkg);
  }
  for (const char *role : {"hls", "dash"})
    if (roles.count(role))
      json_object_set_string_member(pb, role, roles[role].c_str());
  json_object_set_boolean_member(pb, "live", live);
  json_object_set_object_member(pb, "packages", packages);
  for (const char *role : {"poster", "storyboard", "preview"})
    if (roles.count(role))
      json_object_set_string_member(o, role, roles[role].c_str());
    else
      json_object_set_null_member(o, role);
  json_object_set_object_member(o, "playback", pb);
  return object_node(o);
}

void Server::Impl::upload(SoupServerMessage *msg) {
  auto up = Upload::from(msg);
  if (!up)
    return set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", "the upload was not set up");
  if (auto err = up->finish()) {
    up->discard();
    return set_error(msg, err->status, err->code, err->message, err->field);
  }
  const auto &fields = up->fields();
  auto field = [&](const char *name) {
    auto it = fields.find(name);
    return it == fields.end() ? std::string() : it->second;
  };
  jobs::JobSpec spec;
  spec.pipeline = field("pipeline");
  spec.encoder = field("encoder");
  spec.ladder = field("ladder");
  if (std::string p = field("priority"); !p.empty())
    spec.priority = parse_priority(p);
  spec = scheduler.with_defaults(spec);
  if (config.auto_transcode) {
    try {
      scheduler.validate(spec);
    } catch (const Error &e) {
      up->discard();
      return set_spec_error(msg, e);
    }
    if (scheduler.queue_full()) {
      up->discard();
      return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "queue_full",
                       "the job queue is full (" + std::to_string(config.queue_limit) + " jobs); try again later");
    }
  }
  std::string title = clean_text(field("title"), 200);
  std::string description = clean_text(field("description"), 4000);

  // Probing reads the file with GStreamer: do it off the main loop, answer when it is done.
  g_object_ref(msg);
  soup_server_message_pause(msg);
  std::string path = up->path();
  auto alive = alive_flag;
  std::thread([this, msg, up, spec, title, description, path, alive] {
    std::shared_ptr<media::ProbeResult> probe;
    std::optional<Error> err;
    try {
      probe = std::make_shared<media::ProbeResult>(media::probe(path));
      // The probe prerolled decoders (frames of a 4K source are big): give that memory back to the
      // system now rather than keep it as the server's high-water mark.
      malloc_trim(0);
    } catch (const Error &e) {
      err = e;
    } catch (const std::exception &e) {
      err = Error(ErrorCode::Internal, e.what());
    }
    post([this, msg, up, spec, title, description, probe, err, alive] {
      if (*alive)
        upload_probed(msg, up, spec, title, description, probe, err);
      else
        up->discard();
      soup_server_message_unpause(msg);
      g_object_unref(msg);
    });
  }).detach();
}

void Server::Impl::upload_probed(SoupServerMessage *msg, std::shared_ptr<Upload> up, jobs::JobSpec spec,
                                 const std::string &title, const std::string &description,
                                 std::shared_ptr<media::ProbeResult> probe, std::optional<Error> err) {
  if (err) {
    std::string tmp = up->path();
    up->discard();
    std::string name = up->filename().empty() ? "the upload" : "'" + clean_text(up->filename(), 200) + "'";
    std::string reason = err->what();
    // The probe names the server's temporary file; the client knows its file by its own name.
    if (auto pos = reason.find(tmp); !tmp.empty() && pos != std::string::npos)
      reason.replace(pos, tmp.size(), name);
    set_error(msg, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "not_media", reason, "file");
    apply_cors(msg);
    return;
  }
  if (!accepting) {
    up->discard();
    set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
    return;
  }
  store::Video v;
  v.id = store::new_id();
  v.title = title.empty() ? clean_text(up->filename(), 200) : title;
  v.description = description;
  v.filename = clean_text(up->filename(), 255);
  v.size = up->bytes();
  v.created = g_get_real_time();
  std::string dir = scheduler.layout().video_dir(v.id);
  std::string dest = fs::join(dir, "source." + safe_extension(up->filename()));
  v.source = "videos/" + v.id + "/source." + safe_extension(up->filename());
  {
    json::Node pj(media::probe_to_json(*probe));
    v.probe_json = json::to_string(pj.get(), false);
  }
  const bool has_picture = probe->video.has_value();
  try {
    // Checked again before it is kept: the disk may have filled while it arrived (this upload included).
    if (scheduler.space_low())
      throw Error(ErrorCode::NoSpace, "the server is short of disk space (less than [health] min-free-space is "
                                      "free); the upload is not kept");
    fs::make_dirs(dir);
    up->keep(dest);
    // The folder exists before the row: a crash between the two leaves a folder that startup removes,
    // never a row without its file.
    store.add_video(v);
  } catch (const Error &e) {
    up->discard();
    fs::remove_all(dir);
    GST_ERROR("cannot store upload: %s", e.what());
    set_failure(msg, e);
    apply_cors(msg);
    return;
  }
  GST_INFO("video %s: %s, %" G_GINT64_FORMAT " bytes", v.id.c_str(), v.filename.c_str(), v.size);
  {
    JsonObject *vo = json_object_new();
    json_object_set_string_member(vo, "id", v.id.c_str());
    json_object_set_string_member(vo, "action", "created");
    json::Node n(object_node(vo));
    events.publish("video", "", v.id, json::to_string(n.get(), false));
  }
  std::vector<store::Job> jobs;
  try {
    if (config.auto_transcode)
      jobs = scheduler.enqueue_profile(v.id, spec, has_picture);
  } catch (const Error &e) {
    // The catalog took the video, then refused its job: the upload is not kept (when the catalog lets it go).
    GST_ERROR("cannot queue the jobs of video %s: %s", v.id.c_str(), e.what());
    try {
      store.delete_video(v.id);
      fs::remove_all(dir);
    } catch (const Error &e2) {
      GST_ERROR("video %s stays without its jobs: %s", v.id.c_str(), e2.what());
    }
    set_failure(msg, e);
    apply_cors(msg);
    return;
  }
  JsonObject *o = json_object_new();
  json_object_set_member(o, "video", video_json(v));
  if (!jobs.empty())
    json_object_set_member(o, "job", job_json(jobs.front()));
  else
    json_object_set_null_member(o, "job");
  // The whole profile: the requested job first, then the extras (poster, storyboard, preview).
  JsonArray *ja = json_array_new();
  for (const auto &j : jobs)
    json_array_add_element(ja, job_json(j));
  json_object_set_array_member(o, "jobs", ja);
  set_json(msg, SOUP_STATUS_CREATED, object_node(o));
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                               (std::string(kApi) + "/videos/" + v.id).c_str());
  idempotency.remember(msg);
  apply_cors(msg);
}

void Server::Impl::create_job(SoupServerMessage *msg, const std::string &video_id) {
  if (!accepting)
    return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
  auto *body = static_cast<SmallBody *>(g_object_get_data(G_OBJECT(msg), kSmallBodyKey));
  if (body && body->too_large)
    return set_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                     "request bodies here are limited to 1 MiB");
  std::string text = body ? body->text : "";
  // A retry of a request that created its job already gets that answer again.
  g_autofree gchar *digest =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(text.data()), text.size());
  if (idempotency.begin(msg, "POST " + std::string(kApi) + "/videos/" + video_id + "/jobs", digest))
    return;
  jobs::JobSpec spec;
  if (!text.empty()) {
    json::Node root;
    // A job request is a flat object with one small "params" object: json-glib never sees a deeper
    // or bigger document (it recurses once per level), a NUL inside a string or an integer it would wrap.
    json::Limits limits;
    limits.max_depth = 8;
    limits.max_values = 1000;
    if (auto v = json::check_limits(text, limits)) {
      if (v->kind == json::LimitViolation::Kind::IntegerRange)
        return set_error(msg, 422, "invalid_parameter",
                         (v->member.empty() ? "" : "field '" + v->member + "': ") + v->message, v->member);
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_json",
                       "the request body is refused at byte " + std::to_string(v->offset) + ": " + v->message);
    }
    try {
      root = json::parse(text, "the request body", limits);
    } catch (const Error &e) {
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_json", e.what());
    }
    if (!JSON_NODE_HOLDS_OBJECT(root.get()))
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_json", "the request body must be a JSON object");
    JsonObject *o = json_node_get_object(root.get());
    GList *members = json_object_get_members(o);
    std::unique_ptr<GList, decltype(&g_list_free)> guard(members, g_list_free);
    for (GList *m = members; m; m = m->next) {
      std::string name = static_cast<const char *>(m->data);
      JsonNode *val = json_object_get_member(o, name.c_str());
      auto str = [&]() -> std::string {
        if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_STRING)
          throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field '" + name + "': expected a string", name};
        return json_node_get_string(val);
      };
      if (name == "pipeline")
        spec.pipeline = str();
      else if (name == "encoder")
        spec.encoder = str();
      else if (name == "ladder")
        spec.ladder = str();
      else if (name == "priority") {
        if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_INT64)
          throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'priority': expected an integer", name};
        spec.priority = parse_priority(std::to_string(json_node_get_int(val)));
      } else if (name == "params") {
        if (JSON_NODE_HOLDS_NULL(val))
          continue;
        if (!JSON_NODE_HOLDS_OBJECT(val))
          throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'params': expected an object", name};
        JsonObject *po = json_node_get_object(val);
        GList *pm = json_object_get_members(po);
        std::unique_ptr<GList, decltype(&g_list_free)> pguard(pm, g_list_free);
        for (GList *x = pm; x; x = x->next) {
          std::string pname = static_cast<const char *>(x->data);
          spec.params[pname] = scalar_string(json_object_get_member(po, pname.c_str()), "params." + pname);
        }
      } else {
        throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                          "unknown field '" + name + "' (expected pipeline, encoder, ladder, params, priority)", name};
      }
    }
  }
  spec = scheduler.with_defaults(spec);
  try {
    scheduler.validate(spec);
  } catch (const Error &e) {
    return set_spec_error(msg, e);
  }
  if (std::string kind = scheduler.output_of(spec.pipeline); pipeline::needs_picture(kind)) {
    // A poster, storyboard or preview is made from the picture: refused at once for a video without one.
    bool picture = false;
    if (auto v = store.video(video_id)) {
      try {
        json::Node p = json::parse(v->probe_json, "probe");
        JsonObject *po = JSON_NODE_HOLDS_OBJECT(p.get()) ? json_node_get_object(p.get()) : nullptr;
        picture = po && json_object_has_member(po, "video") && !json_object_get_null_member(po, "video");
      } catch (const Error &) {
      }
    }
    if (!picture)
      return set_error(msg, 422, "invalid_parameter",
                       "pipeline '" + spec.pipeline + "' makes a " + kind +
                           " from the picture, and this video has none",
                       "pipeline");
  }
  if (scheduler.has_unfinished_job(video_id, spec.pipeline))
    return set_error(msg, SOUP_STATUS_CONFLICT, "conflict",
                     "the video already has a queued or running '" + spec.pipeline + "' job");
  if (scheduler.queue_full())
    return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "queue_full",
                     "the job queue is full (" + std::to_string(config.queue_limit) + " jobs); try again later");
  auto job = scheduler.enqueue(video_id, spec);
  set_json(msg, SOUP_STATUS_ACCEPTED, job_json(job));
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                               (std::string(kApi) + "/jobs/" + job.id).c_str());
  idempotency.remember(msg);
}

void Server::Impl::delete_video(SoupServerMessage *msg, const std::string &video_id) {
  g_object_ref(msg);
  soup_server_message_pause(msg);
  auto alive = alive_flag;
  try {
    scheduler.stop_video(video_id, [this, msg, video_id, alive] {
      if (*alive) {
        try {
          // The catalog first: once the row is gone nothing serves or runs the files, and a crash
          // before the folder goes leaves an orphan folder that startup removes.
          store.delete_video(video_id);
          fs::remove_all(scheduler.layout().video_dir(video_id));
          JsonObject *vo = json_object_new();
          json_object_set_string_member(vo, "id", video_id.c_str());
          json_object_set_string_member(vo, "action", "deleted");
          json::Node n(object_node(vo));
          events.publish("video", "", video_id, json::to_string(n.get(), false));
          soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
        } catch (const Error &e) {
          GST_ERROR("cannot delete video %s: %s", video_id.c_str(), e.what());
          set_failure(msg, e);
        }
        apply_cors(msg);
      }
      soup_server_message_unpause(msg);
      g_object_unref(msg);
    });
  } catch (const Error &e) {
    // Its queued jobs could not be canceled (the catalog refuses writes): nothing is deleted, and the
    // paused request is answered here (on_request adds the CORS headers).
    GST_ERROR("cannot delete video %s: %s", video_id.c_str(), e.what());
    set_failure(msg, e);
    soup_server_message_unpause(msg);
    g_object_unref(msg);
  }
}

void Server::Impl::health(SoupServerMessage *msg) {
  bool readable = false;
  try {
    readable = store.ping();
  } catch (const Error &) {
  }
  // Reads go on when the catalog cannot be written (read-only, immutable, full): a real write tells, at most one
  // every few seconds, else the outcome of the latest write, so that /health stays cheap however often it is asked.
  bool writable = readable && store.writable();
  bool store_ok = readable && writable;
  std::int64_t free_bytes = scheduler.free_space();
  bool disk_ok = free_bytes >= config.min_free_space;
  bool ready = store_ok && disk_ok && accepting;

  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "status", ready ? "ok" : "unavailable");
  json_object_set_string_member(o, "version", SLUICE_VERSION);
  json_object_set_boolean_member(o, "live", TRUE);
  json_object_set_boolean_member(o, "ready", ready);
  JsonObject *checks = json_object_new();
  JsonObject *s = json_object_new();
  json_object_set_boolean_member(s, "ok", store_ok);
  json_object_set_boolean_member(s, "readable", readable);
  json_object_set_boolean_member(s, "writable", writable);
  // Job states the catalog refused, written again until they land.
  json_object_set_int_member(s, "unsaved_jobs", static_cast<gint64>(scheduler.unsaved_count()));
  json_object_set_object_member(checks, "store", s);
  JsonObject *d = json_object_new();
  json_object_set_boolean_member(d, "ok", disk_ok);
  json_object_set_int_member(d, "free_bytes", free_bytes);
  json_object_set_int_member(d, "min_free_bytes", config.min_free_space);
  json_object_set_object_member(checks, "disk", d);
  json_object_set_object_member(o, "checks", checks);
  JsonObject *j = json_object_new();
  if (readable) {
    json_object_set_int_member(j, "queued", store.count_jobs(store::JobState::Queued));
    json_object_set_int_member(j, "running", scheduler.running_count());
  }
  json_object_set_int_member(j, "slots", config.slots());
  json_object_set_object_member(o, "jobs", j);
  set_json(msg, ready ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE, object_node(o));
}

// ---------------------------------------------------------------------------------------------
// The web page

void Server::Impl::web(SoupServerMessage *msg, const std::string &path) {
  // "/" is the page; "/web/..." its scripts, styles and the player library installed by npm
  // (data/web/node_modules). Revalidated on every load (ETag), so an upgrade shows at once.
  std::string rest = path.rfind("/web/", 0) == 0 ? path.substr(5) : "index.html";
  auto segments = split_path(rest);
  std::optional<std::string> file;
  if (segments && !segments->empty())
    file = resolve_under(web_root, *segments);
  if (!file) {
    if (path == "/" || path == "/index.html")
      return set_error(msg, SOUP_STATUS_NOT_FOUND, "not_found",
                       "the web page is not installed here (" + web_root + "/index.html); the API is under /api/v1");
    return set_not_found(msg, "no such file");
  }
  ServeOptions opts;
  opts.cache_control = "no-cache";
  opts.cache = &files;
  try {
    serve_file(msg, *file, opts);
  } catch (const Error &e) {
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_replace(h, "X-Content-Type-Options", "nosniff");
  if (g_str_has_suffix(file->c_str(), ".html"))
    soup_message_headers_replace(h, "Content-Security-Policy",
                                 "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' "
                                 "data: blob:; style-src 'self'; script-src 'self'");
}

// ---------------------------------------------------------------------------------------------
// Media files

void Server::Impl::media(SoupServerMessage *msg, const std::string &video_id, const std::string &rest,
                         GHashTable *query) {
  auto segments = split_path(rest);
  // Only files inside an output folder: no listing, no upload, no working or old folders by name.
  if (!segments || segments->size() < 2)
    return set_not_found(msg, "no such file");
  const std::string &folder = segments->front();
  // (No catalog lookup: a deleted video's row goes before its folder, and without the folder there is
  // nothing to serve.)
  if (!pipeline::is_identifier(folder) || folder == "source")
    return set_not_found(msg, "no such file");
  const std::string &name = segments->back();
  std::vector<std::string> inside(segments->begin() + 1, segments->end());
  bool playlist = g_str_has_suffix(name.c_str(), ".m3u8");

  if (auto live = scheduler.live_dir(video_id, folder)) {
    // A running job: its playlists are EVENT playlists, and only listed segments exist yet.
    auto path = resolve_under(*live, inside, scheduler.layout().videos_dir());
    if (!path)
      return set_not_found(msg, "no such file");
    ServeOptions opts;
    opts.cache_control = "no-cache";
    if (playlist && name != "master.m3u8") {
      try {
        auto pl = media::parse_media_playlist(fs::read_file(*path));
        opts.body = media::write_media_playlist(pl, "EVENT");
      } catch (const Error &) {
        return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the playlist is being written; retry");
      }
    } else if (!playlist) {
      bool listed = false;
      std::string rel;
      for (std::size_t i = 0; i < inside.size(); ++i)
        rel += (i ? "/" : "") + inside[i];
      for (const auto &f : fs::list_dir(*live)) {
        if (!g_str_has_suffix(f.c_str(), ".m3u8") || f == "master.m3u8")
          continue;
        try {
          auto pl = media::parse_media_playlist(fs::read_file(fs::join(*live, f)));
          for (const auto &s : pl.segments)
            listed = listed || s.uri == rel;
          listed = listed || (!pl.map_uri.empty() && pl.map_uri == rel); // a CMAF init segment
        } catch (const Error &) {
        }
        if (listed)
          break;
      }
      if (!listed)
        return set_not_found(msg, "no such file (yet)");
    }
    return serve_file(msg, *path, opts);
  }

  // A finished package. Resolving a path (real paths, symlinks refused) is remembered; the file
  // cache checks the file itself again on every request.
  std::string key = video_id + "/" + rest;
  std::string path;
  if (auto it = resolved.find(key); it != resolved.end()) {
    path = it->second;
  } else {
    // The folder may not lead out of the videos folder (a link to /etc serves nothing).
    auto real = resolve_under(scheduler.layout().output_dir(video_id, folder), inside,
                              scheduler.layout().videos_dir());
    if (!real)
      return set_not_found(msg, "no such file");
    if (resolved.size() > 50000)
      resolved.clear();
    path = *real;
    resolved.emplace(key, path);
  }
  ServeOptions opts;
  opts.cache = &files;
  try {
    const bool mpd = g_str_has_suffix(name.c_str(), ".mpd");
    if ((playlist && name != "master.m3u8") || mpd) {
      // A finished package can be replaced by a later job under the same names. Segment URLs in its
      // playlists and MPD carry the package's version, so that a cached segment is never one of another
      // package; only such versioned URLs are immutable.
      // One version for the whole package (its folder, renamed into place when it was published):
      // the HLS playlists and the MPD of a CMAF package name its segments with the same URLs, so that
      // players and caches share them.
      auto entry = files.get(path);
      auto &pl_cache = playlists[path];
      std::string version;
      struct stat dir_st;
      if (stat(scheduler.layout().output_dir(video_id, folder).c_str(), &dir_st) == 0) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%llx%llx%lx", static_cast<unsigned long long>(dir_st.st_ino),
                      static_cast<unsigned long long>(dir_st.st_mtim.tv_sec),
                      static_cast<long>(dir_st.st_mtim.tv_nsec));
        version = buf;
      }
      if (entry && pl_cache.first != entry->etag + version) {
        std::string text(static_cast<const char *>(g_bytes_get_data(entry->bytes, nullptr)),
                         g_bytes_get_size(entry->bytes));
        std::string body = text;
        if (version.empty()) {
          version = entry->etag.substr(1, entry->etag.size() - 2);
          version.erase(std::remove(version.begin(), version.end(), '-'), version.end());
        }
        auto versioned = [&](const std::string &uri) {
          return uri + (uri.find('?') == std::string::npos ? "?" : "&") + "v=" + version;
        };
        if (mpd) {
          body = media::version_mpd_urls(text, "v=" + version);
        } else {
          try {
            auto pl = media::parse_media_playlist(text);
            for (auto &seg : pl.segments)
              seg.uri = versioned(seg.uri);
            if (!pl.map_uri.empty())
              pl.map_uri = versioned(pl.map_uri);
            body = media::write_media_playlist(pl, pl.playlist_type.empty() ? "VOD" : pl.playlist_type);
          } catch (const Error &) {
            // Not a playlist we can read: served as it is.
          }
        }
        pl_cache = {entry->etag + version, body};
      }
      if (entry)
        opts.body = pl_cache.second;
      opts.cache_control = "no-cache";
    } else if (playlist) {
      opts.cache_control = "no-cache";
    } else {
      opts.cache_control = query_value(query, "v").empty() ? "no-cache" : "public, max-age=31536000, immutable";
    }
    serve_file(msg, path, opts);
  } catch (const Error &e) {
    resolved.erase(key);
    playlists.erase(path);
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
}

// ---------------------------------------------------------------------------------------------

Server::Server(const ServerConfig &config, store::Store &store, jobs::Scheduler &scheduler, jobs::EventHub &events)
    : impl_(std::make_unique<Impl>(config, store, scheduler, events)) {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_http_debug, "sluice-http", 0, "sluice HTTP server"); });
  // raw-paths: handlers get the path still percent-encoded, so that "..%2f" or "%00" reach our own checks
  // (and get a JSON 404) instead of libsoup's bare 400, and file names are decoded exactly once.
  impl_->server = soup_server_new("server-header", "sluice/" SLUICE_VERSION " ", "raw-paths", TRUE, nullptr);
  soup_server_add_early_handler(impl_->server, nullptr, Impl::on_early, impl_.get(), nullptr);
  soup_server_add_handler(impl_->server, nullptr, Impl::on_request, impl_.get(), nullptr);
  g_signal_connect(impl_->server, "request-finished", G_CALLBACK(+[](SoupServer *, SoupServerMessage *msg, gpointer) {
                     GST_INFO("%s %s -> %u", soup_server_message_get_method(msg),
                              g_uri_get_path(soup_server_message_get_uri(msg)), soup_server_message_get_status(msg));
                   }),
                   nullptr);
}

Server::~Server() {
  *impl_->alive_flag = false;
  stop_accepting();
  if (impl_->connections)
    impl_->connections->stop();
  soup_server_disconnect(impl_->server);
  impl_->connections.reset();
  g_object_unref(impl_->server);
}

void Server::stop_accepting() {
  impl_->accepting = false;
  // Ending the event streams lets clients reconnect to the next server.
  auto clients = impl_->sse_clients;
  for (auto *c : clients) {
    SoupServerMessage *msg = c->msg;
    c->close();
    soup_message_body_complete(soup_server_message_get_response_body(msg));
    soup_server_message_unpause(msg);
  }
}

void Server::listen() {
  GError *err = nullptr;
  GInetAddress *addr = g_inet_address_new_from_string(impl_->config.host.c_str());
  if (!addr) {
    if (impl_->config.host == "localhost")
      addr = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    else if (impl_->config.host == "*" || impl_->config.host == "0.0.0.0")
      addr = g_inet_address_new_any(G_SOCKET_FAMILY_IPV4);
    else
      throw Error(ErrorCode::Invalid, "listen address: '" + impl_->config.host + "' is not an IP address");
  }
  GSocketAddress *sa = g_inet_socket_address_new(addr, static_cast<guint16>(impl_->config.port));
  std::string where = impl_->config.host + ":" + std::to_string(impl_->config.port);
  // Our own socket, for the listen backlog: GSocket's default of 10 makes bursts of new connections (64
  // players starting at once) overflow and wait a second for the client's retransmission.
  GSocket *sock = g_socket_new(g_inet_address_get_family(addr), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &err);
  g_object_unref(addr);
  if (!sock) {
    g_object_unref(sa);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen on " + where, err);
  }
  g_socket_set_listen_backlog(sock, 511);
  gboolean ok = g_socket_bind(sock, sa, TRUE, &err) && g_socket_listen(sock, &err);
  g_object_unref(sa);
  GSocketAddress *bound = ok ? g_socket_get_local_address(sock, &err) : nullptr;
  if (!bound) {
    g_object_unref(sock);
    throw Error::from_gerror(ErrorCode::Io, "cannot listen on " + where, err);
  }
  // Connections are accepted by sluice and handed to libsoup, which leaks those that clients close
  // between two requests and has no timeouts (http/connections.h).
  impl_->connections = std::make_unique<Connections>(impl_->server, impl_->config);
  try {
    impl_->connections->listen(sock);
  } catch (...) {
    g_object_unref(bound);
    g_object_unref(sock);
    throw;
  }
  g_object_unref(sock);
  auto *inet = G_INET_SOCKET_ADDRESS(bound);
  g_autofree gchar *ip = g_inet_address_to_string(g_inet_socket_address_get_address(inet));
  GUri *uri = g_uri_build(G_URI_FLAGS_NONE, "http", nullptr, ip, g_inet_socket_address_get_port(inet), "/", nullptr,
                          nullptr);
  g_autofree gchar *s = g_uri_to_string(uri);
  url_ = s;
  g_uri_unref(uri);
  g_object_unref(bound);
}

} // namespace sluice::http
