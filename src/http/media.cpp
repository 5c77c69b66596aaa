// SPDX-License-Identifier: LGPL-2.1-or-later
// Media files: a video's packages, with EVENT playlists while their job runs and versioned URLs once finished.
#include "core/fs.h"
#include "http/files.h"
#include "http/respond.h"
#include "http/routes.h"
#include "media/dash.h"
#include "media/hls.h"

#include <algorithm>

namespace sluice::http::handlers {

namespace {

// A URL of a finished package's file, carrying the package's version: such URLs are immutable.
std::string versioned(const std::string &uri, const std::string &version) {
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + "v=" + version;
}

// A finished package can be replaced by a later job under the same names. Segment URLs in its
// playlists and MPD carry the package's version, so that a cached segment is never one of another
// package. One version for the whole package, so that the HLS playlists and the MPD of a CMAF package
// name its segments with the same URLs, and players and caches share them.
std::optional<std::string> versioned_text(Context &cx, const std::string &path, std::string version, bool mpd) {
  auto entry = cx.files.get(path);
  if (!entry)
    return std::nullopt;
  auto &cached = cx.playlists[path];
  if (cached.first == entry->etag + version)
    return cached.second;
  std::string text(static_cast<const char *>(g_bytes_get_data(entry->bytes, nullptr)), g_bytes_get_size(entry->bytes));
  std::string body = text;
  std::string key = entry->etag + version;
  if (version.empty()) {
    version = entry->etag.substr(1, entry->etag.size() - 2);
    version.erase(std::remove(version.begin(), version.end(), '-'), version.end());
  }
  if (mpd) {
    body = media::version_mpd_urls(text, "v=" + version);
  } else {
    try {
      auto pl = media::parse_media_playlist(text);
      for (auto &seg : pl.segments)
        seg.uri = versioned(seg.uri, version);
      if (!pl.map_uri.empty())
        pl.map_uri = versioned(pl.map_uri, version);
      body = media::write_media_playlist(pl, pl.playlist_type.empty() ? "VOD" : pl.playlist_type);
    } catch (const Error &) {
      // Not a playlist we can read: served as it is.
    }
  }
  cached = {key, body};
  return body;
}

} // namespace

void media(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string &video_id = rq.params[0];
  const std::string &rest = rq.params[1];
  if (!store::is_id(video_id))
    return set_not_found(msg, "no such file");
  // Segments are decoded one at a time: "..%2f" never becomes a separator.
  auto segments = split_path(rest);
  if (!segments || segments->size() < 2)
    return set_not_found(msg, "no such file");
  const std::string &folder = segments->front();
  const std::string &name = segments->back();
  const std::vector<std::string> inside(segments->begin() + 1, segments->end());
  const bool playlist = g_str_has_suffix(name.c_str(), ".m3u8");
  const bool mpd = g_str_has_suffix(name.c_str(), ".mpd");
  const bool rewritten = (playlist && name != "master.m3u8") || mpd;

  auto found = cx.service.media_file(video_id, folder, inside, rewritten);
  if (auto *f = std::get_if<app::Failure>(&found))
    return set_failure(msg, *f);
  const app::MediaFile &file = std::get<app::MediaFile>(found);

  ServeOptions opts;
  if (file.running) {
    // A running job: its media playlists are EVENT playlists; nothing of it is cached.
    opts.cache_control = "no-cache";
    if (playlist && name != "master.m3u8") {
      try {
        opts.body = media::write_media_playlist(media::parse_media_playlist(fs::read_file(file.path)), "EVENT");
      } catch (const Error &) {
        return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the playlist is being written; retry");
      }
    }
    return serve_file(msg, file.path, opts);
  }
  opts.cache = &cx.files;
  try {
    if (rewritten) {
      opts.body = versioned_text(cx, file.path, file.version, mpd);
      opts.cache_control = "no-cache";
    } else if (playlist) {
      opts.cache_control = "no-cache";
    } else {
      opts.cache_control = query_value(rq.query, "v").empty() ? "no-cache" : "public, max-age=31536000, immutable";
    }
    serve_file(msg, file.path, opts);
  } catch (const Error &e) {
    cx.service.forget_media_file(video_id, folder, inside);
    cx.playlists.erase(file.path);
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
}

} // namespace sluice::http::handlers
