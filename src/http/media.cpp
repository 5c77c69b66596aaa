// SPDX-License-Identifier: LGPL-2.1-or-later
// Media files: a video's packages, with EVENT playlists while their job runs and versioned URLs once finished.
#include "app/service.h"
#include "core/fs.h"
#include "http/files.h"
#include "http/media_stored.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
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
std::shared_ptr<const ServedText> versioned_text(Context &cx, const std::string &path, std::string version, bool mpd) {
  auto entry = cx.files.get(path);
  if (!entry)
    return nullptr;
  auto &cached = cx.playlists[path];
  const std::string &tag = entry->etag;
  if (cached.second && cached.first.size() == tag.size() + version.size() && cached.first.starts_with(tag) &&
      cached.first.ends_with(version))
    return cached.second;
  std::string text(static_cast<const char *>(g_bytes_get_data(entry->bytes, nullptr)), g_bytes_get_size(entry->bytes));
  std::string key = tag + version;
  if (version.empty()) {
    version = tag.substr(1, tag.size() - 2);
    version.erase(std::remove(version.begin(), version.end(), '-'), version.end());
  }
  cached = {std::move(key), std::make_shared<const ServedText>(versioned_urls(text, version, mpd))};
  return cached.second;
}

} // namespace

std::string versioned_urls(const std::string &text, const std::string &version, bool mpd) {
  if (mpd)
    return media::version_mpd_urls(text, "v=" + version);
  try {
    auto pl = media::parse_media_playlist(text);
    for (auto &seg : pl.segments)
      seg.uri = versioned(seg.uri, version);
    if (!pl.map_uri.empty())
      pl.map_uri = versioned(pl.map_uri, version);
    return media::write_media_playlist(pl, pl.playlist_type.empty() ? "VOD" : pl.playlist_type);
  } catch (const Error &) {
    return text; // not a playlist we can read: served as it is
  }
}

namespace {

// Appends `query` ("token=...") to a URL, before its fragment.
std::string with_query(const std::string &uri, const std::string &query) {
  auto hash = uri.find('#');
  std::string base = uri.substr(0, hash);
  return base + (base.find('?') == std::string::npos ? "?" : "&") + query +
         (hash == std::string::npos ? "" : uri.substr(hash));
}

} // namespace

// Every URL of a served text carries `query`: the URI lines and URI="..." attributes of a playlist (master or
// media), the templates of an MPD, the sheet URLs of a storyboard's WebVTT.
std::string with_query_everywhere(const std::string &text, const std::string &query, const std::string &name) {
  if (g_str_has_suffix(name.c_str(), ".mpd"))
    return media::version_mpd_urls(text, query);
  const bool vtt = g_str_has_suffix(name.c_str(), ".vtt");
  std::string out;
  out.reserve(text.size() + 1024);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    std::size_t next = end == std::string::npos ? text.size() : end + 1;
    std::string line = text.substr(pos, (end == std::string::npos ? text.size() : end) - pos);
    std::string cr;
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
      cr = "\r";
    }
    if (vtt) {
      // A cue's text: "sheet.jpg#xywh=x,y,w,h".
      if (line.find("#xywh=") != std::string::npos && line.find("-->") == std::string::npos)
        line = with_query(line, query);
    } else if (line.empty()) {
    } else if (line[0] != '#') {
      line = with_query(line, query);
    } else {
      for (std::size_t at = line.find("URI=\""); at != std::string::npos; at = line.find("URI=\"", at)) {
        std::size_t value = at + 5, close = line.find('"', value);
        if (close == std::string::npos)
          break;
        std::string uri = with_query(line.substr(value, close - value), query);
        line.replace(value, close - value, uri);
        at = value + uri.size();
      }
    }
    out += line + cr + (end == std::string::npos ? "" : "\n");
    pos = next;
  }
  return out;
}

namespace {

std::string file_text(Context &cx, const std::string &path) {
  auto entry = cx.files.get(path);
  if (!entry)
    return fs::read_file(path);
  return std::string(static_cast<const char *>(g_bytes_get_data(entry->bytes, nullptr)),
                     g_bytes_get_size(entry->bytes));
}

// What a media request asks for, once its path and token are checked (kept while its file is named later).
struct Asked {
  std::string video_id, folder;
  std::vector<std::string> inside; // the decoded segments under folder (the file's name last)
  std::string pinned;              // ?v=
  bool tokened = false, playlist = false, mpd = false, rewritten = false, carries_urls = false;
  std::string token_query;
};

// The folder and file of `segments` (decoded, at least two) in a, and what kind of file it is: a playlist, an MPD, a
// text rewritten with the package's version. carries_urls needs a.tokened set first.
void name_asked(Asked &a, std::vector<std::string> &&segments) {
  a.folder = std::move(segments.front());
  a.inside.assign(std::make_move_iterator(segments.begin() + 1), std::make_move_iterator(segments.end()));
  const std::string &name = a.inside.back();
  a.playlist = g_str_has_suffix(name.c_str(), ".m3u8");
  a.mpd = g_str_has_suffix(name.c_str(), ".mpd");
  a.rewritten = (a.playlist && name != "master.m3u8") || a.mpd;
  // Texts whose URLs get the token: playlists (master too), MPDs, a storyboard's WebVTT.
  a.carries_urls = a.tokened && (a.playlist || a.mpd || g_str_has_suffix(name.c_str(), ".vtt"));
}

// How a finished package's file in the data folder is served: from the cache, a rewritten text made once per
// version (returned: kept while it is served), its Cache-Control.
std::shared_ptr<const ServedText> finished_options(Context &cx, const app::MediaFile &file, const Asked &a,
                                                   ServeOptions &opts) {
  opts.cache = &cx.files;
  if (a.rewritten) {
    auto text = versioned_text(cx, file.path, file.version, a.mpd);
    opts.text = text.get();
    opts.cache_control = "no-cache";
    return text;
  }
  opts.cache_control =
      a.playlist || a.carries_urls || a.pinned.empty() ? "no-cache" : "public, max-age=31536000, immutable";
  return nullptr;
}

// The file the service named, answered on msg (retried: this is the second naming of a running job's file).
void serve_found(Context &cx, SoupServerMessage *msg, const std::shared_ptr<const Asked> &asked,
                 app::Result<app::MediaFile> &found, bool retried);
// The file named with the video's jobs read on the executor, then served; msg paused meanwhile.
void resolve_later(Context &cx, SoupServerMessage *msg, std::shared_ptr<const Asked> asked, bool retried);

} // namespace

void media(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string &video_id = rq.params[0];
  const std::string &rest = rq.params[1];
  if (!store::is_id(video_id))
    return set_not_found(msg, "no such file");
  if (!cx.service.playback_known(video_id)) {
    // The video's playback policy is read on the store's executor first (never on the main loop), then the request
    // is served as if it had just come (its query kept with it).
    auto again = std::make_shared<Request>(rq);
    if (again->query)
      g_hash_table_ref(again->query);
    Context *context = &cx;
    g_object_ref(msg);
    soup_server_message_pause(msg);
    cx.service.learn_playback(video_id, [context, alive = cx.alive, again](app::Result<bool> found) {
      SoupServerMessage *m = again->msg;
      if (*alive) {
        try {
          if (auto *f = std::get_if<app::Failure>(&found))
            set_failure(m, *f);
          else if (!std::get<bool>(found))
            set_not_found(m, "no such file");
          else
            media(*context, *again);
        } catch (const Error &e) {
          set_failure(m, app::failure_of(e));
        } catch (const std::exception &e) {
          set_error(m, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
        }
      }
      // Served from object storage, the answer comes later (the message stays paused until it does).
      if (!*alive || soup_server_message_get_status(m) != 0)
        soup_server_message_unpause(m);
      if (again->query)
        g_hash_table_unref(again->query);
      g_object_unref(m);
    });
    return;
  }
  // A signed video's files open with a token of that video only (?token=, on every URL its texts name).
  const std::string token = query_value(rq.query, "token");
  const app::Playback access = cx.service.playback(video_id, token);
  if (access == app::Playback::NoVideo)
    return set_not_found(msg, "no such file");
  if (access == app::Playback::Forbidden)
    return set_error(msg, SOUP_STATUS_FORBIDDEN, "playback_forbidden",
                     token.empty() ? "this video plays with a playback token only (?token=)"
                                   : "the playback token is expired, or not one of this video");
  // A token that verified is "KID.EXP.MAC" of [A-Za-z0-9_-] and digits: safe in a URL and in XML as it is.
  auto asked = std::make_shared<Asked>();
  asked->video_id = video_id;
  asked->tokened = access == app::Playback::Signed;
  asked->token_query = "token=" + token;
  asked->pinned = query_value(rq.query, "v");
  // Segments are decoded one at a time: "..%2f" never becomes a separator.
  auto segments = split_path(rest);
  if (!segments || segments->size() < 2)
    return set_not_found(msg, "no such file");
  name_asked(*asked, std::move(*segments));

  auto now = cx.service.media_file_now(video_id, asked->folder, asked->inside, asked->rewritten, asked->pinned);
  if (now)
    return serve_found(cx, msg, asked, *now, false);
  // A package in object storage that the catalog names: its jobs are read on the executor (never on the main loop),
  // the message paused meanwhile. Inline (SQLite): at once, as every catalog call.
  if (cx.service.executor().is_inline()) {
    auto found = cx.service.media_file_from_catalog(video_id, asked->folder, asked->inside, asked->rewritten);
    return serve_found(cx, msg, asked, found, false);
  }
  resolve_later(cx, msg, std::move(asked), false);
}

namespace {

void resolve_later(Context &cx, SoupServerMessage *msg, std::shared_ptr<const Asked> asked, bool retried) {
  const Asked &a = *asked;
  cx.service.media_file_later(
      a.video_id, a.folder, a.inside, a.rewritten,
      later(cx, msg, [&cx, msg, asked = std::move(asked), retried](app::Result<app::MediaFile> found) {
        answering_failures(msg, [&] { serve_found(cx, msg, asked, found, retried); });
      }));
}

void serve_found(Context &cx, SoupServerMessage *msg, const std::shared_ptr<const Asked> &asked,
                 app::Result<app::MediaFile> &found, bool retried) {
  if (auto *f = std::get_if<app::Failure>(&found))
    return set_failure(msg, *f);
  const Asked &a = *asked;
  const std::string &name = a.inside.back();
  const bool playlist = a.playlist, rewritten = a.rewritten, carries_urls = a.carries_urls;
  const std::string &token_query = a.token_query;
  const app::MediaFile &file = std::get<app::MediaFile>(found);
  if (!file.key.empty()) {
    // In object storage ([storage]): the same answers, from the bucket (or a redirect to it).
    StoredFile stored;
    stored.key = file.key;
    stored.name = name;
    stored.version = file.version;
    stored.rewritten = rewritten && !file.running; // a running job's EVENT playlists are served as uploaded
    stored.carries_urls = carries_urls;
    stored.token_query = token_query;
    stored.cache_control = file.running || playlist || carries_urls || a.pinned.empty()
                               ? "no-cache"
                               : "public, max-age=31536000, immutable";
    if (file.running && !retried)
      // The job may have ended between the catalog's answer and the bucket's: its live prefix goes once its end is
      // written. A file not found there is named once more from the catalog (the finished package's, then).
      stored.gone = [&cx, msg, asked] { resolve_later(cx, msg, asked, true); };
    return serve_stored(cx, msg, *cx.service.scheduler().storage(), std::move(stored));
  }

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
    if (carries_urls) {
      try {
        opts.body = with_query_everywhere(opts.body ? *opts.body : fs::read_file(file.path), token_query, name);
      } catch (const Error &e) {
        if (e.code() == ErrorCode::NotFound)
          return set_not_found(msg, "no such file");
        throw;
      }
    }
    return serve_file(msg, file.path, opts);
  }
  try {
    std::shared_ptr<const ServedText> text = finished_options(cx, file, a, opts); // kept while it is served
    if (carries_urls) {
      // The token goes into this request's copy of the text (rewritten or the file's).
      const std::string base = text ? std::string(static_cast<const char *>(g_bytes_get_data(text->bytes, nullptr)),
                                                  g_bytes_get_size(text->bytes))
                                    : file_text(cx, file.path);
      opts.body = with_query_everywhere(base, token_query, name);
      opts.text = nullptr;
    }
    serve_file(msg, file.path, opts);
  } catch (const Error &e) {
    cx.service.forget_media_file(a.video_id, a.folder, a.inside);
    cx.playlists.erase(file.path);
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
}

} // namespace

bool media_fast(Context &cx, const std::string &video_id, const std::string &rest, const std::string &pinned, bool head,
                SoupMessageHeaders *request, SoupMessageHeaders *response, FileAnswer &out) {
  // What media() and serve_found() answer for an open video's finished package in the data folder; any other case
  // is left to them.
  if (!store::is_id(video_id) || !cx.service.playback_known(video_id) ||
      cx.service.playback(video_id, "") != app::Playback::Open)
    return false;
  auto segments = split_path(rest);
  if (!segments || segments->size() < 2)
    return false;
  Asked a;
  a.video_id = video_id;
  a.pinned = pinned;
  name_asked(a, std::move(*segments));
  auto now = cx.service.media_file_now(video_id, a.folder, a.inside, a.rewritten, pinned);
  const app::MediaFile *file = now ? std::get_if<app::MediaFile>(&*now) : nullptr;
  if (!file || !file->key.empty() || file->running)
    return false;
  ServeOptions opts;
  try {
    // The text is kept while it is answered (the answer takes its bytes); a file goes with sendfile(), not the cache.
    std::shared_ptr<const ServedText> text = finished_options(cx, *file, a, opts);
    opts.descriptor = !text;
    answer_file(head, request, response, file->path, opts, out);
  } catch (const Error &) {
    return false; // media() answers it again, and forgets what it must
  }
  return out.answered();
}

} // namespace sluice::http::handlers
