// SPDX-License-Identifier: LGPL-2.1-or-later
// Serving files from a folder over libsoup: safe paths, MIME types, HEAD, Range, ETag, caching.
#pragma once

#include <libsoup/soup.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::http {

// Splits a still percent-encoded URL path tail ("hls/720p%5f00001.ts") into decoded segments.
// nullopt when any segment is empty, ".", "..", or decodes to something containing '/', '\\' or NUL.
std::optional<std::vector<std::string>> split_path(const std::string &encoded);

// The real path (symlinks resolved) of the regular file root/segments... if it exists and stays inside
// the real path of root; nullopt otherwise. Segments are checked as split_path does.
std::optional<std::string> resolve_under(const std::string &root, const std::vector<std::string> &segments);

// MIME type for a file name by extension (m3u8, ts, m4s, mp4, mpd, jpg, vtt, json, ...).
const char *mime_type_for(const std::string &name);

struct ByteRange {
  std::int64_t start = 0, end = 0; // inclusive
};
enum class RangeKind { None, Satisfiable, Unsatisfiable };
// One "bytes=" range (first-last, first-, -suffix) against size. Malformed or multi-range headers are
// treated as None (serve the whole file), as RFC 9110 allows.
RangeKind parse_range(const std::string &header, std::int64_t size, ByteRange &out);

struct ServeOptions {
  std::string cache_control;         // e.g. "no-cache" or "public, max-age=31536000, immutable"
  std::optional<std::string> body;   // serve this text instead of the file's contents (rewritten playlists)
};

// Answers msg (GET or HEAD) with the file at path: 200/206/304/416, Content-Type, Content-Length,
// Accept-Ranges, ETag, Last-Modified, Cache-Control. Zero-copy for file contents (mapped: the file must not
// be truncated while the response is written). Other methods get 405 with Allow: GET, HEAD.
// With opts.body, path only names the content (its MIME type) and need not exist; there is no Last-Modified.
// Throws sluice::Error (NotFound: path missing or not a regular file; Io: unreadable) and then leaves msg
// untouched, for the caller to answer 404/500. Removes a Range request header it decided not to honour, so
// that libsoup (which applies Range to 200 GET responses itself) does not.
void serve_file(SoupServerMessage *msg, const std::string &path, const ServeOptions &opts);

} // namespace sluice::http
