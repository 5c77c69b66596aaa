// SPDX-License-Identifier: LGPL-2.1-or-later
// S3Storage: objects in an S3-compatible bucket (path-style URLs, SigV4 by libcurl, multipart uploads).
#pragma once

#include "storage/storage.h"

#include <cstddef>
#include <string>

namespace sluice::storage {

struct S3Settings {
  std::string bucket;
  std::string prefix;   // "" or a key prefix ending in '/', put before every key
  std::string endpoint; // scheme://host[:port], no path: http://127.0.0.1:9000, https://s3.eu-west-1.amazonaws.com
  std::string region;
  std::string access_key;
  std::string secret_key;
  // An object up to this size goes in one PUT; a larger one in multipart parts of part_size bytes (S3: at least
  // 5 MiB, at most 10,000 parts).
  std::size_t part_size = 8u << 20;
  // Parts sent at once, each on a connection of its own. Parts written as bytes are held in memory, the one being
  // filled and those in flight; parts of a file (Upload::write_file_range) are read from it as they are sent. One:
  // two did not upload a source faster to the S3 double (tools/bench upload --s3), whose one node process is the
  // bottleneck there.
  int parallel_parts = 1;
  // Part bodies sent with x-amz-content-sha256: UNSIGNED-PAYLOAD (S3 takes it; the signature covers the request, not
  // the part's bytes) rather than their SHA-256, which took reading every part twice (1.4x faster uploads to the S3
  // double). A one-PUT object is hashed still.
  bool unsigned_parts = true;
};

class S3Storage : public Storage, public Multipart {
public:
  explicit S3Storage(S3Settings settings); // throws Invalid for settings S3 cannot take
  ~S3Storage() override;

  std::string describe() const override;
  ObjectInfo put_file(const std::string &key, const std::string &path, const std::string &content_type) override;
  ObjectInfo put_bytes(const std::string &key, std::string_view bytes, const std::string &content_type) override;
  std::unique_ptr<Upload> begin_upload(const std::string &key, const std::string &content_type) override;
  void get_file(const std::string &key, const std::string &path) override;
  void get_range(const std::string &key, std::int64_t offset, std::int64_t length, const Sink &sink) override;
  std::optional<ObjectInfo> head(const std::string &key) override;
  void remove(const std::string &key) override;
  std::size_t remove_prefix(const std::string &prefix) override;
  std::vector<ObjectInfo> list(const std::string &prefix) override;
  std::string presign_get(const std::string &key, std::chrono::seconds ttl) override;
  Multipart *multipart() override { return this; }

  // Multipart (s3_upload.cpp).
  std::int64_t part_size() const override;
  std::string begin(const std::string &key, const std::string &content_type) override;
  std::string put_part(const std::string &key, const std::string &upload_id, int number, int fd, std::int64_t offset,
                       std::int64_t size) override;
  std::unique_ptr<Upload> resume(const std::string &key, const std::string &upload_id, const std::vector<Part> &parts,
                                 const std::string &content_type) override;
  void abort(const std::string &key, const std::string &upload_id) override;

  // What the multipart upload needs of the storage (s3_upload.cpp).
  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace sluice::storage
