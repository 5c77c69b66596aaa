// SPDX-License-Identifier: LGPL-2.1-or-later
// Rate limits in the request path: the caller (API key or client address), the route's budget, 429 and headers.
#include "http/limits.h"

#include "auth/keys.h"
#include "auth/ratelimit.h"
#include "core/error.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/upload.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace sluice::http {

struct RateLimits {
  explicit RateLimits(const ServerConfig &c) : limiter(limits_of(c)) {
    on = c.limits_enabled == "true" || (c.limits_enabled == "auto" && !auth::is_loopback_host(c.host));
    for (const auto &p : c.trusted_proxies) {
      GError *err = nullptr;
      GInetAddressMask *mask = g_inet_address_mask_new_from_string(p.c_str(), &err);
      if (!mask) {
        std::string why = err ? err->message : "?";
        g_clear_error(&err);
        throw Error("[server] trusted-proxies: '" + p + "' is not an address or CIDR (" + why + ")");
      }
      proxies.emplace_back(mask, g_object_unref);
    }
  }
  RateLimits(const RateLimits &) = delete;

  static auth::Limits limits_of(const ServerConfig &c) {
    auth::Limits l;
    l[auth::Kind::Api] = {c.api_rate, c.api_burst};
    l[auth::Kind::UploadStarts] = {c.upload_starts_rate, c.upload_starts_burst};
    l[auth::Kind::UploadBytes] = {c.upload_bytes_rate, c.upload_bytes_burst};
    l[auth::Kind::Media] = {c.media_rate, c.media_burst};
    l.max_callers = static_cast<std::size_t>(c.limits_max_clients);
    return l;
  }

  bool trusted(GInetAddress *a) const {
    for (const auto &m : proxies)
      if (g_inet_address_mask_get_family(static_cast<GInetAddressMask *>(m.get())) == g_inet_address_get_family(a) &&
          g_inet_address_mask_matches(static_cast<GInetAddressMask *>(m.get()), a))
        return true;
    return false;
  }

  auth::RateLimiter limiter;
  bool on = false;
  std::vector<std::unique_ptr<void, void (*)(gpointer)>> proxies; // GInetAddressMask
};

namespace {

RateLimits &limits(Context &cx) {
  if (!cx.limits)
    cx.limits = std::make_shared<RateLimits>(cx.config);
  return *cx.limits;
}

// "1.2.3.4", "1.2.3.4:80", "[::1]:80", "::1" -> an address, or nullptr.
GInetAddress *parse_address(std::string s) {
  while (!s.empty() && g_ascii_isspace(s.front()))
    s.erase(0, 1);
  while (!s.empty() && g_ascii_isspace(s.back()))
    s.pop_back();
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    s = close == std::string::npos ? "" : s.substr(1, close - 1);
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    s = s.substr(0, s.find(':'));
  }
  return s.empty() ? nullptr : g_inet_address_new_from_string(s.c_str());
}

// A client's name for its budgets: its address, IPv6 by its /64 (what one subscriber is usually given).
std::string address_key(GInetAddress *a) {
  if (g_inet_address_get_family(a) == G_SOCKET_FAMILY_IPV6) {
    guint8 bytes[16];
    memcpy(bytes, g_inet_address_to_bytes(a), 16);
    bool mapped =
        std::all_of(bytes, bytes + 10, [](guint8 b) { return b == 0; }) && bytes[10] == 0xff && bytes[11] == 0xff;
    if (!mapped) {
      std::fill(bytes + 8, bytes + 16, 0);
      g_autoptr(GInetAddress) net = g_inet_address_new_from_bytes(bytes, G_SOCKET_FAMILY_IPV6);
      g_autofree gchar *text = g_inet_address_to_string(net);
      return std::string(text) + "/64";
    }
    g_autofree gchar *text = g_strdup_printf("%u.%u.%u.%u", bytes[12], bytes[13], bytes[14], bytes[15]);
    return text;
  }
  g_autofree gchar *text = g_inet_address_to_string(a);
  return text;
}

std::string caller(Context &cx, SoupServerMessage *msg) {
  if (auto *who = static_cast<const char *>(g_object_get_data(G_OBJECT(msg), kCallerKey)))
    return who;
  return "address " + client_address(cx, msg);
}

// RateLimit-Limit, -Remaining and -Reset (whole tokens and seconds), and Retry-After when refused.
void put_headers(SoupMessageHeaders *h, const auth::Decision &d) {
  auto put = [h](const char *name, double v) {
    soup_message_headers_replace(h, name, std::to_string(static_cast<long long>(v)).c_str());
  };
  put("RateLimit-Limit", std::floor(d.limit));
  put("RateLimit-Remaining", std::floor(d.remaining));
  put("RateLimit-Reset", std::ceil(d.reset_s));
  if (!d.allowed)
    put("Retry-After", std::max(1.0, std::ceil(d.retry_after_s)));
}

void set_headers(SoupServerMessage *msg, const auth::Decision &d) {
  put_headers(soup_server_message_get_response_headers(msg), d);
}

std::string seconds_text(double s) {
  return std::to_string(static_cast<long long>(std::max(1.0, std::ceil(s))));
}

// Counts an upload's bytes as they arrive; refuses the upload when they run out.
struct ByteCount {
  std::shared_ptr<RateLimits> limits;
  std::string caller;
  bool refused = false;
};
constexpr const char *kByteCountKey = "sluice-rate-bytes";

void count_upload_bytes(Context &cx, SoupServerMessage *msg, const std::string &who) {
  auto *bc = new ByteCount{cx.limits, who};
  g_object_set_data_full(G_OBJECT(msg), kByteCountKey, bc, [](gpointer p) { delete static_cast<ByteCount *>(p); });
  // Connected before the upload's own handler (the body step comes later): a chunk past the budget is refused
  // before it is written.
  g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *m, GBytes *chunk, gpointer p) {
                     auto *c = static_cast<ByteCount *>(p);
                     if (c->refused)
                       return;
                     auto d =
                         c->limits->limiter.take(auth::Kind::UploadBytes, c->caller,
                                                 static_cast<double>(g_bytes_get_size(chunk)), g_get_monotonic_time());
                     set_headers(m, d);
                     if (d.allowed)
                       return;
                     c->refused = true;
                     g_object_set_data(G_OBJECT(m), kRateRefusedKey, GINT_TO_POINTER(1));
                     SLUICE_LOG(http_log(), Info, "%s: upload bytes over the budget", c->caller.c_str());
                     if (auto up = Upload::from(m))
                       up->refuse(UploadError{429, "rate_limited",
                                              "this upload is over the budget of upload bytes ([limits] "
                                              "upload-bytes-rate and upload-bytes-burst); try again in " +
                                                  seconds_text(d.retry_after_s) + " s",
                                              ""});
                   }),
                   bc);
}

} // namespace

std::string client_address(Context &cx, SoupServerMessage *msg) {
  GSocketAddress *sa = soup_server_message_get_remote_address(msg);
  if (!sa || !G_IS_INET_SOCKET_ADDRESS(sa)) {
    const char *host = soup_server_message_get_remote_host(msg);
    return host ? host : "unknown";
  }
  return client_address(cx, sa, soup_server_message_get_request_headers(msg));
}

std::string client_address(Context &cx, GSocketAddress *sa, SoupMessageHeaders *headers) {
  if (!sa || !G_IS_INET_SOCKET_ADDRESS(sa))
    return "unknown";
  g_autoptr(GInetAddress) client =
      G_INET_ADDRESS(g_object_ref(g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(sa))));
  const RateLimits &rl = limits(cx);
  if (!rl.proxies.empty() && rl.trusted(client)) {
    // X-Forwarded-For lists the addresses each proxy saw, the nearest last: the first untrusted one from the
    // right is the client (what is left of it, the client may have written itself).
    const char *forwarded = soup_message_headers_get_list(headers, "X-Forwarded-For");
    std::string xff = forwarded ? forwarded : "";
    std::vector<std::string> hops;
    for (std::size_t i = 0; i <= xff.size();) {
      auto j = xff.find(',', i);
      if (j == std::string::npos)
        j = xff.size();
      hops.push_back(xff.substr(i, j - i));
      i = j + 1;
    }
    for (auto it = hops.rbegin(); it != hops.rend() && !xff.empty(); ++it) {
      GInetAddress *hop = parse_address(*it);
      if (!hop)
        break;
      g_object_unref(client);
      client = hop;
      if (!rl.trusted(client))
        break;
    }
  }
  return address_key(client);
}

bool rate_limit(Context &cx, SoupServerMessage *msg, const Match &m) {
  const Limit what = m.route ? m.route->limit : Limit::Api;
  if (what == Limit::None || is_method(msg, "OPTIONS"))
    return false;
  RateLimits &rl = limits(cx);
  if (!rl.on)
    return false;
  const bool bytes = (what == Limit::Upload || what == Limit::UploadBytes) && rl.limiter.on(auth::Kind::UploadBytes);
  if (what == Limit::UploadBytes) {
    // A resumable upload's PATCH: its bytes count, it is not an upload start.
    if (bytes)
      count_upload_bytes(cx, msg, caller(cx, msg));
    return false;
  }
  const auth::Kind kind = what == Limit::Media    ? auth::Kind::Media
                          : what == Limit::Upload ? auth::Kind::UploadStarts
                                                  : auth::Kind::Api;
  if (!rl.limiter.on(kind) && !bytes)
    return false;
  const std::string who = caller(cx, msg);
  const auth::Decision d = rl.limiter.take(kind, who, 1, g_get_monotonic_time());
  if (rl.limiter.on(kind))
    set_headers(msg, d);
  if (!d.allowed) {
    SLUICE_LOG(http_log(), Info, "%s: %s over the %s budget", request_id(msg).c_str(), who.c_str(),
               auth::kind_name(kind));
    set_error(msg, 429, "rate_limited",
              std::string("too many ") +
                  (kind == auth::Kind::Media ? "media requests"
                   : kind == auth::Kind::Api ? "API requests"
                                             : "uploads") +
                  " ([limits] " + auth::kind_name(kind) + "-rate and -burst); try again in " +
                  seconds_text(d.retry_after_s) + " s");
    return true;
  }
  if (bytes)
    count_upload_bytes(cx, msg, who);
  return false;
}

bool take_media_request(Context &cx, GSocketAddress *remote, SoupMessageHeaders *request,
                        SoupMessageHeaders *response) {
  RateLimits &rl = limits(cx);
  if (!rl.on || !rl.limiter.on(auth::Kind::Media))
    return true;
  const auth::Decision d =
      rl.limiter.take(auth::Kind::Media, "address " + client_address(cx, remote, request), 1, g_get_monotonic_time());
  if (!d.allowed)
    return false;
  put_headers(response, d);
  return true;
}

} // namespace sluice::http
