// SPDX-License-Identifier: LGPL-2.1-or-later
// Webhooks' rules: event types, checks, secrets, signatures, public addresses and backoff.
#include "app/webhooks.h"

#include "core/error.h"

#include <glib.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

namespace sluice::app {

namespace {

constexpr std::size_t kMaxUrl = 2048;
constexpr std::size_t kMaxDescription = 1000;

Failure invalid(const std::string &message, const std::string &field) {
  return Failure{Refusal::InvalidField, message, field};
}

std::string hex(const guint8 *p, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; i++) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

} // namespace

const std::vector<std::string> &webhook_event_types() {
  static const std::vector<std::string> types = {"video.ready",      "video.failed", "job.succeeded", "job.failed",
                                                 "upload.completed", "stream.live",  "stream.ended"};
  return types;
}

std::optional<Failure> check_webhook(const WebhookRequest &r, bool allow_private) {
  if (r.url.empty())
    return invalid("url: expected an http:// or https:// URL", "url");
  if (r.url.size() > kMaxUrl)
    return invalid("url: longer than 2048 bytes", "url");
  GError *err = nullptr;
  GUri *uri = g_uri_parse(r.url.c_str(), G_URI_FLAGS_NONE, &err);
  if (!uri) {
    g_clear_error(&err);
    return invalid("url: not a URL", "url");
  }
  const std::string scheme = g_uri_get_scheme(uri) ? g_uri_get_scheme(uri) : "";
  const std::string host = g_uri_get_host(uri) ? g_uri_get_host(uri) : "";
  const bool userinfo = g_uri_get_userinfo(uri) != nullptr;
  g_uri_unref(uri);
  if (scheme != "http" && scheme != "https")
    return invalid("url: expected an http:// or https:// URL", "url");
  if (host.empty())
    return invalid("url: no host", "url");
  if (userinfo)
    return invalid("url: a user or password in the URL is not allowed (sign with the secret instead)", "url");
  if (!allow_private) {
    std::string lower = host;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return g_ascii_tolower(c); });
    GInetAddress *a = g_inet_address_new_from_string(host.c_str());
    const bool refused =
        (a && !is_public_address(a)) || lower == "localhost" || g_str_has_suffix(lower.c_str(), ".localhost");
    if (a)
      g_object_unref(a);
    if (refused)
      return invalid("url: a loopback, private or link-local address is refused ([webhooks] allow-private)", "url");
  }
  if (r.events.empty())
    return invalid("events: expected one or more event types", "events");
  std::set<std::string> seen;
  const auto &known = webhook_event_types();
  for (const auto &e : r.events) {
    if (std::find(known.begin(), known.end(), e) == known.end())
      return invalid("events: unknown event type '" + e +
                         "' (video.ready, video.failed, job.succeeded, job.failed, upload.completed, stream.live, "
                         "stream.ended)",
                     "events");
    if (!seen.insert(e).second)
      return invalid("events: '" + e + "' is named twice", "events");
  }
  if (r.description.size() > kMaxDescription)
    return invalid("description: longer than 1000 bytes", "description");
  return std::nullopt;
}

std::string new_webhook_secret() {
  std::array<guint8, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw Error(ErrorCode::Internal, "no random bytes for a webhook secret (the system's random source failed)");
  return "whsec_" + hex(bytes.data(), bytes.size());
}

std::string webhook_signature(std::int64_t t, const std::string &body, const std::vector<std::string> &secrets) {
  const std::string prefix = std::to_string(t) + ".";
  std::string out = "t=" + std::to_string(t);
  for (const auto &secret : secrets) {
    g_autoptr(GHmac) h = g_hmac_new(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(secret.data()), secret.size());
    g_hmac_update(h, reinterpret_cast<const guchar *>(prefix.data()), static_cast<gssize>(prefix.size()));
    g_hmac_update(h, reinterpret_cast<const guchar *>(body.data()), static_cast<gssize>(body.size()));
    out += ",v1=";
    out += g_hmac_get_string(h);
  }
  return out;
}

std::vector<std::string> signing_secrets(const store::Webhook &w, std::int64_t now) {
  std::vector<std::string> out{w.secret};
  if (!w.previous_secret.empty() && w.previous_until > now)
    out.push_back(w.previous_secret);
  return out;
}

bool is_public_address(GInetAddress *a) {
  if (g_inet_address_get_family(a) == G_SOCKET_FAMILY_IPV6) {
    const guint8 *b = g_inet_address_to_bytes(a);
    // ::ffff:a.b.c.d is a.b.c.d
    static const guint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(mapped, mapped + 12, b)) {
      GInetAddress *v4 = g_inet_address_new_from_bytes(b + 12, G_SOCKET_FAMILY_IPV4);
      const bool ok = is_public_address(v4);
      g_object_unref(v4);
      return ok;
    }
    if ((b[0] & 0xfe) == 0xfc) // fc00::/7, unique local
      return false;
  }
  if (g_inet_address_get_is_any(a) || g_inet_address_get_is_loopback(a) || g_inet_address_get_is_link_local(a) ||
      g_inet_address_get_is_site_local(a) || g_inet_address_get_is_multicast(a))
    return false;
  if (g_inet_address_get_family(a) == G_SOCKET_FAMILY_IPV4) {
    const guint8 *b = g_inet_address_to_bytes(a);
    if (b[0] == 0 || (b[0] == 100 && (b[1] & 0xc0) == 64) || (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255))
      return false; // 0/8, shared 100.64/10, broadcast
  }
  return true;
}

std::int64_t webhook_backoff_us(int attempts, double base_s, double max_s) {
  const double full = std::min(max_s, base_s * std::ldexp(1.0, std::clamp(attempts - 1, 0, 60)));
  const double jitter = g_random_double_range(0.0, 0.5);
  return static_cast<std::int64_t>(full * (1.0 - jitter) * G_USEC_PER_SEC);
}

bool webhook_status_retried(int status) {
  return status == 408 || status == 429 || status >= 500;
}

} // namespace sluice::app
