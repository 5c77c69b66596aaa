// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload's tus 1.0.0 upload: POST a new upload, HEAD its offset, PATCH checksummed chunks, resume.
#include "cli/upload_internal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace sluice::cli::upload_detail {

namespace {

constexpr const char *kTusVersion = "1.0.0";

Headers tus(Headers h = {}) {
  h.emplace_back("Tus-Resumable", kTusVersion);
  return h;
}

} // namespace

Uploader::~Uploader() {
  if (fd_ >= 0)
    close(fd_);
}

void Uploader::report_interrupted() const {
  if (url_.empty())
    std::fprintf(stderr, "sluice: interrupted before the upload was created\n");
  else if (!offset_known_)
    std::fprintf(stderr, "sluice: interrupted; run the same command again to resume\n");
  else
    std::fprintf(stderr, "sluice: interrupted: %s of %s are on the server; run the same command again to resume\n",
                 format_bytes(offset_).c_str(), format_bytes(size_).c_str());
}

std::string Uploader::resume_hint() const {
  return format_bytes(offset_) + " of " + format_bytes(size_) +
         " are on the server: run the same command again to resume";
}

void Uploader::open_file() {
  const std::string &file = c_.o.file;
  fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw Exit(kExitFailed, "cannot open " + file + ": " + g_strerror(errno));
  if (fstat(fd_, &st_) != 0)
    throw Exit(kExitFailed, "cannot read " + file + ": " + g_strerror(errno));
  if (!S_ISREG(st_.st_mode))
    throw Exit(kExitFailed, file + " is not a regular file");
  if (st_.st_size == 0)
    throw Exit(kExitFailed, file + " is empty");
  size_ = static_cast<std::uint64_t>(st_.st_size);
}

void Uploader::check_unchanged() {
  struct stat now {};
  if (fstat(fd_, &now) != 0 || now.st_size != st_.st_size || now.st_mtim.tv_sec != st_.st_mtim.tv_sec ||
      now.st_mtim.tv_nsec != st_.st_mtim.tv_nsec)
    throw Exit(kExitFailed, c_.o.file + " changed while it was being uploaded; run again to upload it anew");
}

void Uploader::read_chunk(std::uint64_t offset, std::size_t len) {
  buffer_.resize(len);
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd_, buffer_.data() + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      throw Exit(kExitFailed, "cannot read " + c_.o.file + ": " + (n < 0 ? g_strerror(errno) : "it got shorter"));
    done += static_cast<std::size_t>(n);
  }
}

std::string Uploader::metadata() const {
  g_autofree gchar *name = g_path_get_basename(c_.o.file.c_str());
  std::string m = "filename " + base64(name);
  if (!c_.o.title.empty())
    m += ",title " + base64(c_.o.title);
  if (!c_.o.pipeline.empty())
    m += ",pipeline " + base64(c_.o.pipeline);
  return m;
}

std::string Uploader::create() {
  const std::string endpoint = c_.http.resolve("api/v1/uploads");
  for (;;) {
    g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
    auto r = c_.http.request("POST", endpoint,
                             tus({{"Upload-Length", std::to_string(size_)}, {"Upload-Metadata", metadata()}}), empty,
                             nullptr);
    if (!r) {
      c_.backoff.failed(c_.lost("while creating the upload"), "nothing was uploaded");
      continue;
    }
    if (r->status == SOUP_STATUS_CREATED) {
      c_.backoff.succeeded();
      std::string location = r->header("Location");
      if (location.empty())
        throw Exit(kExitFailed, "the server created the upload but did not say where it is (no Location)");
      return c_.http.resolve(location);
    }
    if (transient(r->status)) {
      c_.backoff.failed("the server could not create the upload (" + r->describe() + ")", "nothing was uploaded",
                        retry_after(*r));
      continue;
    }
    c_.refused(*r, "the server refused the upload");
  }
}

std::optional<std::uint64_t> Uploader::head(const std::string &url) {
  for (;;) {
    auto r = c_.http.request("HEAD", url, tus());
    if (!r) {
      c_.backoff.failed(c_.lost("while asking for the upload's offset"), resume_hint());
      continue;
    }
    if (r->status == SOUP_STATUS_NOT_FOUND || r->status == SOUP_STATUS_GONE)
      return std::nullopt;
    if (transient(r->status)) {
      c_.backoff.failed("the server could not say the upload's offset (" + r->describe() + ")", resume_hint(),
                        retry_after(*r));
      continue;
    }
    if (r->status != SOUP_STATUS_OK)
      c_.refused(*r, "the server refused to say the upload's offset");
    c_.backoff.succeeded();
    std::uint64_t offset = 0, length = 0;
    if (!parse_offset(r->header("Upload-Offset"), offset))
      throw Exit(kExitFailed, "the server's answer has no Upload-Offset: it does not speak tus 1.0.0");
    if (!parse_offset(r->header("Upload-Length"), length) || length != size_ || offset > size_)
      return std::nullopt;
    return offset;
  }
}

std::string Uploader::video_of(const std::string &url) {
  for (int polls = 0;; polls++) {
    auto r = c_.http.request("GET", url, tus({{"Accept", "application/json"}}));
    if (!r) {
      c_.backoff.failed(c_.lost("while asking what the upload became"), "");
      continue;
    }
    if (transient(r->status)) {
      c_.backoff.failed("the server could not say what the upload became (" + r->describe() + ")", "", retry_after(*r));
      continue;
    }
    c_.backoff.succeeded();
    json::Node n = r->status == SOUP_STATUS_OK ? r->json() : nullptr;
    if (!n) {
      if (r->status == SOUP_STATUS_OK || r->status == SOUP_STATUS_NOT_FOUND ||
          r->status == SOUP_STATUS_METHOD_NOT_ALLOWED)
        throw Exit(kExitFailed,
                   "the upload is complete, but the server does not say which video it became (" + r->describe() + ")");
      c_.refused(*r, "the server refused to say what the upload became");
    }
    JsonObject *o = json_node_get_object(n.get());
    const std::string state = string_member(o, "state", "");
    JsonNode *vid = json_object_get_member(o, "video_id");
    if (vid && JSON_NODE_HOLDS_VALUE(vid) && json_node_get_value_type(vid) == G_TYPE_STRING)
      return json_node_get_string(vid);
    if (state == "failed") {
      std::string message = "the server refused the file";
      JsonNode *e = json_object_get_member(o, "error");
      if (e && JSON_NODE_HOLDS_OBJECT(e))
        message +=
            std::string(": ") + printable(string_member(json_node_get_object(e), "message", "(no reason given)"));
      remembered_->forget();
      throw Exit(kExitFailed, message);
    }
    if (polls >= 600)
      throw Exit(kExitUnreachable, "the upload is complete, but the server is still processing it after 10 minutes");
    c_.http.sleep(1);
  }
}

void Uploader::begin(const std::string &name) {
  bool fresh = true;
  url_ = remembered_->url();
  if (!url_.empty()) {
    if (auto off = head(url_)) {
      offset_ = *off;
      offset_known_ = true;
      fresh = false;
      c_.progress.note("resuming the upload of " + name + " at " + format_bytes(offset_) + " of " +
                       format_bytes(size_) + " (" + url_ + ")");
    } else {
      c_.progress.note("the server no longer has the earlier upload of " + name + ": starting over");
      remembered_->forget();
      remembered_->open();
      url_.clear();
    }
  }
  if (fresh) {
    url_ = create();
    remembered_->remember(url_);
    offset_ = 0;
    offset_known_ = true;
    c_.progress.note("uploading " + name + " (" + format_bytes(size_) + ") to " + url_);
  }
}

void Uploader::resync(int &restarts) {
  auto off = head(url_);
  if (!off) {
    // Expired or removed while it was being sent: once, a new upload from the start.
    if (restarts++ > 0)
      throw Exit(kExitFailed, "the server dropped the upload twice while it was being sent");
    c_.progress.note("the server no longer has the upload: starting over");
    offset_ = 0;
    url_ = create();
    remembered_->remember(url_);
    off = 0;
  }
  offset_ = *off;
  c_.progress.at(offset_);
}

bool Uploader::send_chunk(GChecksum *sum, bool &synced, std::string &video) {
  const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(c_.o.chunk, size_ - offset_));
  check_unchanged();
  read_chunk(offset_, len);
  g_checksum_reset(sum);
  g_checksum_update(sum, reinterpret_cast<const guchar *>(buffer_.data()), static_cast<gssize>(len));
  guint8 digest[32];
  gsize digest_len = sizeof digest;
  g_checksum_get_digest(sum, digest, &digest_len);
  g_autoptr(GBytes) body = g_bytes_new_static(buffer_.data(), len);
  const std::uint64_t at = offset_;
  auto r = c_.http.request(
      "PATCH", url_,
      tus({{"Upload-Offset", std::to_string(at)}, {"Upload-Checksum", "sha256 " + base64(digest, digest_len)}}), body,
      "application/offset+octet-stream", [this, at](std::uint64_t n) { c_.progress.at(at + n); });
  if (!r) {
    synced = false;
    c_.progress.at(offset_);
    c_.backoff.failed(c_.lost("while sending"), resume_hint());
    return false;
  }
  if (r->status == SOUP_STATUS_NO_CONTENT) {
    std::uint64_t next = 0;
    if (!parse_offset(r->header("Upload-Offset"), next))
      throw Exit(kExitFailed, "the server's answer has no Upload-Offset: it does not speak tus 1.0.0");
    c_.backoff.succeeded();
    if (next != at + len)
      synced = false;
    offset_ = next;
    c_.progress.at(offset_);
    if (offset_ >= size_) {
      video = r->header("Sluice-Video-Id");
      return true;
    }
    return false;
  }
  synced = false;
  c_.progress.at(offset_);
  patch_failed(*r);
  return false;
}

void Uploader::patch_failed(const Reply &r) {
  const guint status = r.status;
  if (status == SOUP_STATUS_CONFLICT) {
    c_.backoff.failed("the server's offset is not ours (" + r.describe() + ")", resume_hint(), 0);
  } else if (status == SOUP_STATUS_LOCKED) {
    c_.backoff.failed("the server is still busy with an earlier request on this upload", resume_hint());
  } else if (status == 460) {
    c_.backoff.failed("the chunk arrived damaged (" + r.describe() + ")", resume_hint());
  } else if (status == SOUP_STATUS_NOT_FOUND || status == SOUP_STATUS_GONE) {
    return; // the HEAD that follows starts over
  } else if (transient(status)) {
    c_.backoff.failed("the server could not take the chunk (" + r.describe() + ")", resume_hint(), retry_after(r));
  } else {
    if (status == SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE && r.error_code() == "not_media") {
      // Every byte arrived and the server looked at the file: nothing left to resume.
      remembered_->forget();
      c_.progress.clear();
      throw Exit(kExitFailed, "the server refused " + c_.o.file + ": " + r.describe());
    }
    c_.refused(r, "the server refused the upload");
  }
}

void Uploader::send_all(std::string &video) {
  bool synced = true;
  int restarts = 0;
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  while (true) {
    if (!synced) {
      resync(restarts);
      synced = true;
    }
    if (offset_ >= size_)
      break;
    if (send_chunk(sum, synced, video))
      break;
  }
}

std::string Uploader::upload() {
  open_file();
  remembered_ = std::make_unique<Remembered>(c_.http.base_url(), c_.o.file, st_);
  remembered_->open();
  c_.progress = Progress(size_, c_.progress.tty());
  g_autofree gchar *name = g_path_get_basename(c_.o.file.c_str());
  begin(name);
  c_.progress.start(offset_);

  std::string video;
  send_all(video);
  c_.progress.finished();
  if (video.empty())
    video = video_of(url_);
  remembered_->forget();
  if (video.empty() || video.size() > 64 ||
      !std::all_of(video.begin(), video.end(), [](char c) { return g_ascii_isalnum(c) || c == '-' || c == '_'; }))
    throw Exit(kExitFailed, "the server answered a video id that cannot be one: " + printable(video, 80));
  std::fprintf(stderr, "sluice: %s uploaded: video %s\n", name, video.c_str());
  return video;
}

} // namespace sluice::cli::upload_detail
