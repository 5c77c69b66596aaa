// SPDX-License-Identifier: LGPL-2.1-or-later
// Serving files from a folder over libsoup: safe paths, MIME types, HEAD, Range, ETag, caching.
#pragma once

#include <libsoup/soup.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::http {

// Splits a still percent-encoded URL path tail ("hls/720p%5f00001.ts") into decoded segments.
// nullopt when any segment is empty, ".", "..", or decodes to something containing '/', '\\' or NUL.
std::optional<std::vector<std::string>> split_path(const std::string &encoded);

// MIME type for a file name by extension (m3u8, ts, m4s, mp4, mpd, jpg, vtt, json, ...).
const char *mime_type_for(const std::string &name);

struct ByteRange {
  std::int64_t start = 0, end = 0; // inclusive
};
enum class RangeKind { None, Satisfiable, Unsatisfiable };
// One "bytes=" range (first-last, first-, -suffix) against size. Malformed or multi-range headers are
// treated as None (serve the whole file), as RFC 9110 allows.
RangeKind parse_range(const std::string &header, std::int64_t size, ByteRange &out);

// The contents of recently served small files, kept in memory like nginx's open_file_cache plus the
// data: every use checks the file again (one lstat: inode, size, mtime), so a replaced or rewritten file is
// read again, never served stale. Least recently used entries go first beyond the byte budget.
// One cache per thread (it is not locked).
class FileCache {
public:
  struct Entry {
    std::string path;
    std::uint64_t inode = 0;
    std::int64_t size = 0;
    std::int64_t mtime_ns = 0;
    std::string etag;
    std::string last_modified; // its mtime as an HTTP date
    GBytes *bytes = nullptr;   // owned
    ~Entry();
  };
  explicit FileCache(std::size_t budget_bytes = 64u << 20, std::size_t max_file_bytes = 4u << 20);
  ~FileCache();
  FileCache(const FileCache &) = delete;
  FileCache &operator=(const FileCache &) = delete;

  // The current contents of the regular file at path (not a symlink), or nullptr when it is larger than
  // max_file_bytes. Throws sluice::Error (NotFound, Io).
  std::shared_ptr<const Entry> get(const std::string &path);
  std::size_t bytes() const { return used_; }
  std::size_t entries() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::size_t budget_, max_file_, used_ = 0;
};

// What is served instead of a file when the bytes are elsewhere (an object in storage): its size, validators and
// how its bytes are sent.
struct StreamedObject {
  std::int64_t size = 0;
  std::string etag;               // with its quotes
  std::int64_t last_modified = 0; // Unix seconds, 0 when unknown
  // Sends bytes [offset, offset + length) as the response's body (status and headers are set by then); called at
  // most once, and not for HEAD, 304, 416 or an empty object.
  std::function<void(SoupServerMessage *msg, std::int64_t offset, std::int64_t length)> send;
};

// A text served instead of a file (a rewritten playlist), made once and served as it is: its bytes are sent without
// a copy, its ETag is computed once.
struct ServedText {
  explicit ServedText(std::string text);
  ~ServedText();
  ServedText(const ServedText &) = delete;
  ServedText &operator=(const ServedText &) = delete;
  GBytes *bytes;    // owned
  std::string etag; // "b" and the first half of the text's SHA-256, with its quotes
};

struct ServeOptions {
  std::string cache_control;              // e.g. "no-cache" or "public, max-age=31536000, immutable"
  std::optional<std::string> body;        // serve this text instead of the file's contents (rewritten playlists)
  const ServedText *text = nullptr;       // the same, made beforehand (and kept by the caller while serve_file runs)
  FileCache *cache = nullptr;             // serve small files from (and into) this cache
  const StreamedObject *object = nullptr; // serve this instead of the file (path then names its type only)
  // answer_file only: a file's content as its open descriptor (FileAnswer::fd), neither read nor mapped, for a caller
  // that sends it with sendfile(); the cache is then not used for the file.
  bool descriptor = false;
};

// What answer_file decided, for a caller that writes the response itself.
struct FileAnswer {
  guint status = 0;         // 200, 206, 304 or 416
  std::int64_t offset = 0;  // the bytes of the body: [offset, offset + length) of the content
  std::int64_t length = 0;  // (what Content-Length says; nothing is sent for HEAD and 304)
  GBytes *body = nullptr;   // owned: the whole content, for a GET that sends it from memory
  int fd = -1;              // owned: the file, for a GET that sends it with opts.descriptor
  bool send_object = false; // the body is opts.object's, sent by its `send`
  bool drop_range = false;  // the request's Range was not honoured: the whole representation is the answer
  std::string json;         // 416's body (application/json)
  FileAnswer() = default;
  // The file is the answer: 200, 206 or 304 (not 416, an error).
  bool answered() const {
    return json.empty() &&
           (status == SOUP_STATUS_OK || status == SOUP_STATUS_PARTIAL_CONTENT || status == SOUP_STATUS_NOT_MODIFIED);
  }
  FileAnswer(const FileAnswer &) = delete;
  FileAnswer &operator=(const FileAnswer &) = delete;
  ~FileAnswer();
};

// serve_file's decision without a message: the status, the response headers set on resp (ETag, Last-Modified,
// Cache-Control, Accept-Ranges, Content-Type, Content-Length, Content-Range) and the body, for GET (head false) or
// HEAD with the request headers req. Throws as serve_file does, with resp untouched.
void answer_file(bool head, SoupMessageHeaders *req, SoupMessageHeaders *resp, const std::string &path,
                 const ServeOptions &opts, FileAnswer &out);

// Answers msg (GET or HEAD) with the file at path: 200/206/304/416, Content-Type, Content-Length,
// Accept-Ranges, ETag, Last-Modified, Cache-Control. Zero-copy for file contents (mapped: the file must not
// be truncated while the response is written). Other methods get 405 with Allow: GET, HEAD.
// With opts.body (or opts.text), path only names the content (its MIME type) and need not exist; there is no
// Last-Modified. Throws sluice::Error (NotFound: path missing or not a regular file; Io: unreadable) and then leaves
// msg untouched, for the caller to answer 404/500. Removes a Range request header it decided not to honour, so that
// libsoup (which applies Range to 200 GET responses itself) does not.
void serve_file(SoupServerMessage *msg, const std::string &path, const ServeOptions &opts);

} // namespace sluice::http
