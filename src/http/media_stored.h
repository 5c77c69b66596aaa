// SPDX-License-Identifier: LGPL-2.1-or-later
// A finished package's files in object storage ([storage]): streamed through sluice (proxy) or redirected to a
// presigned GET URL (redirect); playlists and other texts with URLs are always read and rewritten by sluice.
#pragma once

#include "http/context.h"
#include "storage/storage.h"

#include <functional>
#include <string>

namespace sluice::http {

// How one stored file is answered (see handlers::media).
struct StoredFile {
  std::string key;           // the object
  std::string name;          // its file name (its type)
  std::string version;       // of its package ("vN"): what rewritten playlists put in their segment URLs
  bool rewritten = false;    // a media playlist or MPD: versioned URLs
  bool carries_urls = false; // a tokened text: every URL gets token_query
  std::string token_query;
  std::string cache_control; // of a file that is not rewritten
  // A running job's live object: what answers msg (on the main loop, msg still paused) instead of 404 when the object
  // is not in the bucket, where its job's end removed it (see handlers::media); none: 404.
  std::function<void()> gone;
};

// Answers msg (GET or HEAD) with the object: texts (.m3u8, .mpd, a tokened .vtt) are read (at most 4 MiB) and
// rewritten here in both modes; other files are streamed with Range, ETag, Last-Modified and Cache-Control like
// serve_file (at most a few MiB in memory, whatever the object's size), or answered 302 to a presigned URL that
// lives [storage] presign-ttl seconds with [storage] serve = redirect.
void serve_stored(Context &cx, SoupServerMessage *msg, storage::Storage &storage, StoredFile file);

} // namespace sluice::http

namespace sluice::http::handlers {

// What handlers::media does to texts (http/media.cpp): segment URLs carrying the package's version, and every
// URL of a text carrying `query`.
std::string versioned_urls(const std::string &text, const std::string &version, bool mpd);
std::string with_query_everywhere(const std::string &text, const std::string &query, const std::string &name);

} // namespace sluice::http::handlers
