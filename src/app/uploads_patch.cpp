// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads: one PATCH (checked and locked, streamed, made durable), and direct-upload grants.
#include "app/uploads.h"

#include "app/uploads_internal.h"
#include "auth/keys.h"
#include "core/json.h"
#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace sluice::app {

using namespace uploads_detail;

// ---------------------------------------------------------------------------------------------
// PATCH

Result<std::shared_ptr<Uploads::Patch>> Uploads::begin_patch(const std::string &id, std::int64_t offset,
                                                             std::optional<std::int64_t> new_length,
                                                             std::optional<std::int64_t> content_length,
                                                             std::optional<Checksum> checksum) {
  if (!service_.accepting())
    return refused(Refusal::Unavailable, "the server is shutting down");
  auto found = find(id);
  if (auto *f = std::get_if<Failure>(&found))
    return *f;
  auto u = std::get<store::ResumableUpload>(std::move(found));
  if (is_final(u))
    return refused(Refusal::Forbidden, "a final upload is made of its parts: it takes no PATCH");
  if (busy_.count(id))
    return refused(Refusal::Locked, "another request is writing upload " + id + " now");
  if (u.state != "receiving")
    return refused(Refusal::Conflict, "upload " + id + " is complete (" + u.state + ")");
  if (offset != u.offset)
    return refused(Refusal::OffsetMismatch, "Upload-Offset is " + std::to_string(offset) + "; the upload has " +
                                                std::to_string(u.offset) + " bytes");
  // (A direct upload's length was given, and checked against its largest size, at creation.)
  const std::int64_t limit = max_size();
  if (new_length) {
    if (u.length >= 0 && *new_length != u.length)
      return refused(Refusal::InvalidField,
                     "Upload-Length: the upload's length is " + std::to_string(u.length) + " already", "Upload-Length");
    if (*new_length < u.offset)
      return refused(Refusal::InvalidField, "Upload-Length is less than the bytes already received", "Upload-Length");
    if (*new_length > limit)
      return refused(Refusal::TooLarge, "the upload is " + std::to_string(*new_length) + " bytes; at most " +
                                            std::to_string(limit) + " are accepted");
    u.length = *new_length;
  }
  const std::int64_t end = u.length >= 0 ? u.length : limit;
  if (content_length && offset + *content_length > end)
    return refused(Refusal::TooLarge, "the PATCH brings " + std::to_string(*content_length) + " bytes at offset " +
                                          std::to_string(offset) + "; the upload ends at " + std::to_string(end));
  if (service_.space_low())
    return refused(Refusal::NoSpace, "the server is short of disk space (less than [health] min-free-space is free)");
  const auto row = service_.store().upload(id);
  const std::int64_t durable = row ? row->offset : 0;
  int fd = open(file_of(id).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return io_failure(errno, "cannot open the upload's file");
  // Bytes past the recorded offset (a PATCH cut before its end was recorded) are not the upload's.
  if (ftruncate(fd, offset) != 0 || lseek(fd, offset, SEEK_SET) != offset) {
    int e = errno;
    close(fd);
    return io_failure(e, "cannot prepare the upload's file");
  }
  const bool length_set = new_length && row && row->length < 0;
  std::shared_ptr<Patch> p(new Patch(*this, std::move(u), durable, std::move(checksum)));
  p->length_set_ = length_set;
  p->partial_ = p->upload_.concat == "partial";
  if (auto it = unsynced_.find(id); it != unsynced_.end())
    p->sync_due_ = it->second.due;
  else
    p->sync_due_ = g_get_monotonic_time() + kPartialSyncWithinUs;
  p->fd_ = fd;
  busy_.insert(id);
  return p;
}

Uploads::Patch::Patch(Uploads &owner, store::ResumableUpload upload, std::int64_t durable,
                      std::optional<Checksum> checksum)
    : owner_(&owner), alive_(owner.alive_), upload_(std::move(upload)), durable_(durable),
      checksum_(std::move(checksum)) {
  start_ = synced_ = flushed_ = upload_.offset;
  if (checksum_)
    sum_ = g_checksum_new(checksum_->type);
}

Uploads::Patch::~Patch() {
  if (!finished_) {
    try {
      finish(false);
    } catch (const std::exception &e) {
      SLUICE_LOG(uploads_log(), Error, "upload %s: %s", upload_.id.c_str(), e.what());
    }
  }
  if (sum_)
    g_checksum_free(sum_);
  release();
}

void Uploads::Patch::release() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (owner_ && *alive_)
    owner_->busy_.erase(upload_.id);
  owner_ = nullptr;
}

void Uploads::Patch::write(const char *data, std::size_t len) {
  if (error_ || fd_ < 0 || finished_)
    return;
  const std::int64_t end = upload_.length >= 0 ? upload_.length : owner_->max_size();
  if (start_ + written_ + static_cast<std::int64_t>(len) > end) {
    error_ =
        refused(Refusal::TooLarge, "the PATCH goes past the end of the upload (" + std::to_string(end) + " bytes)");
    return;
  }
  if (int e = write_all(fd_, data, len)) {
    error_ = io_failure(e, "cannot write the upload");
    return;
  }
  if (sum_)
    g_checksum_update(sum_, reinterpret_cast<const guchar *>(data), static_cast<gssize>(len));
  written_ += static_cast<std::int64_t>(len);
  // The kernel starts writing each MiB back as it arrives (without waiting for it), so that the sync at the end of
  // the PATCH waits for the last MiB, not for all of it. Not a partial upload's: its bytes are written once, in the
  // final upload's file (kPartialSyncWithinUs).
  if (const std::int64_t at = start_ + written_; !partial_ && at - flushed_ >= kFlushEvery) {
    sync_file_range(fd_, flushed_, at - flushed_, SYNC_FILE_RANGE_WRITE);
    flushed_ = at;
  }
  // Without a checksum every byte that arrived is the upload's: recorded as it goes, so that a PATCH cut by a
  // crash loses at most the last few MiB (a partial upload's: at most the last kPartialSyncWithinUs).
  if (!checksum_ && (partial_ ? start_ + written_ > synced_ && g_get_monotonic_time() >= sync_due_
                              : start_ + written_ - synced_ >= kSyncEvery)) {
    if (fdatasync(fd_) != 0) {
      error_ = io_failure(errno, "cannot write the upload");
      return;
    }
    try {
      commit(start_ + written_);
    } catch (const Error &e) {
      error_ = failure_of(e);
    }
  }
}

void Uploads::Patch::commit(std::int64_t offset) {
  // offset is on disk (synced): recorded, with everything before it.
  upload_.offset = offset;
  synced_ = offset;
  durable_ = offset;
  sync_due_ = g_get_monotonic_time() + kPartialSyncWithinUs;
  if (!*alive_)
    return;
  owner_->service_.store().update_upload(upload_);
  if (auto it = owner_->unsynced_.find(upload_.id); it != owner_->unsynced_.end() && it->second.offset <= offset)
    owner_->unsynced_.erase(it);
}

Result<store::ResumableUpload> Uploads::Patch::finish(bool complete) {
  if (finished_)
    return refused(Refusal::Internal, "the PATCH was finished already");
  finished_ = true;
  auto drop = [&](Failure f) -> Result<store::ResumableUpload> {
    // What this PATCH wrote after the last recorded offset goes.
    if (fd_ >= 0 && ftruncate(fd_, synced_) != 0)
      SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot cut back its file: %s", upload_.id.c_str(),
                 g_strerror(errno));
    return f;
  };
  if (!*alive_)
    return refused(Refusal::Unavailable, "the server is shutting down");
  if (error_)
    return drop(*error_);
  if (checksum_) {
    if (!complete)
      return drop(refused(Refusal::ChecksumMismatch, "the PATCH was cut short: its bytes are not kept"));
    std::vector<guint8> digest(64);
    gsize len = digest.size();
    g_checksum_get_digest(sum_, digest.data(), &len);
    if (std::string(reinterpret_cast<const char *>(digest.data()), len) != checksum_->digest)
      return drop(refused(Refusal::ChecksumMismatch, "Upload-Checksum does not match the bytes received; they are not "
                                                     "kept"));
  }
  // The bytes are the upload's now; they are synced and recorded within a second (a partial upload's within
  // kPartialSyncWithinUs; Uploads::flush), or at once when this PATCH gave the upload's length (the catalog must know
  // it).
  const std::int64_t accepted = start_ + written_;
  upload_.offset = accepted;
  if (accepted > durable_)
    owner_->mark_unsynced(upload_, accepted);
  if (length_set_) {
    try {
      if (auto f = owner_->flush(upload_.id))
        return drop(*f);
      store::ResumableUpload row = upload_;
      row.offset = std::max(durable_, owner_->service_.store().upload(upload_.id).value_or(row).offset);
      owner_->service_.store().update_upload(row);
    } catch (const Error &e) {
      return drop(failure_of(e));
    }
  }
  auto out = upload_;
  release();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Direct uploads

Result<DirectGrant> Uploads::create_direct(std::int64_t max_size, std::int64_t ttl_s,
                                           const std::map<std::string, std::string> &metadata,
                                           const std::string &origin) {
  if (!service_.accepting())
    return refused(Refusal::Unavailable, "the server is shutting down");
  if (max_size < 1 || max_size > this->max_size())
    return refused(Refusal::InvalidParameter,
                   "field 'max_size': expected bytes from 1 to " + std::to_string(this->max_size()), "max_size");
  if (ttl_s < 1 || ttl_s > 7 * 86400)
    return refused(Refusal::InvalidParameter, "field 'ttl': expected seconds from 1 to 604800", "ttl");
  std::string filename;
  auto meta = metadata_from(metadata, filename);
  if (auto *f = std::get_if<Failure>(&meta))
    return *f;
  auto spec = service_.job_spec(std::get<Metadata>(meta));
  if (auto *f = std::get_if<Failure>(&spec))
    return *f;
  DirectGrant g;
  g.token = "du_" + auth::new_key().substr(auth::kKeyPrefix.size());
  g.direct.id = store::new_id();
  g.direct.token_hash = auth::hash_key(g.token);
  g.direct.max_size = max_size;
  g.direct.origin = origin;
  JsonObject *o = json_object_new();
  for (const auto &[k, v] : metadata)
    json_object_set_string_member(o, k.c_str(), v.c_str());
  json::Node n(json::object_node(o));
  g.direct.metadata_json = json::to_string(n.get(), false);
  g.direct.created = now_us();
  g.direct.expires = g.direct.created + ttl_s * G_USEC_PER_SEC;
  try {
    service_.store().add_direct_upload(g.direct);
  } catch (const Error &e) {
    return failure_of(e);
  }
  SLUICE_LOG(uploads_log(), Info, "direct upload %s: up to %" G_GINT64_FORMAT " bytes for %" G_GINT64_FORMAT " s",
             g.direct.id.c_str(), max_size, ttl_s);
  return g;
}

std::optional<store::DirectUpload> Uploads::direct_for_token(const std::string &token) {
  if (!g_str_has_prefix(token.c_str(), "du_") || token.size() > 100)
    return std::nullopt;
  auto d = service_.store().direct_upload_by_hash(auth::hash_key(token));
  if (!d || d->expires <= now_us())
    return std::nullopt;
  return d;
}

} // namespace sluice::app
