// SPDX-License-Identifier: LGPL-2.1-or-later
// A source's upload to object storage that follows its local file while the file is still being received.
#pragma once

#include "storage/storage.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::jobs {

// The upload of a video's source (jobs::source_key) that runs beside the receiving of its file: a thread reads what
// has been written so far and hands it to a streaming storage::Upload (S3: multipart parts of 8 MiB, a bounded number
// in memory), so that once the last byte is in only the last part and the completion remain. Every method but
// wait() returns at once (the main loop calls them); the storage must outlive every SourceUpload.
class SourceUpload {
public:
  // Opens `path` for reading (the receiver writes it) and starts the thread. Throws sluice::Error (Io) when the file
  // cannot be opened or the thread cannot start.
  static std::shared_ptr<SourceUpload> start(storage::Storage &storage, const std::string &path,
                                             const std::string &video_id, const std::string &ext);
  // The same, going on with `resumed` (a multipart upload whose parts hold the file's first `from` bytes: a resumable
  // upload's, storage::Multipart::resume): the file's bytes from `from` on become its next parts.
  static std::shared_ptr<SourceUpload> start(storage::Storage &storage, const std::string &path,
                                             const std::string &video_id, const std::string &ext,
                                             std::unique_ptr<storage::Upload> resumed, std::int64_t from);
  ~SourceUpload();
  SourceUpload(const SourceUpload &) = delete;
  SourceUpload &operator=(const SourceUpload &) = delete;

  const std::string &video_id() const { return video_id_; }
  const std::string &key() const { return key_; }

  // The file now holds `bytes` bytes, all written (the receiver's count).
  void grew(std::int64_t bytes);
  // The file is whole at `bytes`: the thread sends the rest and completes the object.
  void finish(std::int64_t bytes);
  // Off the main loop: blocks until the object is complete. Throws sluice::Error (Unavailable) when the upload
  // failed or was abandoned; nothing is left in the bucket then.
  void wait();
  // The object is the video's source now (its row is written): abandon() no longer removes it.
  void keep();
  // Nothing of this upload stays in the bucket: the multipart upload is aborted, or the object removed when it was
  // complete already. Done by the thread (or one started for it); a kept upload is left alone.
  void abandon(const std::string &why);

  struct State; // shared with the thread

private:
  SourceUpload() = default;
  std::string video_id_, key_;
  std::shared_ptr<State> state_;
};

} // namespace sluice::jobs
