// SPDX-License-Identifier: LGPL-2.1-or-later
// S3Storage's streaming upload: one PUT when it ends within a part, else S3 multipart; parts of written bytes in memory
// (the one being filled and S3Settings::parallel_parts in flight), parts of a file read from it as they are sent.
#include "core/error.h"
#include "core/log.h"
#include "storage/s3_internal.h"

#include <unistd.h>

#include <cerrno>
#include <deque>
#include <future>
#include <string>
#include <utility>
#include <vector>

namespace sluice::storage {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

bool ok(const s3::Response &r) {
  return r.status >= 200 && r.status < 300;
}

std::string initiate(const S3Storage::Impl &impl, const std::string &key, const std::string &content_type) {
  s3::Request req;
  req.method = "POST";
  req.url = impl.object_url(key, s3::canonical_query({{"uploads", ""}}));
  req.has_body = true;
  req.headers.push_back("Content-Type: " + content_type);
  s3::Response r = impl.call(req);
  if (!ok(r))
    s3::throw_error(r, "start of the multipart upload of " + key);
  std::string id = s3::parse_xml(r.body).child_text("UploadId");
  if (id.empty())
    throw Error(ErrorCode::Unavailable, "object storage: no UploadId in the answer to the start of " + key);
  return id;
}

// Part `number`: the bytes in memory, or (fd >= 0) `length` bytes of the file fd from `from`. Its ETag.
std::string put_part(const S3Storage::Impl &impl, const std::string &key, const std::string &upload_id, int number,
                     std::string_view body, int fd, std::int64_t from, std::int64_t length) {
  s3::Request req;
  req.method = "PUT";
  req.url =
      impl.object_url(key, s3::canonical_query({{"partNumber", std::to_string(number)}, {"uploadId", upload_id}}));
  req.body = body;
  req.body_fd = fd;
  req.body_offset = from;
  req.body_size = length;
  req.has_body = true;
  req.unsigned_payload = impl.settings.unsigned_parts;
  s3::Response r = impl.call(req);
  if (!ok(r))
    s3::throw_error(r, "PUT part " + std::to_string(number) + " of " + key);
  auto etag = r.headers.find("etag");
  if (etag == r.headers.end() || etag->second.empty())
    throw Error(ErrorCode::Unavailable,
                "object storage: part " + std::to_string(number) + " of " + key + " was answered without an ETag");
  return etag->second;
}

// Throws when the bucket refuses it (a 404: gone already, is no error).
void abort_upload(const S3Storage::Impl &impl, const std::string &key, const std::string &upload_id,
                  std::size_t parts) {
  s3::Request req;
  req.method = "DELETE";
  req.url = impl.object_url(key, s3::canonical_query({{"uploadId", upload_id}}));
  s3::Response r = impl.call(req);
  if (!ok(r) && r.status != 404)
    s3::throw_error(r, "abort of the multipart upload of " + key);
  SLUICE_LOG(cat(), Info, "aborted the multipart upload of %s (%zu parts sent)", key.c_str(), parts);
}

class S3Upload : public Upload {
public:
  S3Upload(const S3Storage::Impl &impl, std::string key, std::string content_type)
      : impl_(impl), key_(std::move(key)), content_type_(std::move(content_type)) {}
  // Going on with a multipart upload that has `parts` already.
  S3Upload(const S3Storage::Impl &impl, std::string key, std::string content_type, std::string upload_id,
           const std::vector<Part> &parts)
      : S3Upload(impl, std::move(key), std::move(content_type)) {
    upload_id_ = std::move(upload_id);
    for (const auto &p : parts) {
      etags_.push_back(p.etag);
      size_ += p.size;
    }
  }
  ~S3Upload() override {
    if (!done_)
      abort();
  }

  void write(const void *data, std::size_t size) override {
    if (done_)
      throw Error(ErrorCode::Internal, "write to a finished upload of " + key_);
    const char *p = static_cast<const char *>(data);
    try {
      in_memory();
      while (size > 0) {
        if (part_.size() == impl_.settings.part_size)
          send_part(); // only once more bytes come: a last part that is exactly full is sent by finish()
        std::size_t n = std::min(impl_.settings.part_size - part_.size(), size);
        part_.append(p, n);
        p += n;
        size -= n;
        size_ += static_cast<std::int64_t>(n);
      }
    } catch (...) {
      abort();
      throw;
    }
  }

  void write_file_range(int fd, std::int64_t offset, std::int64_t size) override {
    // Bytes that follow the part's in the same file: the part stays a range of the file, read as it is sent.
    if (!part_.empty() || (file_fd_ >= 0 && (fd != file_fd_ || offset != file_start_ + file_len_)))
      return Upload::write_file_range(fd, offset, size);
    if (done_)
      throw Error(ErrorCode::Internal, "write to a finished upload of " + key_);
    const auto part_size = static_cast<std::int64_t>(impl_.settings.part_size);
    try {
      if (file_fd_ < 0) {
        file_fd_ = fd;
        file_start_ = offset;
      }
      while (size > 0) {
        if (file_len_ == part_size)
          send_part(); // only once more bytes come, as in write()
        std::int64_t n = std::min(part_size - file_len_, size);
        file_len_ += n;
        size -= n;
        size_ += n;
      }
    } catch (...) {
      abort();
      throw;
    }
  }

  ObjectInfo finish() override {
    if (done_)
      throw Error(ErrorCode::Internal, "upload of " + key_ + " already ended");
    try {
      ObjectInfo info{key_, size_, {}, static_cast<std::int64_t>(time(nullptr))};
      if (upload_id_.empty()) { // it fit in one part: a plain PUT
        s3::Request req;
        req.method = "PUT";
        req.url = impl_.object_url(key_);
        req.body = part_;
        req.body_fd = file_len_ > 0 ? file_fd_ : -1;
        req.body_offset = file_start_;
        req.body_size = file_len_;
        req.has_body = true;
        req.headers.push_back("Content-Type: " + content_type_);
        s3::Response r = impl_.call(req);
        if (!ok(r))
          s3::throw_error(r, "PUT " + key_);
        info.etag = r.headers["etag"];
      } else {
        // A resumed upload may have nothing after its parts.
        if (file_len_ > 0 || !part_.empty() || etags_.empty())
          send_part();
        while (!inflight_.empty())
          wait_part();
        info.etag = complete();
      }
      done_ = true;
      part_ = std::string();
      return info;
    } catch (...) {
      abort();
      throw;
    }
  }

  void abort() noexcept override {
    if (done_)
      return;
    done_ = true;
    part_ = std::string();
    try {
      for (auto &f : inflight_)
        f.second.wait();
      inflight_.clear();
      if (upload_id_.empty())
        return;
      abort_upload(impl_, key_, upload_id_, etags_.size());
    } catch (const std::exception &e) {
      // The parts stay until the bucket's lifecycle rule for incomplete uploads removes them; no object appears.
      SLUICE_LOG(cat(), Warning, "%s", e.what());
    }
  }

private:
  // Hands the full part to a thread of its own (a connection of its own); waits first for the oldest one in flight
  // when as many as parallel_parts are, so that the parts in memory stay bounded.
  void send_part() {
    while (static_cast<int>(inflight_.size()) >= std::max(1, impl_.settings.parallel_parts))
      wait_part();
    if (upload_id_.empty())
      initiate();
    int number = static_cast<int>(etags_.size()) + 1;
    if (number > 10000)
      throw Error(ErrorCode::Invalid, "upload of " + key_ + " needs more than 10,000 parts: raise the part size");
    etags_.emplace_back();
    // A part of a file is read from it as it is sent (nothing of it held here); one written is moved to the thread.
    const int fd = file_len_ > 0 ? file_fd_ : -1;
    const std::int64_t from = file_start_, length = file_len_;
    file_start_ += file_len_;
    file_len_ = 0;
    auto sent = std::async(std::launch::async, [this, number, body = std::move(part_), fd, from, length]() {
      return put_part(impl_, key_, upload_id_, number, body, fd, from, length);
    });
    inflight_.emplace_back(number, std::move(sent));
    part_ = std::string();
  }

  // write() after write_file_range(): the file's bytes of the part are read into memory, where the written ones follow.
  void in_memory() {
    if (file_len_ == 0)
      return;
    part_.resize(static_cast<std::size_t>(file_len_));
    std::size_t at = 0;
    while (at < part_.size()) {
      ssize_t got = pread(file_fd_, part_.data() + at, part_.size() - at, file_start_ + static_cast<std::int64_t>(at));
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        throw Error(ErrorCode::Io, "cannot read the file being uploaded to " + key_);
      at += static_cast<std::size_t>(got);
    }
    file_start_ += file_len_;
    file_len_ = 0;
    file_fd_ = -1;
  }

  // The oldest part in flight: its ETag recorded, or its error thrown.
  void wait_part() {
    if (inflight_.empty())
      return;
    auto [number, sent] = std::move(inflight_.front());
    inflight_.pop_front();
    etags_[static_cast<std::size_t>(number) - 1] = sent.get();
  }

  void initiate() { upload_id_ = sluice::storage::initiate(impl_, key_, content_type_); }

  std::string complete() {
    std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>";
    for (std::size_t i = 0; i < etags_.size(); i++)
      body += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + s3::xml_escape(etags_[i]) +
              "</ETag></Part>";
    body += "</CompleteMultipartUpload>";
    s3::Request req;
    req.method = "POST";
    req.url = impl_.object_url(key_, s3::canonical_query({{"uploadId", upload_id_}}));
    req.body = body;
    req.has_body = true;
    req.headers.push_back("Content-Type: application/xml");
    s3::Response r = impl_.call(req);
    if (!ok(r))
      s3::throw_error(r, "completion of the multipart upload of " + key_);
    // S3 may answer 200 and then an <Error> document when the completion fails late.
    s3::XmlNode doc = s3::parse_xml(r.body);
    if (doc.name == "Error")
      s3::throw_error(s3::Response{500, r.body, {}}, "completion of the multipart upload of " + key_);
    SLUICE_LOG(cat(), Info, "uploaded %s in %zu parts (%" G_GINT64_FORMAT " bytes)", key_.c_str(), etags_.size(),
               static_cast<gint64>(size_));
    return doc.child_text("ETag");
  }

  const S3Storage::Impl &impl_;
  std::string key_;
  std::string content_type_;
  std::string part_; // the part being made, in memory (write())
  int file_fd_ = -1; // or a range of this file (write_file_range())
  std::int64_t file_start_ = 0, file_len_ = 0;
  std::string upload_id_;
  std::vector<std::string> etags_;
  std::deque<std::pair<int, std::future<std::string>>> inflight_; // part number, its ETag to come
  std::int64_t size_ = 0;
  bool done_ = false;
};

} // namespace

std::int64_t S3Storage::part_size() const {
  return static_cast<std::int64_t>(impl_->settings.part_size);
}

std::string S3Storage::begin(const std::string &key, const std::string &content_type) {
  check_key(key);
  return initiate(*impl_, key, content_type);
}

std::string S3Storage::put_part(const std::string &key, const std::string &upload_id, int number, int fd,
                                std::int64_t offset, std::int64_t size) {
  check_key(key);
  if (number < 1 || number > 10000)
    throw Error(ErrorCode::Invalid, "upload of " + key + ": part numbers go from 1 to 10,000");
  return sluice::storage::put_part(*impl_, key, upload_id, number, {}, fd, offset, size);
}

std::unique_ptr<Upload> S3Storage::resume(const std::string &key, const std::string &upload_id,
                                          const std::vector<Part> &parts, const std::string &content_type) {
  check_key(key);
  return std::make_unique<S3Upload>(*impl_, key, content_type, upload_id, parts);
}

void S3Storage::abort(const std::string &key, const std::string &upload_id) {
  check_key(key);
  abort_upload(*impl_, key, upload_id, 0);
}

std::unique_ptr<Upload> make_s3_upload(const S3Storage::Impl &impl, const std::string &key,
                                       const std::string &content_type) {
  return std::make_unique<S3Upload>(impl, key, content_type);
}

} // namespace sluice::storage
