// SPDX-License-Identifier: LGPL-2.1-or-later
// Object storage behind one interface: files as keys under a root, in a local folder or an S3-compatible bucket.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::storage {

// What head() and list() say about one object.
struct ObjectInfo {
  std::string key;                // relative to the storage's root, e.g. "videos/ID/hls/720p/seg-00001.ts"
  std::int64_t size = 0;          // bytes
  std::string etag;               // as the backend spells it, with its quotes ("\"...\"")
  std::int64_t last_modified = 0; // Unix seconds
};

// A streaming upload: write() as the bytes arrive, then finish() (the object appears whole) or abort() (nothing
// appears). Memory stays bounded: an S3 upload holds at most the part being filled and those in flight of what was
// written, nothing of a file's ranges. Destroying an Upload that was neither finished nor aborted aborts it.
class Upload {
public:
  virtual ~Upload() = default;
  // Throws when an earlier part failed to upload (the upload is aborted then).
  virtual void write(const void *data, std::size_t size) = 0;
  // The next `size` bytes are those of the open file fd at `offset`, which stay there unchanged until finish() or
  // abort() returns: a backend may send them from the file instead of holding them in memory (S3: the parts are read
  // from the file as they are sent). This one reads them and write()s them. Throws Io when the file cannot be read.
  virtual void write_file_range(int fd, std::int64_t offset, std::int64_t size);
  virtual ObjectInfo finish() = 0;
  // Never throws; what the backend refuses is logged.
  virtual void abort() noexcept = 0;
};

// A part of a multipart upload (part i + 1 of a list).
struct Part {
  std::int64_t size = 0;
  std::string etag;
};

// Multipart uploads that outlive the process that began them (a resumable upload's, sent part by part as it arrives
// and finished by whichever process gets its last byte): each call stands alone, the upload's id and parts kept by the
// caller. Every method blocks and throws as Storage's do.
class Multipart {
public:
  virtual ~Multipart() = default;
  virtual std::int64_t part_size() const = 0; // every part's but the last
  // Starts one for key; its upload id.
  virtual std::string begin(const std::string &key, const std::string &content_type) = 0;
  // Part `number` (from 1): `size` bytes of the file fd from offset, read as they are sent. Its ETag.
  virtual std::string put_part(const std::string &key, const std::string &upload_id, int number, int fd,
                               std::int64_t offset, std::int64_t size) = 0;
  // The Upload that goes on after `parts` (its writes become the next parts; finish() completes the object).
  virtual std::unique_ptr<Upload> resume(const std::string &key, const std::string &upload_id,
                                         const std::vector<Part> &parts, const std::string &content_type) = 0;
  // No error when it is gone already.
  virtual void abort(const std::string &key, const std::string &upload_id) = 0;
};

// Receives a ranged get's bytes as they arrive.
using Sink = std::function<void(const char *data, std::size_t size)>;

// Every method blocks (call it off the main loop) and throws sluice::Error: NotFound for a missing key, Invalid for a
// key that is not a clean relative path, Io or Unavailable for a backend that failed. Keys are '/'-separated
// relative paths whose segments are fs::safe_segment()s.
class Storage {
public:
  virtual ~Storage() = default;

  // The storage as it may appear in messages and logs (never a secret): "file:///srv/data", "s3://bucket/prefix".
  virtual std::string describe() const = 0;

  // Stores the local file at path under key, replacing any object there; read in bounded parts.
  virtual ObjectInfo put_file(const std::string &key, const std::string &path,
                              const std::string &content_type = "") = 0;
  virtual ObjectInfo put_bytes(const std::string &key, std::string_view bytes,
                               const std::string &content_type = "") = 0;
  virtual std::unique_ptr<Upload> begin_upload(const std::string &key, const std::string &content_type = "") = 0;

  // Writes the object to path (through a temporary name: path is whole or untouched).
  virtual void get_file(const std::string &key, const std::string &path) = 0;
  // Bytes [offset, offset + length) of the object (length -1: to its end), handed to sink as they arrive.
  virtual void get_range(const std::string &key, std::int64_t offset, std::int64_t length, const Sink &sink) = 0;
  // nullopt when there is no such object.
  virtual std::optional<ObjectInfo> head(const std::string &key) = 0;

  // No error when the key does not exist.
  virtual void remove(const std::string &key) = 0;
  // Removes every object whose key starts with prefix ("videos/ID/"); returns how many.
  virtual std::size_t remove_prefix(const std::string &prefix) = 0;
  // Every object whose key starts with prefix, sorted by key.
  virtual std::vector<ObjectInfo> list(const std::string &prefix) = 0;

  // A URL that GETs the object without credentials for ttl (S3: a presigned URL). Throws Unavailable where the
  // backend has no such URLs (a local folder).
  virtual std::string presign_get(const std::string &key, std::chrono::seconds ttl) = 0;

  // Multipart uploads that outlive a process, or nullptr where the backend has none (a local folder).
  virtual Multipart *multipart() { return nullptr; }
};

// Checks a key (every segment safe, not empty, no leading or doubled '/'); throws Invalid naming it.
void check_key(std::string_view key);
// Checks a prefix: "" or a key's beginning (its last segment may be partial or empty, as in "videos/ID/").
void check_prefix(std::string_view prefix);

// A file's Content-Type from its name (.m3u8, .mpd, .ts, .m4s, .mp4, .jpg, .json, .vtt...), else
// application/octet-stream.
std::string content_type_for(std::string_view key);

} // namespace sluice::storage
