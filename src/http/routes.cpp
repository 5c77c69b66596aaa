// SPDX-License-Identifier: LGPL-2.1-or-later
// The route table of `sluice serve` and its matching.
#include "http/routes.h"

#include <glib.h>

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
  };
  return table;
}

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string_view::npos)
      j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// The captures of pattern on path, or false.
bool matches(std::string_view pattern, std::string_view path, std::vector<std::string> &params) {
  params.clear();
  auto want = segments(pattern), got = segments(path);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] == "*") {
      if (i > got.size())
        return false;
      // The rest of the path, as it came (possibly empty).
      std::size_t offset = 0;
      for (std::size_t k = 0; k < i; ++k)
        offset += got[k].size() + 1;
      params.emplace_back(offset <= path.size() ? path.substr(offset) : std::string_view());
      return true;
    }
    if (i >= got.size())
      return false;
    if (want[i] == "{id}") {
      if (got[i].empty())
        return false;
      params.emplace_back(got[i]);
    } else if (want[i] != got[i]) {
      return false;
    }
  }
  return want.size() == got.size();
}

} // namespace

Match match_route(const std::string &method, const std::string &path) {
  Match m;
  // One trailing slash is not part of a route ("/api/v1/videos/" is "/api/v1/videos").
  std::string_view p = path;
  if (p.size() > 1 && p.back() == '/' && g_str_has_prefix(path.c_str(), "/api/"))
    p.remove_suffix(1);
  const std::string_view asked = method == "HEAD" ? std::string_view("GET") : std::string_view(method);
  std::vector<std::string> params;
  for (const auto &r : routes()) {
    if (!matches(r.pattern, p, params))
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
