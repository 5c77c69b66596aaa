// SPDX-License-Identifier: LGPL-2.1-or-later
// Receiving an upload: the request body streamed chunk by chunk into a temporary file, never into memory.
#pragma once

#include "http/multipart.h"
#include "jobs/source_upload.h"
#include "storage/storage.h"

#include <libsoup/soup.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace sluice::http {

struct UploadError {
  guint status;
  std::string code;
  std::string message;
  std::string field;
};

// One upload in progress. It owns its temporary file: unless keep() was called, the file is removed
// when the Upload is destroyed (the request finished, failed, or the client went away). With a storage, the file is
// also streamed to it as it arrives (jobs::SourceUpload, from its first byte, under a video id picked then): a
// failed, refused or discarded upload abandons that too, and nothing is left in the bucket.
class Upload {
public:
  enum class Kind { Raw, Multipart };

  // Decides from the request headers whether the body can be accepted; throws UploadError (413, 415,
  // 400). tmp_dir receives the temporary file; storage (nullptr: none) the file's bytes as they arrive.
  Upload(SoupServerMessage *msg, const std::string &tmp_dir, std::int64_t max_size,
         storage::Storage *storage = nullptr);
  ~Upload();
  Upload(const Upload &) = delete;
  Upload &operator=(const Upload &) = delete;

  // Installs the streaming of msg's body into this upload; the Upload lives as long as msg.
  static void attach(SoupServerMessage *msg, std::shared_ptr<Upload> upload);
  static std::shared_ptr<Upload> from(SoupServerMessage *msg);

  // The whole body has arrived: closes the file and checks the multipart framing.
  // Returns the error that ended the upload, if any.
  std::optional<UploadError> finish();

  const std::string &path() const { return path_; }
  std::int64_t bytes() const { return file_bytes_; }
  // Text fields of a multipart form, or the query parameters of a raw upload.
  const std::map<std::string, std::string> &fields() const { return fields_; }
  const std::string &filename() const { return filename_; }
  // The upload to the storage that follows the file (nullptr: none, or it could not start), and the video id its
  // key was made for ("" without one).
  std::shared_ptr<jobs::SourceUpload> streamed() const { return streamed_; }
  std::string video_id() const { return streamed_ ? streamed_->video_id() : std::string(); }
  // Moves the temporary file to dest (same file system) and stops owning it.
  void keep(const std::string &dest);
  // Removes the temporary file now.
  void discard();
  // Ends the upload with err (a rate limit's refusal): its file is removed now, the rest of the body is read and
  // dropped, and finish() returns err.
  void refuse(UploadError err) { fail(std::move(err)); }

private:
  void on_chunk(const char *data, std::size_t len);
  void write_file(const char *data, std::size_t len);
  void start_streaming();
  void fail(UploadError err);

  Kind kind_ = Kind::Raw;
  std::string path_;
  int fd_ = -1;
  std::int64_t max_size_ = 0;
  std::int64_t body_bytes_ = 0, file_bytes_ = 0;
  std::unique_ptr<MultipartParser> parser_;
  bool in_file_part_ = false, seen_file_ = false;
  std::string field_name_;
  std::map<std::string, std::string> fields_;
  std::size_t field_bytes_ = 0; // of all text fields together
  std::string filename_;
  std::optional<UploadError> error_;
  bool body_complete_ = false;
  storage::Storage *storage_ = nullptr;
  std::shared_ptr<jobs::SourceUpload> streamed_;
};

} // namespace sluice::http
