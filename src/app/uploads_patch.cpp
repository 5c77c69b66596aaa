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

Result<std::shared_ptr<Uploads::Patch>>
Uploads::begin_patch(const std::string &id, const std::optional<store::ResumableUpload> &row, std::int64_t offset,
                     std::optional<std::int64_t> new_length, std::optional<std::int64_t> content_length,
                     std::optional<Checksum> checksum) {
  if (!service_.accepting())
    return refused(Refusal::Unavailable, "the server is shutting down");
  auto checked = found(id, row);
  if (auto *f = std::get_if<Failure>(&checked))
    return *f;
  auto u = std::get<store::ResumableUpload>(std::move(checked));
  if (is_final(u))
    return refused(Refusal::Forbidden, "a final upload is made of its parts: it takes no PATCH");
  // The row was read before the lock is taken: a PATCH that held it then has recorded its offset before letting it
  // go (finish()), so a row read after that PATCH's answer has it.
  if (busy_.count(id))
    return refused(Refusal::Locked, "another request is writing upload " + id + " now");
  if (u.state != "receiving")
    return refused(Refusal::Conflict, "upload " + id + " is complete (" + u.state + ")");
  // [storage] in a bucket: the bytes after the parts are another process's (held() took it over for a PATCH at the
  // bucket's offset): these follow bytes this one does not have.
  if (!u.holder.empty() && u.holder != holder_)
    return refused(Refusal::OffsetMismatch, "upload " + id +
                                                " is being received by another server now; HEAD it to "
                                                "resume from the " +
                                                std::to_string(store::parts_bytes(u.parts)) + " bytes in storage");
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
  // (In a bucket, a process that took the upload over makes its file: it holds the bytes from held_from on.)
  int fd = open(file_of(id).c_str(), O_WRONLY | O_CLOEXEC | (in_bucket(u) ? O_CREAT : 0), 0640);
  if (fd < 0)
    return io_failure(errno, "cannot open the upload's file");
  // Bytes past the recorded offset (a PATCH cut before its end was recorded) are not the upload's.
  if (ftruncate(fd, offset) != 0 || lseek(fd, offset, SEEK_SET) != offset) {
    int e = errno;
    close(fd);
    return io_failure(e, "cannot prepare the upload's file");
  }
  std::shared_ptr<Patch> p(new Patch(*this, std::move(u), std::move(checksum)));
  p->fd_ = fd;
  busy_.insert(id);
  return p;
}

Uploads::Patch::Patch(Uploads &owner, store::ResumableUpload upload, std::optional<Checksum> checksum)
    : owner_(&owner), alive_(owner.alive_), upload_(std::move(upload)), checksum_(std::move(checksum)) {
  start_ = synced_ = flushed_ = upload_.offset;
  if (checksum_)
    sum_ = g_checksum_new(checksum_->type);
}

Uploads::Patch::~Patch() {
  // A body cut short (its client went away): what came is kept and recorded, nobody waiting for it.
  if (!finished_)
    finish(false, [](Result<store::ResumableUpload>) {});
  if (sum_)
    g_checksum_free(sum_);
  if (fd_ >= 0)
    close(fd_);
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
  // the PATCH waits for the last MiB, not for all of it.
  if (const std::int64_t at = start_ + written_; at - flushed_ >= kFlushEvery) {
    sync_file_range(fd_, flushed_, at - flushed_, SYNC_FILE_RANGE_WRITE);
    flushed_ = at;
  }
  // Without a checksum every byte that arrived is the upload's: recorded as it goes, so that a PATCH cut by a
  // crash loses at most the last few MiB. Never the last byte, which is recorded only with what it starts (finish:
  // the hand-over to ingest, or a partial upload completed): an offset at the length with the upload still receiving
  // would, after a crash, be an upload the client thinks done that nothing ingests.
  if (!checksum_ && start_ + written_ - synced_ >= kSyncEvery &&
      (upload_.length < 0 || start_ + written_ < upload_.length)) {
    if (fdatasync(fd_) != 0) {
      error_ = io_failure(errno, "cannot write the upload");
      return;
    }
    commit(start_ + written_);
  }
}

void Uploads::Patch::commit(std::int64_t offset) {
  // offset is on disk (synced): recorded on the executor, nobody waiting (the body keeps coming). Uploads::save keeps
  // the writes of one upload in order, so that this one never lands after the PATCH's last.
  upload_.offset = offset;
  synced_ = offset;
  if (!*alive_)
    return;
  owner_->save(upload_, [id = upload_.id](std::optional<Failure> f) {
    if (f)
      SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot record its offset: %s", id.c_str(), f->message.c_str());
  });
  send_parts();
}

void Uploads::Patch::finish(bool complete, std::function<void(Result<store::ResumableUpload>)> done) {
  if (finished_)
    return done(refused(Refusal::Internal, "the PATCH was finished already"));
  finished_ = true;
  if (!*alive_)
    return done(refused(Refusal::Unavailable, "the server is shutting down"));
  Uploads *owner = owner_;
  auto alive = alive_;
  const std::string id = upload_.id;
  // The lock goes once every write of the upload has landed: a PATCH that begins after it reads them.
  auto unlock = [owner, alive, id](std::function<void()> then) {
    owner->after_writes(id, [owner, alive, id, then = std::move(then)] {
      if (*alive)
        owner->busy_.erase(id);
      then();
    });
  };
  auto drop = [&](Failure f) {
    // What this PATCH wrote after the last recorded offset goes (a part in flight is of recorded bytes: its row is
    // written before the lock goes).
    if (fd_ >= 0 && ftruncate(fd_, synced_) != 0)
      SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot cut back its file: %s", id.c_str(), g_strerror(errno));
    after_parts(true, [unlock, done = std::move(done), f = std::move(f)] { unlock([done, f] { done(f); }); });
  };
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
  // The bytes are synced, then their offset recorded, and only then answered: an offset the server claims is one it
  // keeps through a crash.
  const std::int64_t accepted = start_ + written_;
  if (accepted > synced_ && fd_ >= 0 && fdatasync(fd_) != 0)
    return drop(io_failure(errno, "cannot write the upload"));
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  synced_ = accepted;
  const bool last = complete && upload_.length >= 0 && accepted == upload_.length;
  // [storage] in a bucket: the whole parts of what is synced go there before the offset is recorded and answered (the
  // last byte's: only those in flight; its completion sends the rest), so that another process can resume from all
  // but the last part's bytes.
  send_parts();
  after_parts(last, [this, alive, accepted, complete, unlock, done = std::move(done)]() mutable {
    if (!*alive)
      return done(refused(Refusal::Unavailable, "the server is shutting down"));
    record(accepted, complete, unlock, std::move(done));
  });
}

void Uploads::Patch::record(std::int64_t accepted, bool complete, std::function<void(std::function<void()>)> unlock,
                            std::function<void(Result<store::ResumableUpload>)> done) {
  Uploads *owner = owner_;
  store::ResumableUpload row = upload_;
  row.offset = accepted;
  bool object = false; // a partial upload's object to complete first
  if (complete && row.length >= 0 && row.offset == row.length && row.state == "receiving") {
    if (row.concat == "partial") {
      row.state = "completed";
      object = owner->in_bucket(row) && row.length > 0;
    } else if (!is_final(row)) {
      // The hand-over to ingest, recorded with the last byte: after a crash, recovery ingests it again.
      row.state = "processing";
      if (row.video_id.empty())
        row.video_id = store::new_id();
    }
  }
  if (object) {
    // [storage] in a bucket: a partial upload's last byte completes its object first; it is recorded complete, and
    // answered, once the object exists (a final on any process fetches it). When the bucket fails, the offset is
    // recorded one byte short: the client's retry (HEAD, then PATCH) sends the last byte again, and completes it then
    // (the whole file in a new upload).
    return owner->complete_partial(
        row, [owner, alive = alive_, row, unlock, done = std::move(done)](std::optional<Failure> f) mutable {
          if (!*alive)
            return done(refused(Refusal::Unavailable, "the server is shutting down"));
          if (f) {
            // The multipart upload went with the failure (a failed completion aborts it): the retry sends the file
            // from its start, in a new one. This process has all of it but when it took the upload over from parts
            // (held_from): then the client starts again.
            row.state = "receiving";
            row.offset = row.held_from == 0 ? row.offset - 1 : 0;
            row.held_from = 0;
            row.multipart.clear();
            row.parts.clear();
          }
          owner->save(row, [row, unlock, done = std::move(done), failed = f](std::optional<Failure> f2) {
            unlock([f2, row, done, failed] {
              if (f2)
                return done(*f2);
              if (failed)
                return done(*failed);
              done(row);
            });
          });
        });
  }
  owner->save(row, [row, unlock, done = std::move(done), part_error = part_error_](std::optional<Failure> f) {
    unlock([f, row, done, part_error] {
      if (f)
        return done(*f);
      // The bytes are kept here (the offset is recorded), but a part did not reach the bucket: said, so that the
      // client retries (its HEAD gets the offset) rather than go elsewhere.
      if (part_error && row.state == "receiving")
        return done(*part_error);
      done(row);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Direct uploads

void Uploads::create_direct(std::int64_t max_size, std::int64_t ttl_s,
                            const std::map<std::string, std::string> &metadata, const std::string &origin,
                            std::function<void(Result<DirectGrant>)> done, bool spec_checked) {
  if (!service_.accepting())
    return done(refused(Refusal::Unavailable, "the server is shutting down"));
  if (max_size < 1 || max_size > this->max_size())
    return done(refused(Refusal::InvalidParameter,
                        "field 'max_size': expected bytes from 1 to " + std::to_string(this->max_size()), "max_size"));
  if (ttl_s < 1 || ttl_s > 7 * 86400)
    return done(refused(Refusal::InvalidParameter, "field 'ttl': expected seconds from 1 to 604800", "ttl"));
  std::string filename;
  auto meta = metadata_from(metadata, filename);
  if (auto *f = std::get_if<Failure>(&meta))
    return done(*f);
  if (!spec_checked)
    return service_.check_spec_later(std::get<Metadata>(meta), [this, alive = alive_, max_size, ttl_s, metadata, origin,
                                                                done](std::optional<Failure> f) mutable {
      if (!*alive)
        return done(refused(Refusal::Unavailable, "the server is shutting down"));
      if (f)
        return done(*f);
      create_direct(max_size, ttl_s, metadata, origin, std::move(done), true);
    });
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
  // Only the token's hash goes to the executor: the token itself stays here until it is answered.
  store::DirectUpload row = g.direct; // copied before g moves into the answer (arguments have no order)
  service_.executor().run(
      [row](store::Store &s) {
        s.add_direct_upload(row);
        return true;
      },
      [alive = alive_, g = std::move(g), ttl_s, done = std::move(done)](store::Outcome<bool> &out) {
        if (!*alive)
          return;
        if (!out.ok())
          return done(failure_of(*out.error));
        SLUICE_LOG(uploads_log(), Info, "direct upload %s: up to %" G_GINT64_FORMAT " bytes for %" G_GINT64_FORMAT " s",
                   g.direct.id.c_str(), g.direct.max_size, ttl_s);
        done(g);
      });
}

bool Uploads::direct_token_form(const std::string &token) {
  return g_str_has_prefix(token.c_str(), "du_") && token.size() <= 100;
}

std::optional<store::DirectUpload> Uploads::direct_for_token(store::Store &store, const std::string &token) {
  if (!direct_token_form(token))
    return std::nullopt;
  auto d = store.direct_upload_by_hash(auth::hash_key(token));
  if (!d || d->expires <= now_us())
    return std::nullopt;
  return d;
}

} // namespace sluice::app
