// SPDX-License-Identifier: LGPL-2.1-or-later
// Loading the server configuration from a GKeyFile.
#include "core/config.h"

#include "core/error.h"
#include "storage/open.h"
#include "store/store.h"

#include <gio/gio.h>
#include <glib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace sluice {

std::int64_t parse_size(const std::string &text, const std::string &what) {
  std::string t = text;
  while (!t.empty() && g_ascii_isspace(t.back()))
    t.pop_back();
  if (t.empty())
    throw Error(what + ": expected a size such as 512M or 8G, got an empty value");
  std::int64_t mult = 1;
  char last = g_ascii_toupper(t.back());
  if (last == 'B' && t.size() > 1) {
    t.pop_back();
    last = g_ascii_toupper(t.back());
  }
  switch (last) {
  case 'K': mult = 1LL << 10; break;
  case 'M': mult = 1LL << 20; break;
  case 'G': mult = 1LL << 30; break;
  case 'T': mult = 1LL << 40; break;
  default: break;
  }
  if (mult != 1)
    t.pop_back();
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || errno != 0 || end == nullptr || *end != '\0' || v < 0 || v > (INT64_MAX / mult))
    throw Error(what + ": expected a size such as 512M or 8G, got '" + text + "'");
  return v * mult;
}

std::int64_t parse_duration(const std::string &text, const std::string &what) {
  std::string t = text;
  while (!t.empty() && g_ascii_isspace(t.back()))
    t.pop_back();
  std::int64_t mult = 1;
  if (!t.empty()) {
    switch (g_ascii_tolower(t.back())) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: mult = 0; break;
    }
    if (mult)
      t.pop_back();
    else
      mult = 1;
  }
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || !g_ascii_isdigit(t[0]) || errno != 0 || *end != '\0' || v > (INT64_MAX / mult / 1000000))
    throw Error(what + ": expected a duration such as 90s, 30m, 24h or 7d, got '" + text + "'");
  return v * mult;
}

namespace {

std::string get_string(GKeyFile *kf, const char *group, const char *key, const std::string &fallback) {
  if (!g_key_file_has_key(kf, group, key, nullptr))
    return fallback;
  g_autofree gchar *v = g_key_file_get_string(kf, group, key, nullptr);
  return v ? g_strstrip(v) : fallback;
}

int get_int(GKeyFile *kf, const char *group, const char *key, int fallback, int min, int max) {
  if (!g_key_file_has_key(kf, group, key, nullptr))
    return fallback;
  GError *err = nullptr;
  int v = g_key_file_get_integer(kf, group, key, &err);
  std::string where = std::string("[") + group + "] " + key;
  if (err)
    throw Error::from_gerror(ErrorCode::Invalid, where, err);
  if (v < min || v > max)
    throw Error(where + ": " + std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
                std::to_string(max));
  return v;
}

// A rate or burst: a number >= 0 (fractions allowed).
double get_rate(GKeyFile *kf, const char *group, const char *key, double fallback) {
  if (!g_key_file_has_key(kf, group, key, nullptr))
    return fallback;
  GError *err = nullptr;
  double v = g_key_file_get_double(kf, group, key, &err);
  std::string where = std::string("[") + group + "] " + key;
  if (err)
    throw Error::from_gerror(ErrorCode::Invalid, where, err);
  if (!(v >= 0) || v > 1e12)
    throw Error(where + ": expected a number from 0 to 1e12, got " + std::to_string(v));
  return v;
}

bool get_bool(GKeyFile *kf, const char *group, const char *key, bool fallback) {
  if (!g_key_file_has_key(kf, group, key, nullptr))
    return fallback;
  GError *err = nullptr;
  gboolean v = g_key_file_get_boolean(kf, group, key, &err);
  if (err)
    throw Error::from_gerror(ErrorCode::Invalid, std::string("[") + group + "] " + key, err);
  return v;
}

} // namespace

namespace {

// "HOST:PORT" or "[IPv6]:PORT" -> host, port; `what` names the address in errors.
void parse_listen(const std::string &listen, const char *what, std::string &host, int &port) {
  std::string h, p;
  if (!listen.empty() && listen[0] == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      throw Error(std::string(what) + " '" + listen + "': expected [IPv6]:PORT");
    h = listen.substr(1, close - 1);
    p = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos)
      throw Error(std::string(what) + " '" + listen + "': expected HOST:PORT, e.g. 127.0.0.1:8080");
    h = listen.substr(0, colon);
    p = listen.substr(colon + 1);
  }
  char *end = nullptr;
  long port_v = std::strtol(p.c_str(), &end, 10);
  if (p.empty() || *end != '\0' || port_v < 0 || port_v > 65535)
    throw Error(std::string(what) + " '" + listen + "': the port must be 0..65535");
  if (h.empty())
    throw Error(std::string(what) + " '" + listen + "': the host is missing");
  host = h;
  port = static_cast<int>(port_v);
}

} // namespace

void ServerConfig::set_listen(const std::string &listen) {
  parse_listen(listen, "listen address", host, port);
}

void ServerConfig::set_metrics_listen(const std::string &listen) {
  parse_listen(listen, "metrics listen address", metrics_host, metrics_port);
}

void ServerConfig::set_rtsp_listen(const std::string &listen) {
  if (listen == "off")
    rtsp_port = -1;
  else
    parse_listen(listen, "RTSP listen address", rtsp_host, rtsp_port);
}

void ServerConfig::set_srt_listen(const std::string &listen) {
  if (listen == "off")
    srt_port = -1;
  else
    parse_listen(listen, "SRT listen address", srt_host, srt_port);
}

namespace {

// A ';'-separated list (items trimmed, empty ones dropped); `fallback` when the key is absent.
std::vector<std::string> get_list(GKeyFile *kf, const char *group, const char *key,
                                  const std::vector<std::string> &fallback) {
  if (!g_key_file_has_key(kf, group, key, nullptr))
    return fallback;
  std::vector<std::string> out;
  g_auto(GStrv) list = g_key_file_get_string_list(kf, group, key, nullptr, nullptr);
  for (gchar **o = list; o && *o; ++o) {
    std::string s = g_strstrip(*o);
    if (!s.empty())
      out.push_back(s);
  }
  return out;
}

} // namespace

namespace {

void load_storage(ServerConfig &c, GKeyFile *kf) {
  c.storage_url = get_string(kf, "storage", "url", c.storage_url);
  c.storage_endpoint = get_string(kf, "storage", "endpoint", c.storage_endpoint);
  c.storage_region = get_string(kf, "storage", "region", c.storage_region);
  c.storage_access_key = get_string(kf, "storage", "access-key", c.storage_access_key);
  c.storage_secret_key = get_string(kf, "storage", "secret-key", c.storage_secret_key);
  c.storage_serve = get_string(kf, "storage", "serve", c.storage_serve);
  // At most 7 days: what SigV4 allows a presigned URL.
  c.presign_ttl_s = get_int(kf, "storage", "presign-ttl", c.presign_ttl_s, 1, 7 * 86400);
  c.check_storage();
}

} // namespace

void ServerConfig::load_file(const std::string &path) {
  g_autoptr(GKeyFile) kf = g_key_file_new();
  GError *err = nullptr;
  if (!g_key_file_load_from_file(kf, path.c_str(), G_KEY_FILE_NONE, &err))
    throw Error::from_gerror(ErrorCode::Invalid, "configuration " + path, err);

  std::string listen = get_string(kf, "server", "listen", "");
  if (!listen.empty())
    set_listen(listen);
  data_dir = get_string(kf, "server", "data", data_dir);
  store_url = get_string(kf, "store", "url", store_url);
  store::check_url(store_url); // a bad url stops the start, naming [store] url (never its password)
  store_timeout_s = get_int(kf, "store", "timeout", store_timeout_s, 2, 300);
  load_storage(*this, kf);
  cors_origins = get_list(kf, "server", "cors-origins", cors_origins);
  allowed_hosts = get_list(kf, "server", "allowed-hosts", allowed_hosts);
  header_timeout_s = get_int(kf, "server", "header-timeout", header_timeout_s, 0, 86400);
  idle_timeout_s = get_int(kf, "server", "idle-timeout", idle_timeout_s, 0, 86400);
  body_timeout_s = get_int(kf, "server", "body-timeout", body_timeout_s, 0, 86400);
  max_connections_per_client =
      get_int(kf, "server", "max-connections-per-client", max_connections_per_client, 0, 1000000);
  media_fast_path = get_bool(kf, "server", "media-fast-path", media_fast_path);
  std::string size = get_string(kf, "uploads", "max-size", "");
  if (!size.empty())
    max_upload_size = parse_size(size, "[uploads] max-size");
  auto_transcode = get_bool(kf, "uploads", "auto-transcode", auto_transcode);
  if (std::string e = get_string(kf, "uploads", "resumable-expiry", ""); !e.empty()) {
    resumable_expiry_s = parse_duration(e, "[uploads] resumable-expiry");
    if (resumable_expiry_s < 1)
      throw Error("[uploads] resumable-expiry: expected at least 1 second");
  }
  concurrent_jobs = get_int(kf, "jobs", "concurrent", concurrent_jobs, 0, 256);
  capacity = get_int(kf, "jobs", "capacity", capacity, 0, 4096);
  if (std::string h = get_string(kf, "jobs", "hold-after", ""); !h.empty()) {
    const std::int64_t hold = parse_duration(h, "[jobs] hold-after");
    if (hold > 7 * 24 * 3600)
      throw Error("[jobs] hold-after: expected at most 7d");
    hold_after_s = static_cast<int>(hold);
  }
  pipeline = get_string(kf, "jobs", "pipeline", pipeline);
  encoder = get_string(kf, "jobs", "encoder", encoder);
  extras = get_list(kf, "jobs", "extras", extras);
  max_attempts = get_int(kf, "jobs", "max-attempts", max_attempts, 1, 100);
  retry_delay_s = get_int(kf, "jobs", "retry-delay", retry_delay_s, 0, 86400);
  no_space_retry_delay_s = get_int(kf, "jobs", "no-space-retry-delay", no_space_retry_delay_s, 1, 86400);
  queue_limit = get_int(kf, "jobs", "queue-limit", queue_limit, 1, 1000000);
  if (std::string r = get_string(kf, "server", "role", ""); !r.empty())
    set_role(r);
  lease_s = get_int(kf, "jobs", "lease", lease_s, 2, 86400);
  heartbeat_s = get_int(kf, "jobs", "heartbeat", heartbeat_s, 1, 86400);
  if (heartbeat_s >= lease_s)
    throw Error("[jobs] heartbeat: expected fewer seconds than [jobs] lease (" + std::to_string(lease_s) + ")");
  worker_name = get_string(kf, "jobs", "worker-name", worker_name);
  keep_alive_s = get_int(kf, "events", "keep-alive", keep_alive_s, 1, 3600);
  std::string free = get_string(kf, "health", "min-free-space", "");
  if (!free.empty())
    min_free_space = parse_size(free, "[health] min-free-space");
  auth_mode = get_string(kf, "auth", "mode", auth_mode);
  if (auth_mode != "none" && auth_mode != "keys" && auth_mode != "jwt" && auth_mode != "keys+jwt")
    throw Error("[auth] mode: expected none, keys, jwt or keys+jwt, got '" + auth_mode + "'");
  jwt_secret = get_string(kf, "auth", "jwt-secret", jwt_secret);
  jwt_secret_file = get_string(kf, "auth", "jwt-secret-file", jwt_secret_file);
  jwks_file = get_string(kf, "auth", "jwks-file", jwks_file);
  jwt_public_key = get_string(kf, "auth", "jwt-public-key", jwt_public_key);
  jwt_issuer = get_string(kf, "auth", "jwt-issuer", jwt_issuer);
  jwt_audience = get_string(kf, "auth", "jwt-audience", jwt_audience);
  jwt_leeway_s = get_int(kf, "auth", "jwt-leeway", jwt_leeway_s, 0, 3600);
  trusted_proxies = get_list(kf, "server", "trusted-proxies", trusted_proxies);
  for (const auto &p : trusted_proxies) {
    g_autoptr(GInetAddressMask) mask = g_inet_address_mask_new_from_string(p.c_str(), nullptr);
    if (!mask)
      throw Error("[server] trusted-proxies: '" + p + "' is not an address or a CIDR such as 10.0.0.0/8");
  }
  limits_enabled = get_string(kf, "limits", "enabled", limits_enabled);
  if (limits_enabled != "auto" && limits_enabled != "true" && limits_enabled != "false")
    throw Error("[limits] enabled: expected auto, true or false, got '" + limits_enabled + "'");
  api_rate = get_rate(kf, "limits", "api-rate", api_rate);
  api_burst = get_rate(kf, "limits", "api-burst", api_burst);
  upload_starts_rate = get_rate(kf, "limits", "upload-starts-rate", upload_starts_rate);
  upload_starts_burst = get_rate(kf, "limits", "upload-starts-burst", upload_starts_burst);
  for (auto [key, value] :
       {std::pair{"upload-bytes-rate", &upload_bytes_rate}, {"upload-bytes-burst", &upload_bytes_burst}})
    if (std::string v = get_string(kf, "limits", key, ""); !v.empty())
      *value = static_cast<double>(parse_size(v, std::string("[limits] ") + key));
  media_rate = get_rate(kf, "limits", "media-rate", media_rate);
  media_burst = get_rate(kf, "limits", "media-burst", media_burst);
  limits_max_clients = get_int(kf, "limits", "max-clients", limits_max_clients, 1, 10000000);
  playback_keys = get_string(kf, "playback", "keys", playback_keys);
  playback_keys_file = get_string(kf, "playback", "keys-file", playback_keys_file);
  playback_signing_key_id = get_string(kf, "playback", "signing-key-id", playback_signing_key_id);
  if (std::string m = get_string(kf, "metrics", "listen", ""); !m.empty())
    set_metrics_listen(m);
  if (std::string r = get_string(kf, "rtsp", "listen", ""); !r.empty())
    set_rtsp_listen(r);
  if (std::string r = get_string(kf, "srt", "listen", ""); !r.empty())
    set_srt_listen(r);
  live_window_s = get_int(kf, "live", "window", live_window_s, 4, 3600);
  live_idle_timeout_s = get_int(kf, "live", "idle-timeout", live_idle_timeout_s, 1, 3600);
  webhooks_allow_private = get_bool(kf, "webhooks", "allow-private", webhooks_allow_private);
  webhooks_timeout_s = get_int(kf, "webhooks", "timeout", webhooks_timeout_s, 1, 300);
  webhooks_backoff_base_s = get_rate(kf, "webhooks", "backoff-base", webhooks_backoff_base_s);
  webhooks_backoff_max_s = get_rate(kf, "webhooks", "backoff-max", webhooks_backoff_max_s);
  webhooks_give_up_s = get_int(kf, "webhooks", "give-up-after", webhooks_give_up_s, 1, 30 * 86400);
  webhooks_rotation_grace_s = get_int(kf, "webhooks", "rotation-grace", webhooks_rotation_grace_s, 0, 30 * 86400);
  webhooks_poll_s = get_rate(kf, "webhooks", "poll", webhooks_poll_s);
  if (webhooks_backoff_base_s <= 0 || webhooks_backoff_max_s < webhooks_backoff_base_s)
    throw Error("[webhooks] backoff-base: expected a number of seconds above 0, at most backoff-max");
  if (webhooks_poll_s < 0.05 || webhooks_poll_s > 60)
    throw Error("[webhooks] poll: expected a number of seconds from 0.05 to 60");
}

void ServerConfig::check_storage() const {
  storage::check_url(storage_url); // the url's form only: the keys are checked when the storage is opened
  if (storage_serve != "proxy" && storage_serve != "redirect")
    throw Error("[storage] serve: expected proxy or redirect, got '" + storage_serve + "'");
  if (storage_serve == "redirect" && !storage_url.starts_with("s3://"))
    throw Error("[storage] serve: redirect needs an s3:// [storage] url (a folder has no presigned URLs)");
}

void ServerConfig::set_role(const std::string &r) {
  if (r != "all" && r != "api" && r != "worker")
    throw Error("[server] role: expected all, api or worker, not '" + r + "'");
  role = r;
}

int ServerConfig::slots() const {
  return concurrent_jobs > 0 ? concurrent_jobs : job_capacity();
}

int ServerConfig::job_capacity() const {
  if (capacity > 0)
    return capacity;
  return std::max(1, static_cast<int>(g_get_num_processors())); // as jobs::Scheduler::cores() counts them
}

} // namespace sluice
