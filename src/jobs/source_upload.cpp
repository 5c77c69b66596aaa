// SPDX-License-Identifier: LGPL-2.1-or-later
// A source's upload to object storage that follows its local file while the file is still being received.
#include "jobs/source_upload.h"

#include "core/error.h"
#include "core/log.h"
#include "jobs/stored.h"

#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace sluice::jobs {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

// What the thread hands the storage at a time; it wakes when this much more has been written (or the file is whole).
constexpr std::int64_t kChunk = 1 << 20;

enum class Phase { Running, Complete, Failed, Gone };

} // namespace

struct SourceUpload::State {
  State(storage::Storage &s, std::string k, std::string v, int f)
      : storage(s), key(std::move(k)), video_id(std::move(v)), fd(f) {}
  storage::Storage &storage;
  const std::string key, video_id;
  const int fd; // the thread's own, closed by it

  std::mutex mu;
  std::condition_variable cv;
  std::int64_t written = 0;  // what the receiver has written
  std::int64_t woken_at = 0; // written when the thread was last woken
  std::int64_t total = -1;   // the whole file's size, once it is known
  std::atomic<bool> abandoned{false};
  bool kept = false;
  Phase phase = Phase::Running;
  std::string failure;                      // why, when Failed or Gone
  std::unique_ptr<storage::Upload> resumed; // the upload to go on with (taken by the thread), and where
  std::int64_t from = 0;
};

namespace {

void remove_object(const std::shared_ptr<SourceUpload::State> &s) {
  try {
    s->storage.remove(s->key);
    SLUICE_LOG(cat(), Info, "video %s: %s removed (the upload was not kept)", s->video_id.c_str(), s->key.c_str());
  } catch (const std::exception &e) {
    SLUICE_LOG(cat(), Warning, "video %s: cannot remove %s: %s", s->video_id.c_str(), s->key.c_str(), e.what());
  }
}

void run(std::shared_ptr<SourceUpload::State> s) {
  std::string failure;
  bool complete = false;
  try {
    std::unique_ptr<storage::Upload> up =
        s->resumed ? std::move(s->resumed) : s->storage.begin_upload(s->key, storage::content_type_for(s->key));
    std::int64_t offset = s->from;
    while (!s->abandoned) {
      std::int64_t until = 0;
      bool whole = false;
      {
        std::unique_lock lock(s->mu);
        s->cv.wait(lock, [&] { return s->abandoned || s->total >= 0 || s->written - offset >= kChunk; });
        whole = s->total >= 0;
        until = whole ? s->total : s->written;
      }
      // The bytes stay in the file, which is only appended to: the storage reads its parts from there as it sends
      // them (S3: nothing of them in memory). write_file_range() blocks while as many parts as the storage sends at
      // once are in flight: what arrives meanwhile waits on the disk, not here.
      while (offset < until && !s->abandoned) {
        std::int64_t n = std::min(kChunk, until - offset);
        up->write_file_range(s->fd, offset, n);
        offset += n;
      }
      if (whole && !s->abandoned) {
        up->finish();
        complete = true;
        break;
      }
    }
    if (!complete)
      up->abort();
  } catch (const std::exception &e) {
    // The storage::Upload aborted itself (or its destructor did): no object, no parts.
    failure = e.what();
    SLUICE_LOG(cat(), Warning, "video %s: the upload to %s failed: %s", s->video_id.c_str(), s->key.c_str(), e.what());
  }
  close(s->fd);
  bool remove = false;
  {
    std::lock_guard lock(s->mu);
    if (complete && !s->abandoned) {
      s->phase = Phase::Complete;
    } else {
      s->phase = failure.empty() ? Phase::Gone : Phase::Failed;
      if (s->failure.empty())
        s->failure = failure;
      remove = complete; // abandoned while its completion was on the way
    }
  }
  s->cv.notify_all();
  if (remove)
    remove_object(s);
}

} // namespace

std::shared_ptr<SourceUpload> SourceUpload::start(storage::Storage &storage, const std::string &path,
                                                  const std::string &video_id, const std::string &ext) {
  return start(storage, path, video_id, ext, nullptr, 0);
}

std::shared_ptr<SourceUpload> SourceUpload::start(storage::Storage &storage, const std::string &path,
                                                  const std::string &video_id, const std::string &ext,
                                                  std::unique_ptr<storage::Upload> resumed, std::int64_t from) {
  int fd = g_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot read the upload back: " + std::string(g_strerror(errno)));
  std::shared_ptr<SourceUpload> up(new SourceUpload());
  up->video_id_ = video_id;
  up->key_ = source_key(video_id, ext);
  up->state_ = std::make_shared<State>(storage, up->key_, video_id, fd);
  up->state_->resumed = std::move(resumed);
  up->state_->from = from;
  try {
    std::thread(run, up->state_).detach();
  } catch (const std::system_error &e) {
    close(fd);
    throw Error(ErrorCode::Io, std::string("cannot start the upload to storage: ") + e.what());
  }
  SLUICE_LOG(cat(), Debug, "video %s: streaming the upload to %s", video_id.c_str(), up->key_.c_str());
  return up;
}

SourceUpload::~SourceUpload() {
  if (state_)
    abandon("the upload was dropped");
}

void SourceUpload::grew(std::int64_t bytes) {
  bool wake = false;
  {
    std::lock_guard lock(state_->mu);
    state_->written = bytes;
    // Woken once a chunk's worth more is in, not for every piece the connection hands over.
    if (bytes - state_->woken_at >= kChunk) {
      state_->woken_at = bytes;
      wake = true;
    }
  }
  if (wake)
    state_->cv.notify_all();
}

void SourceUpload::finish(std::int64_t bytes) {
  {
    std::lock_guard lock(state_->mu);
    state_->written = bytes;
    state_->total = bytes;
  }
  state_->cv.notify_all();
}

void SourceUpload::wait() {
  std::unique_lock lock(state_->mu);
  state_->cv.wait(lock, [this] { return state_->phase != Phase::Running; });
  if (state_->phase != Phase::Complete)
    throw Error(ErrorCode::Unavailable, "the upload to object storage did not complete: " + state_->failure);
}

void SourceUpload::keep() {
  std::lock_guard lock(state_->mu);
  state_->kept = true;
}

void SourceUpload::abandon(const std::string &why) {
  bool remove = false;
  {
    std::lock_guard lock(state_->mu);
    if (state_->kept || state_->abandoned)
      return;
    state_->abandoned = true;
    if (state_->failure.empty())
      state_->failure = why;
    if (state_->phase == Phase::Complete) {
      state_->phase = Phase::Gone;
      remove = true;
    }
  }
  state_->cv.notify_all();
  SLUICE_LOG(cat(), Info, "video %s: the upload to %s is abandoned: %s", video_id_.c_str(), key_.c_str(), why.c_str());
  if (!remove)
    return; // the thread aborts the multipart upload
  try {
    std::thread([s = state_] { remove_object(s); }).detach();
  } catch (const std::system_error &e) {
    SLUICE_LOG(cat(), Warning, "video %s: cannot start a thread to remove %s: %s", video_id_.c_str(), key_.c_str(),
               e.what());
  }
}

} // namespace sluice::jobs
