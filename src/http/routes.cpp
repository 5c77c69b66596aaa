// SPDX-License-Identifier: LGPL-2.1-or-later
// The route table of `sluice serve` and its matching.
#include "http/routes.h"

#include <glib.h>

#include <algorithm>
#include <string_view>

namespace sluice::http {

const std::vector<Route> &routes() {
  using namespace handlers;
  static const std::vector<Route> table = {
      {"GET", "/health", health, Scope::Open, Body::Json, Limit::None},
      // Open while auth mode is none; else the metrics scope.
      {"GET", "/metrics", metrics, Scope::Metrics, Body::Json, Limit::None},
      {"GET", "/", web, Scope::Open, Body::Json, Limit::None},
      {"GET", "/index.html", web, Scope::Open, Body::Json, Limit::None},
      {"GET", "/web/*", web, Scope::Open, Body::Json, Limit::None},
      // The API's description (docs/openapi.json) and its reference page: open, as the page is (nothing secret).
      {"GET", "/api/v1/openapi.json", web, Scope::Open},
      {"GET", "/docs/api", web, Scope::Open, Body::Json, Limit::None},
      // Media is open to players; a video's own playback policy decides (signed playback URLs).
      {"GET", "/videos/{id}/*", media, Scope::Open, Body::Json, Limit::Media},
      // A live stream's playlists and segments (DATA/streams/ID/).
      {"GET", "/streams/{id}/*", live_media, Scope::Open, Body::Json, Limit::Media},
      {"GET", "/api/v1/videos", list_videos, Scope::Read},
      {"POST", "/api/v1/videos", upload, Scope::Upload, Body::Upload, Limit::Upload},
      {"GET", "/api/v1/videos/{id}", get_video, Scope::Read},
      // Resumable uploads (tus): a direct-upload token (?token=) opens its own upload without a key. GET
      // answers HEAD with the tus headers, GET with JSON.
      {"POST", "/api/v1/uploads", create_upload, Scope::Upload, Body::Tus, Limit::Upload},
      {"GET", "/api/v1/uploads/{id}", get_upload, Scope::Upload},
      {"PATCH", "/api/v1/uploads/{id}", patch_upload, Scope::Upload, Body::Tus, Limit::UploadBytes},
      {"DELETE", "/api/v1/uploads/{id}", delete_upload, Scope::Upload},
      {"POST", "/api/v1/direct-uploads", create_direct_upload, Scope::Upload},
      // Live streams: whoever may upload may make one (its key is shown once); deleting one is like a video's.
      {"GET", "/api/v1/streams", list_streams, Scope::Read},
      {"POST", "/api/v1/streams", create_stream, Scope::Upload},
      {"GET", "/api/v1/streams/{id}", get_stream, Scope::Read},
      {"DELETE", "/api/v1/streams/{id}", delete_stream, Scope::Admin},
      {"DELETE", "/api/v1/videos/{id}", delete_video, Scope::Admin},
      // The playback policy: whoever may upload a video may decide who plays it.
      {"PATCH", "/api/v1/videos/{id}", patch_video, Scope::Upload},
      {"POST", "/api/v1/videos/{id}/playback-tokens", playback_token, Scope::Read},
      {"GET", "/api/v1/videos/{id}/jobs", video_jobs, Scope::Read},
      {"POST", "/api/v1/videos/{id}/jobs", create_job, Scope::Upload},
      {"GET", "/api/v1/jobs", list_jobs, Scope::Read},
      {"GET", "/api/v1/jobs/{id}", get_job, Scope::Read},
      {"DELETE", "/api/v1/jobs/{id}", cancel_job, Scope::Upload},
      {"GET", "/api/v1/events", events, Scope::Read},
      {"GET", "/api/v1/pipelines", pipelines, Scope::Read},
      {"GET", "/api/v1/encoders", encoders, Scope::Read},
      {"GET", "/api/v1/workers", workers, Scope::Read},
      // Webhooks: the endpoints (a secret shown once) and their deliveries.
      {"GET", "/api/v1/webhooks", list_webhooks, Scope::Admin},
      {"POST", "/api/v1/webhooks", create_webhook, Scope::Admin},
      {"GET", "/api/v1/webhooks/{id}", get_webhook, Scope::Admin},
      {"DELETE", "/api/v1/webhooks/{id}", delete_webhook, Scope::Admin},
      {"POST", "/api/v1/webhooks/{id}/rotate-secret", rotate_webhook_secret, Scope::Admin},
      {"GET", "/api/v1/webhooks/{id}/deliveries", webhook_deliveries, Scope::Admin},
      // The operator view's figures (http/stats.cpp).
      {"GET", "/api/v1/stats", stats, Scope::Admin},
  };
  return table;
}

namespace {

// The captures of pattern on path, or false. Both are walked segment by segment ("/a/b": "", "a", "b"), without
// allocating: every request is matched against the whole table.
bool matches(std::string_view pattern, std::string_view path, std::vector<std::string> &params) {
  params.clear();
  std::size_t pi = 0, gi = 0; // where the current segments start
  bool path_done = false;     // every segment of path is matched
  while (true) {
    const std::size_t pe = std::min(pattern.find('/', pi), pattern.size());
    const std::string_view want = pattern.substr(pi, pe - pi);
    if (want == "*") {
      // The rest of the path, as it came (possibly empty).
      params.emplace_back(path_done ? std::string_view() : path.substr(gi));
      return true;
    }
    if (path_done)
      return false;
    const std::size_t ge = std::min(path.find('/', gi), path.size());
    const std::string_view got = path.substr(gi, ge - gi);
    if (want == "{id}") {
      if (got.empty())
        return false;
      params.emplace_back(got);
    } else if (want != got) {
      return false;
    }
    if (pe == pattern.size())
      return ge == path.size();
    pi = pe + 1;
    if (ge == path.size())
      path_done = true;
    else
      gi = ge + 1;
  }
}

} // namespace

Match match_route(const std::string &method, const std::string &path) {
  Match m;
  // One trailing slash is not part of a route ("/api/v1/videos/" is "/api/v1/videos").
  std::string_view p = path;
  if (p.size() > 1 && p.back() == '/' && g_str_has_prefix(path.c_str(), "/api/"))
    p.remove_suffix(1);
  const std::string_view asked = method == "HEAD" ? std::string_view("GET") : std::string_view(method);
  // Most routes are told apart by their literal start ("/api/v1/videos" of "/api/v1/videos/{id}": a path that matches
  // starts with it, its last '/' aside), compared before the segments are.
  static const std::vector<std::string_view> literals = [] {
    std::vector<std::string_view> out;
    for (const auto &r : routes()) {
      std::string_view pattern = r.pattern, literal = pattern.substr(0, pattern.find_first_of("{*"));
      if (literal.size() > 1 && literal.back() == '/')
        literal.remove_suffix(1);
      out.push_back(literal);
    }
    return out;
  }();
  const std::vector<Route> &table = routes();
  std::vector<std::string> params;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const Route &r = table[i];
    if (!p.starts_with(literals[i]) || !matches(r.pattern, p, params))
      continue;
    std::string_view rm = r.method;
    m.allow += (m.allow.empty() ? "" : ", ") + std::string(rm) + (rm == "GET" ? ", HEAD" : "");
    if (!m.route && rm == asked) {
      m.route = &r;
      m.params = params;
    }
  }
  return m;
}

} // namespace sluice::http
