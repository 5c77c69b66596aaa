// SPDX-License-Identifier: LGPL-2.1-or-later
// The server's configuration: embedded defaults, a GKeyFile, then command-line overrides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string data_dir = "sluice-data";
  // [store] url: the catalog. "" is the data folder's sluice.db; sqlite:///PATH, postgresql://... (store::open).
  std::string store_url;
  // [store] timeout: seconds a PostgreSQL catalog has to connect or to answer a statement (and a call waiting for a
  // store thread to start it) before it fails as unavailable (503); the main loop never waits for it (store::Executor).
  int store_timeout_s = 5;
  // [storage]: where sources and finished packages live (storage::open). url "" is the data folder (files served
  // from there, as always); file:///PATH or s3://BUCKET/PREFIX puts them behind storage::Storage, with endpoint,
  // region and keys (AWS_* variables when empty). serve: proxy (sluice streams the objects) or redirect (302 to a
  // presigned GET URL that lives presign-ttl seconds; s3:// only).
  std::string storage_url, storage_endpoint, storage_region, storage_access_key, storage_secret_key;
  std::string storage_serve = "proxy";
  int presign_ttl_s = 300;
  std::vector<std::string> cors_origins; // "*" allows any origin
  // Host names a request's Host header may name besides IP literals, localhost and the listen address
  // (against DNS rebinding); "*" allows any.
  std::vector<std::string> allowed_hosts;
  // Connections: seconds for a request's headers to arrive, for a keep-alive connection to wait for its next
  // request, and for a request body to send nothing; connections one client address may hold (0: no limit).
  int header_timeout_s = 10;
  int idle_timeout_s = 60;
  int body_timeout_s = 60;
  int max_connections_per_client = 64;
  // [server] media-fast-path: a finished package's files answered by sluice's connections without libsoup's
  // per-request work (http/fast.cpp); false leaves every request to libsoup.
  bool media_fast_path = true;
  std::int64_t max_upload_size = 8LL << 30;
  bool auto_transcode = true;
  // [uploads] resumable-expiry: an unfinished resumable upload is removed this long after its creation.
  std::int64_t resumable_expiry_s = 24 * 3600;
  // [jobs] concurrent: the most jobs that run at once (0: no cap but the capacity). [jobs] capacity: the weight of the
  // jobs that run at once, a job's weight being the cores it keeps busy (its description's "weight"; 0: the core
  // count). [jobs] hold-after: seconds the first job in the queue may wait for room while lighter jobs pass it; then
  // its room is held (no lighter job starts) until it fits.
  int concurrent_jobs = 0;
  int capacity = 0;
  int hold_after_s = 60;
  std::string pipeline = "hls";
  // Further pipelines queued after every upload with a picture (the default job profile).
  std::vector<std::string> extras = {"poster", "storyboard", "preview"};
  std::string encoder = "auto";
  int max_attempts = 3;
  int retry_delay_s = 10;
  // The first delay before a job that failed for lack of disk space runs again (doubled each time, no attempt limit).
  int no_space_retry_delay_s = 60;
  int queue_limit = 1000;
  // [server] role (sluice serve --role): all (one process does everything), api (HTTP, uploads, the catalog; runs no
  // job) or worker (claims and runs jobs; no HTTP API). api and worker share a PostgreSQL [store] url.
  std::string role = "all";
  // [jobs] lease: seconds a claimed job stays this process's without a renewal (then another may claim it again);
  // heartbeat: seconds between renewals (and the worker's heartbeat); worker-name: "" is hostname-pid.
  int lease_s = 30;
  int heartbeat_s = 10;
  std::string worker_name;
  int keep_alive_s = 15;
  std::int64_t min_free_space = 1LL << 30;
  // [auth]: who may use the API (src/auth). mode: none (loopback only), keys, jwt or keys+jwt; the JWT settings
  // are read by auth::Authenticator (a secret or a file of it for HS256, a JWKS or PEM file for RS256/ES256).
  std::string auth_mode = "none";
  std::string jwt_secret, jwt_secret_file, jwks_file, jwt_public_key, jwt_issuer, jwt_audience;
  int jwt_leeway_s = 30;
  // [server] trusted-proxies: addresses or CIDRs (10.0.0.0/8) of the proxies whose X-Forwarded-For is believed.
  std::vector<std::string> trusted_proxies;
  // [limits]: token buckets per API key, or per client address (src/auth/ratelimit.h). enabled: auto (on unless
  // listening on loopback), true or false. Rates per second (bytes per second for upload bytes); 0 turns one off.
  std::string limits_enabled = "auto";
  double api_rate = 20, api_burst = 200;
  double upload_starts_rate = 0.5, upload_starts_burst = 20;
  double upload_bytes_rate = 64.0 * (1 << 20), upload_bytes_burst = 16.0 * (1LL << 30);
  double media_rate = 100, media_burst = 1000;
  int limits_max_clients = 100000;
  // [playback]: the keys of signed playback tokens (auth::PlaybackKeys): "id:secret;id:secret" and/or a file
  // of such lines, and the id of the key that signs (the first key when empty). No key at all: a random key
  // made at startup (tokens die with the process).
  std::string playback_keys, playback_keys_file, playback_signing_key_id;
  // [metrics] listen: a second address that serves GET /metrics alone, without credentials (an operator
  // firewalls it); metrics_port -1: none (then /metrics is only on the main address, under [auth]).
  std::string metrics_host;
  int metrics_port = -1;

  // Live: the RTSP server's address ([rtsp] listen) and the SRT listener's ([srt] listen); port -1 turns one off.
  // [live] window: seconds of a live playlist; idle-timeout: seconds without input before a stream ends.
  std::string rtsp_host = "127.0.0.1";
  int rtsp_port = 8554;
  std::string srt_host = "127.0.0.1";
  int srt_port = 8890;
  int live_window_s = 30;
  int live_idle_timeout_s = 10;

  // [webhooks]: allow-private lets deliveries reach loopback, private and link-local addresses (refused otherwise,
  // checked after DNS resolution at every attempt); timeout: seconds an attempt may take; backoff-base and
  // backoff-max: the first retry's delay and the longest (doubled each attempt, with jitter); give-up-after: seconds
  // after the event when a failing delivery stops being retried; rotation-grace: seconds the previous secret still
  // signs after a rotation; poll: seconds between looks at the outbox.
  bool webhooks_allow_private = false;
  int webhooks_timeout_s = 10;
  double webhooks_backoff_base_s = 10;
  double webhooks_backoff_max_s = 3600;
  int webhooks_give_up_s = 86400;
  int webhooks_rotation_grace_s = 86400;
  double webhooks_poll_s = 1;

  // Reads a GKeyFile over the current values; throws sluice::Error (Invalid) naming the key.
  void load_file(const std::string &path);
  // "HOST:PORT" (IPv6 as [::1]:8080); throws Error (Invalid).
  void set_listen(const std::string &listen);
  // The same for [metrics] listen (--metrics-listen).
  void set_metrics_listen(const std::string &listen);
  // The same for [rtsp] listen and [srt] listen ("off" turns one off).
  void set_rtsp_listen(const std::string &listen);
  void set_srt_listen(const std::string &listen);
  // all, api or worker; throws Error (Invalid).
  void set_role(const std::string &role);
  // Checks [storage] (the url's form, serve); throws Error (Invalid) naming the key, never a secret.
  void check_storage() const;
  // The most jobs that run at once: concurrent_jobs, or the capacity when that is not set (a job weighs 1 or more).
  int slots() const;
  // capacity, resolved: the machine's cores when not set.
  int job_capacity() const;
};

// "8G", "512M", "1024" -> bytes; throws Error (Invalid).
std::int64_t parse_size(const std::string &text, const std::string &what);
// "90s", "30m", "24h", "7d", "3600" -> seconds; throws Error (Invalid).
std::int64_t parse_duration(const std::string &text, const std::string &what);

} // namespace sluice
