// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload's HTTP: requests over one SoupSession with the key for the server only, answers, and retries.
#include "cli/upload_internal.h"

#include "core/error.h"
#include "sluice-config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace sluice::cli::upload_detail {

namespace {

// Failed attempts in a row before giving up (waiting 1, 2, 4, 8 and 16 s in between).
constexpr int kMaxRetries = 5;
// What is read of an answer's body (errors and JSON objects are small).
constexpr gsize kMaxAnswer = 1024 * 1024;

int default_port(GUri *uri) {
  int port = g_uri_get_port(uri);
  if (port > 0)
    return port;
  return g_ascii_strcasecmp(g_uri_get_scheme(uri), "https") == 0 ? 443 : 80;
}

} // namespace

std::string base64(const guint8 *data, gsize len) {
  g_autofree gchar *s = g_base64_encode(data, len);
  return s;
}

std::string base64(const std::string &s) {
  return base64(reinterpret_cast<const guint8 *>(s.data()), s.size());
}

std::string printable(const std::string &text, std::size_t max) {
  std::string out;
  for (char c : text.substr(0, max))
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  if (text.size() > max)
    out += "...";
  return out;
}

std::string string_member(JsonObject *o, const char *name, const std::string &def) {
  JsonNode *n = o ? json_object_get_member(o, name) : nullptr;
  if (n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)
    return json_node_get_string(n);
  return def;
}
double number_member(JsonObject *o, const char *name, double def) {
  JsonNode *n = o ? json_object_get_member(o, name) : nullptr;
  if (n && JSON_NODE_HOLDS_VALUE(n) &&
      (json_node_get_value_type(n) == G_TYPE_DOUBLE || json_node_get_value_type(n) == G_TYPE_INT64))
    return json_node_get_double(n);
  return def;
}

// ---------------------------------------------------------------------------------------------------
// Answers

std::string Reply::header(const char *name) const {
  const char *v = soup_message_headers_get_one(soup_message_get_response_headers(msg.get()), name);
  return v ? v : "";
}

std::string Reply::reason() const {
  const char *r = soup_message_get_reason_phrase(msg.get());
  return r && *r ? r : soup_status_get_phrase(status);
}

json::Node Reply::json() const {
  try {
    json::Node n = json::parse(body, "the server's answer", json::Limits{32, 100000});
    if (JSON_NODE_HOLDS_OBJECT(n.get()))
      return n;
  } catch (const Error &) {
  }
  return nullptr;
}

std::string Reply::describe() const {
  std::string out = std::to_string(status);
  json::Node n = json();
  JsonObject *err = nullptr;
  if (n && json_object_has_member(json_node_get_object(n.get()), "error")) {
    JsonNode *e = json_object_get_member(json_node_get_object(n.get()), "error");
    if (JSON_NODE_HOLDS_OBJECT(e))
      err = json_node_get_object(e);
  }
  if (err) {
    const std::string code = string_member(err, "code", "");
    const std::string message = string_member(err, "message", "");
    out += std::string(" ") + printable(code, 64) + ": " + printable(message);
    return out;
  }
  out += " " + reason();
  std::string text = printable(body);
  while (!text.empty() && text.back() == ' ')
    text.pop_back();
  if (!text.empty())
    out += ": " + text;
  return out;
}

std::string Reply::error_code() const {
  json::Node n = json();
  if (!n)
    return "";
  JsonObject *o = json_node_get_object(n.get());
  JsonNode *e = json_object_get_member(o, "error");
  if (!e || !JSON_NODE_HOLDS_OBJECT(e))
    return "";
  return string_member(json_node_get_object(e), "code", "");
}

// ---------------------------------------------------------------------------------------------------
// Requests

Http::Http(GUri *base, std::string key, GCancellable *cancel)
    : base_(g_uri_ref(base)), key_(std::move(key)), cancel_(cancel) {
  session_.reset(soup_session_new_with_options("timeout", 60, "user-agent", "sluice/" SLUICE_VERSION, nullptr));
}

std::string Http::resolve(const std::string &ref) const {
  g_autoptr(GError) err = nullptr;
  g_autoptr(GUri) u = g_uri_parse_relative(base_, ref.c_str(), kUriFlags, &err);
  if (!u)
    throw Exit(kExitFailed, "the server gave a URL that cannot be read: " + printable(ref));
  g_autofree gchar *s = g_uri_to_string(u);
  return s;
}

std::optional<Reply> Http::request(const char *method, const std::string &url, const Headers &headers, GBytes *body,
                                   const char *content_type, std::function<void(std::uint64_t)> on_wrote) {
  g_autoptr(GInputStream) in = nullptr;
  std::optional<Reply> r = open(method, url, headers, body, content_type, std::move(on_wrote), &in);
  if (!r)
    return r;
  if (in) {
    std::string data;
    std::vector<char> buf(65536);
    for (;;) {
      g_autoptr(GError) err = nullptr;
      gssize n = g_input_stream_read(in, buf.data(), buf.size(), cancel_, &err);
      if (n < 0) {
        check_canceled(err);
        error_ = std::string("the answer was cut: ") + err->message;
        return std::nullopt;
      }
      if (n == 0)
        break;
      if (data.size() < kMaxAnswer)
        data.append(buf.data(), std::min<std::size_t>(static_cast<std::size_t>(n), kMaxAnswer - data.size()));
    }
    g_input_stream_close(in, nullptr, nullptr);
    r->body = std::move(data);
  }
  return r;
}

Reply Http::prepare(const char *method, GUri *uri, const Headers &headers, GBytes *body,
                    const char *content_type) const {
  Reply r;
  r.msg.reset(soup_message_new_from_uri(method, uri));
  SoupMessageHeaders *h = soup_message_get_request_headers(r.msg.get());
  for (const auto &[k, v] : headers)
    soup_message_headers_replace(h, k.c_str(), v.c_str());
  // The key goes to the server the user named, not to another host a Location could point at.
  if (!key_.empty() && same_origin(uri))
    soup_message_headers_replace(h, "Authorization", ("Bearer " + key_).c_str());
  if (body) {
    // From a stream rather than from the bytes: libsoup writes it piece by piece, and wrote-body-data follows.
    g_autoptr(GInputStream) stream = g_memory_input_stream_new_from_bytes(body);
    soup_message_set_request_body(r.msg.get(), content_type, stream, static_cast<gssize>(g_bytes_get_size(body)));
  }
  return r;
}

std::optional<Reply> Http::open(const char *method, const std::string &url, const Headers &headers, GBytes *body,
                                const char *content_type, std::function<void(std::uint64_t)> on_wrote,
                                GInputStream **in) {
  *in = nullptr;
  g_autoptr(GError) perr = nullptr;
  g_autoptr(GUri) uri = g_uri_parse(url.c_str(), kUriFlags, &perr);
  if (!uri)
    throw Exit(kExitFailed, "not a URL: " + printable(url));
  Reply r = prepare(method, uri, headers, body, content_type);
  struct Wrote {
    std::function<void(std::uint64_t)> fn;
    std::uint64_t n = 0;
  } wrote{std::move(on_wrote)};
  gulong h1 = 0, h2 = 0;
  if (wrote.fn) {
    // A request libsoup sends again (a kept connection closed under it) writes its body from the start.
    h1 = g_signal_connect(r.msg.get(), "wrote-headers", G_CALLBACK(+[](SoupMessage *, gpointer d) {
                            auto *w = static_cast<Wrote *>(d);
                            w->n = 0;
                            w->fn(0);
                          }),
                          &wrote);
    h2 = g_signal_connect(r.msg.get(), "wrote-body-data", G_CALLBACK(+[](SoupMessage *, guint n, gpointer d) {
                            auto *w = static_cast<Wrote *>(d);
                            w->n += n;
                            w->fn(w->n);
                          }),
                          &wrote);
  }
  g_autoptr(GError) err = nullptr;
  GInputStream *stream = soup_session_send(session_.get(), r.msg.get(), cancel_, &err);
  if (h1)
    g_signal_handler_disconnect(r.msg.get(), h1);
  if (h2)
    g_signal_handler_disconnect(r.msg.get(), h2);
  if (!stream) {
    check_canceled(err);
    error_ = err ? err->message : "no answer";
    SLUICE_LOG(upload_log(), Info, "%s %s: %s", method, g_uri_get_path(uri), error_.c_str());
    return std::nullopt;
  }
  r.status = soup_message_get_status(r.msg.get());
  SLUICE_LOG(upload_log(), Debug, "%s %s -> %u", method, g_uri_get_path(uri), r.status);
  *in = stream;
  return r;
}

void Http::check_canceled(GError *err) const {
  if (g_cancellable_is_cancelled(cancel_) || (err && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)))
    throw Interrupted{};
}

void Http::sleep(double s) const {
  const gint64 until = g_get_monotonic_time() + static_cast<gint64>(s * G_USEC_PER_SEC);
  while (g_get_monotonic_time() < until) {
    if (g_cancellable_is_cancelled(cancel_))
      throw Interrupted{};
    g_usleep(50000);
  }
  if (g_cancellable_is_cancelled(cancel_))
    throw Interrupted{};
}

bool Http::same_origin(GUri *uri) const {
  return g_ascii_strcasecmp(g_uri_get_scheme(uri), g_uri_get_scheme(base_)) == 0 &&
         g_ascii_strcasecmp(g_uri_get_host(uri), g_uri_get_host(base_)) == 0 &&
         default_port(uri) == default_port(base_);
}

// ---------------------------------------------------------------------------------------------------
// Retries

void Backoff::failed(const std::string &why, const std::string &giving_up, double retry_after_s) {
  if (++failures_ > kMaxRetries)
    throw Exit(kExitUnreachable, why + "; gave up after " + std::to_string(kMaxRetries) + " retries" +
                                     (giving_up.empty() ? "" : ": " + giving_up));
  double delay = retry_after_s >= 0 ? std::min(retry_after_s, 300.0) : static_cast<double>(1 << (failures_ - 1));
  char buf[64];
  std::snprintf(buf, sizeof buf, "; retrying in %.0f s (%d of %d)", delay, failures_, kMaxRetries);
  progress_.note(why + buf);
  http_.sleep(delay);
}

double retry_after(const Reply &r) {
  std::string v = r.header("Retry-After");
  if (v.empty() || !g_ascii_isdigit(v[0]))
    return -1;
  return g_ascii_strtod(v.c_str(), nullptr);
}

bool parse_offset(const std::string &text, std::uint64_t &out) {
  if (text.empty() || text.size() > 19 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return g_ascii_isdigit(c); }))
    return false;
  out = g_ascii_strtoull(text.c_str(), nullptr, 10);
  return true;
}

bool transient(guint status) {
  return status == 500 || status == 502 || status == 503 || status == 504 || status == 429;
}

// ---------------------------------------------------------------------------------------------------
// What the upload and the follower share

Client::Client(const Options &options, GUri *base, GCancellable *cancel)
    : o(options), http(base, options.key, cancel), progress(0, isatty(STDERR_FILENO)), backoff(http, progress) {
  g_autofree gchar *b = g_uri_to_string(base);
  http.set_base_url(b);
}

void Client::refused(const Reply &r, const std::string &what) {
  progress.clear();
  const std::string code = r.error_code();
  if (r.status == SOUP_STATUS_UNAUTHORIZED) {
    if (!http.has_key())
      throw Exit(kExitAuth,
                 "the server asks for an API key (" + r.describe() + "): pass --key KEY or set SLUICE_API_KEY");
    throw Exit(kExitAuth, "the server refused the API key (" + r.describe() + ")");
  }
  if (r.status == SOUP_STATUS_FORBIDDEN && (code == "forbidden" || code.empty()))
    throw Exit(kExitAuth, what + ": " + r.describe());
  throw Exit(kExitFailed, what + ": " + r.describe());
}

std::string Client::lost(const std::string &when) const {
  return "no answer from " + http.base_url() + " " + when + " (" + http.last_error() + ")";
}

} // namespace sluice::cli::upload_detail
