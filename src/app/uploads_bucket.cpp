// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads with [storage] in a bucket: their bytes go there as they arrive (the parts of a multipart upload
// of the video's source, recorded in the upload's row), another process takes an upload over from them, and the last
// byte completes the object. A partial upload of a concatenation is an object of its own (uploads/ID), fetched by a
// final on a process that lacks it.
#include "app/uploads.h"

#include "app/uploads_internal.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/mainloop.h"
#include "jobs/stored.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <thread>

namespace sluice::app {

using namespace uploads_detail;

namespace {

// The name ingest gives the upload's file (its source key's extension comes from it).
std::string filename_of(const store::ResumableUpload &u) {
  auto keys = parse_tus_metadata(u.metadata).value_or(std::map<std::string, std::string>{});
  std::string filename;
  metadata_from(keys, filename);
  return filename.empty() ? "upload-" + u.id : filename;
}

std::string extension_of(const store::ResumableUpload &u) {
  return jobs::source_extension(filename_of(u));
}

// The object an upload's multipart upload makes: a partial upload's own, or the video's source.
std::string object_key(const store::ResumableUpload &u) {
  return is_partial(u) ? partial_key(u.id) : jobs::source_key(u.video_id, extension_of(u));
}

std::vector<storage::Part> storage_parts(const std::vector<store::UploadPart> &parts) {
  std::vector<storage::Part> out;
  for (const auto &p : parts)
    out.push_back(storage::Part{p.size, p.etag});
  return out;
}

// A local file whose row is gone, or names another holder, is removed once it has not been written for this long: a
// file made just before the rows were read is not taken for a leftover.
constexpr std::int64_t kLeftoverAge = 60 * G_USEC_PER_SEC;

} // namespace

// ---------------------------------------------------------------------------------------------
// Taking an upload over

std::optional<store::ResumableUpload> Uploads::held(store::Store &store, std::optional<store::ResumableUpload> u,
                                                    std::optional<std::int64_t> patch_at) const {
  if (!u || !bucket_ || u->holder.empty() || u->holder == holder_ || u->state != "receiving" || u->expires <= now_us())
    return u;
  // The bytes after the parts are on the holder's disk only: this process goes on from the parts (the client sends the
  // rest again, as tus allows an offset to go back). A PATCH at another offset continues bytes it lacks: refused.
  const std::int64_t stored = store::parts_bytes(u->parts);
  if (patch_at && *patch_at != stored)
    return u;
  store::ResumableUpload t = *u;
  t.holder = holder_;
  t.offset = t.held_from = stored;
  if (!store.take_upload(t, u->holder))
    return row(store, u->id); // another request changed it first: as it is now
  SLUICE_LOG(uploads_log(), Info, "upload %s taken over from %s at %" G_GINT64_FORMAT " bytes (%zu parts in storage)",
             t.id.c_str(), u->holder.c_str(), stored, t.parts.size());
  return t;
}

// ---------------------------------------------------------------------------------------------
// Parts, as a PATCH's bytes are synced

void Uploads::Patch::send_parts() {
  Uploads *owner = owner_;
  if (!*alive_ || !owner->in_bucket(upload_) || sending_ || part_error_)
    return;
  auto self = weak_from_this().lock();
  if (!self)
    return; // being destroyed (a body cut short): what is left goes with the next PATCH
  const std::int64_t part_size = owner->bucket_->part_size();
  const std::int64_t from = store::parts_bytes(upload_.parts);
  if (synced_ - from < part_size || from < upload_.held_from)
    return;
  if (upload_.parts.size() >= 10000)
    return; // the completion sends the rest as its last part
  sending_ = true;
  // The video's id is chosen with the first part: the multipart upload is its source's (a partial upload's: its own
  // object's).
  if (upload_.video_id.empty() && !is_partial(upload_))
    upload_.video_id = store::new_id();
  const std::string key = object_key(upload_);
  const std::string path = owner->file_of(upload_.id);
  const int number = static_cast<int>(upload_.parts.size()) + 1;
  storage::Multipart *bucket = owner->bucket_;
  std::string multipart = upload_.multipart;
  auto alive = alive_;
  // One part at a time, read from the file as it is sent (nothing of it in memory), off the main loop.
  std::thread([self, alive, bucket, key, path, number, multipart, from, part_size]() mutable {
    std::string etag;
    std::optional<Failure> failure;
    try {
      if (multipart.empty())
        multipart = bucket->begin(key, storage::content_type_for(key));
      int fd = g_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
      if (fd < 0)
        throw Error(ErrorCode::Io, "cannot read the upload back: " + std::string(g_strerror(errno)));
      try {
        etag = bucket->put_part(key, multipart, number, fd, from, part_size);
      } catch (...) {
        close(fd);
        throw;
      }
      close(fd);
    } catch (const std::exception &e) {
      SLUICE_LOG(uploads_log(), Warning, "upload of %s: part %d: %s", key.c_str(), number, e.what());
      failure = refused(Refusal::Unavailable, "the upload's bytes are kept, but object storage failed; retry");
    }
    post([self, alive, multipart, etag, failure, part_size]() {
      Patch &p = *self;
      p.sending_ = false;
      if (*alive && !failure) {
        p.upload_.multipart = multipart;
        p.upload_.parts.push_back(store::UploadPart{part_size, etag});
        // Recorded (in order with the offsets: Uploads::save); a holder that lost the upload gets no row written.
        p.owner_->save(p.upload_, [id = p.upload_.id](std::optional<Failure> f) {
          if (f)
            SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot record its part: %s", id.c_str(), f->message.c_str());
        });
      }
      if (failure)
        p.part_error_ = failure;
      if (!p.only_inflight_ || p.parts_done_.empty())
        p.send_parts();
      if (p.sending_)
        return;
      auto waiting = std::move(p.parts_done_);
      p.parts_done_.clear();
      for (auto &fn : waiting)
        fn();
    });
  }).detach();
}

void Uploads::Patch::after_parts(bool only_inflight, std::function<void()> then) {
  if (!sending_)
    return then();
  only_inflight_ = only_inflight;
  parts_done_.push_back(std::move(then));
}

// ---------------------------------------------------------------------------------------------
// The end of an upload in the bucket

void Uploads::ingest_bucket(store::ResumableUpload u, IncomingFile file, Metadata metadata,
                            std::function<void(Result<Ingested>)> done) {
  const std::string ext = extension_of(u);
  const std::string key = jobs::source_key(u.video_id, ext);
  std::shared_ptr<jobs::SourceUpload> streamed;
  try {
    // The parts sent are the file's first bytes: the rest goes as the last parts, then the completion.
    std::unique_ptr<storage::Upload> resumed;
    if (!u.multipart.empty())
      resumed = bucket_->resume(key, u.multipart, storage_parts(u.parts), storage::content_type_for(key));
    streamed = jobs::SourceUpload::start(*storage_, file.path, u.video_id, ext, std::move(resumed),
                                         store::parts_bytes(u.parts));
    streamed->finish(u.length);
  } catch (const Error &e) {
    SLUICE_LOG(uploads_log(), Error, "upload %s: %s", u.id.c_str(), e.what());
    file.discard();
    return done(refused(Refusal::Unavailable, "the upload could not be stored (object storage failed); retry"));
  }
  auto keep = std::move(file.keep);
  auto discard = std::move(file.discard);
  file.keep = [keep, streamed](const std::string &dest) {
    keep(dest);
    streamed->keep();
  };
  file.discard = [discard, streamed] {
    discard();
    streamed->abandon("the upload was not kept");
  };
  file.streamed = streamed;
  if (u.held_from == 0) // the whole file is here: probed while the last part and the completion go
    return service_.ingest(std::move(file), metadata, std::move(done));
  // This process took the upload over: it has only the bytes after the parts it found. The object, once complete, is
  // fetched to the upload's file (through a temporary name) and probed from there.
  SLUICE_LOG(uploads_log(), Info,
             "upload %s: fetching %s to probe it (this server holds its bytes from %" G_GINT64_FORMAT ")", u.id.c_str(),
             key.c_str(), u.held_from);
  auto alive = alive_;
  storage::Storage *storage = storage_;
  std::thread([this, alive, storage, streamed, key, file = std::move(file), metadata,
               done = std::move(done)]() mutable {
    std::optional<std::string> err;
    try {
      streamed->wait();
      storage->get_file(key, file.path);
    } catch (const std::exception &e) {
      err = e.what();
    }
    post([this, alive, err, file = std::move(file), metadata, done = std::move(done)]() mutable {
      if (!*alive)
        return;
      if (err) {
        SLUICE_LOG(uploads_log(), Error, "upload of %s: %s", file.path.c_str(), err->c_str());
        file.discard();
        return done(refused(Refusal::Unavailable, "the upload could not be stored (object storage failed); retry"));
      }
      service_.ingest(std::move(file), metadata, std::move(done));
    });
  }).detach();
}

// ---------------------------------------------------------------------------------------------
// Partial uploads of a concatenation in the bucket

void Uploads::complete_partial(const store::ResumableUpload &u, std::function<void(std::optional<Failure>)> done) {
  const std::string key = partial_key(u.id);
  const std::string path = file_of(u.id);
  storage::Storage *storage = storage_;
  storage::Multipart *bucket = bucket_;
  auto alive = alive_;
  // The parts sent are the file's first bytes (this process has its bytes from held_from, never after them): the rest
  // goes as the last parts, then the completion; without parts, the file in one upload. Read from the file as sent.
  std::thread([alive, storage, bucket, key, path, id = u.id, length = u.length, multipart = u.multipart,
               parts = storage_parts(u.parts), from = store::parts_bytes(u.parts), done = std::move(done)]() mutable {
    const std::int64_t started = g_get_monotonic_time();
    std::optional<std::string> err;
    try {
      int fd = g_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
      if (fd < 0)
        throw Error(ErrorCode::Io, "cannot read the upload back: " + std::string(g_strerror(errno)));
      try {
        std::unique_ptr<storage::Upload> up =
            multipart.empty() ? storage->begin_upload(key, storage::content_type_for(key))
                              : bucket->resume(key, multipart, parts, storage::content_type_for(key));
        up->write_file_range(fd, multipart.empty() ? 0 : from, multipart.empty() ? length : length - from);
        up->finish();
      } catch (...) {
        close(fd);
        throw;
      }
      close(fd);
    } catch (const std::exception &e) {
      err = e.what();
      // A completion whose answer was lost (or that came before a crash cut the row's write) made the object: whole.
      try {
        if (auto o = storage->head(key); o && o->size == length)
          err.reset();
      } catch (const std::exception &) {
      }
    }
    const double took = (g_get_monotonic_time() - started) / 1e6;
    post([alive, id, key, err, took, length, done = std::move(done)] {
      if (!*alive)
        return;
      if (err) {
        SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot complete %s: %s", id.c_str(), key.c_str(), err->c_str());
        return done(refused(Refusal::Unavailable, "object storage failed while the partial upload was stored; its "
                                                  "bytes but the last are kept: HEAD it and send the rest again"));
      }
      SLUICE_LOG(uploads_log(), Info, "upload %s: %s complete (%" G_GINT64_FORMAT " bytes, %.2f s)", id.c_str(),
                 key.c_str(), length, took);
      done(std::nullopt);
    });
  }).detach();
}

std::optional<Failure> uploads_detail::gather_parts(storage::Storage *storage, const std::string &holder,
                                                    const std::vector<store::ResumableUpload> &parts,
                                                    const std::vector<std::string> &sources) {
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto &p = parts[i];
    const std::string &path = sources[i];
    // Received whole here (no bytes before held_from in another process's parts) and still here: joined from here.
    if (!storage || p.holder.empty() || (p.holder == holder && p.held_from == 0 && fs::file_size(path) == p.length))
      continue;
    if (p.length == 0) { // nothing to fetch (a partial upload of no bytes has no object)
      int fd = g_open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
      if (fd < 0)
        return io_failure(errno, "cannot create the part's file");
      close(fd);
      continue;
    }
    const std::string key = partial_key(p.id);
    const std::int64_t started = g_get_monotonic_time();
    try {
      // Streamed to a temporary name, then renamed to the part's file: whole or absent.
      storage->get_file(key, path);
    } catch (const Error &e) {
      SLUICE_LOG(uploads_log(), Warning, "upload %s: cannot fetch %s: %s", p.id.c_str(), key.c_str(), e.what());
      if (e.code() == ErrorCode::NotFound)
        return refused(Refusal::Conflict,
                       "Upload-Concat: the bytes of partial upload " + p.id + " are not in object storage",
                       "Upload-Concat");
      if (e.code() == ErrorCode::NoSpace)
        return refused(Refusal::NoSpace, "the server is short of disk space to join the parts; the parts are kept");
      return refused(Refusal::Unavailable,
                     "object storage failed while the parts were fetched; the parts are kept: send the final again");
    }
    if (fs::file_size(path) != p.length) {
      unlink(path.c_str());
      return refused(Refusal::Conflict, "Upload-Concat: the object of partial upload " + p.id + " is not of its length",
                     "Upload-Concat");
    }
    SLUICE_LOG(uploads_log(), Info, "upload %s: fetched from %s (%" G_GINT64_FORMAT " bytes, %.2f s)", p.id.c_str(),
               key.c_str(), p.length, (g_get_monotonic_time() - started) / 1e6);
  }
  return std::nullopt;
}

void Uploads::abort_multiparts(const std::vector<store::ResumableUpload> &rows) {
  if (!bucket_)
    return;
  std::vector<std::pair<std::string, std::string>> uploads; // key, multipart upload id
  std::vector<std::string> objects;                         // partial uploads' objects
  for (const auto &u : rows) {
    const bool partial = is_partial(u) && in_bucket(u);
    if (!u.multipart.empty() && (partial || !u.video_id.empty()) && u.state != "completed")
      uploads.emplace_back(object_key(u), u.multipart);
    // Complete, or maybe completed just before a crash cut its row's write: removed either way (none is no error).
    if (partial)
      objects.push_back(partial_key(u.id));
  }
  if (uploads.empty() && objects.empty())
    return;
  storage::Multipart *bucket = bucket_;
  storage::Storage *storage = storage_;
  std::thread([bucket, storage, uploads, objects] {
    for (const auto &[key, id] : uploads) {
      try {
        bucket->abort(key, id);
      } catch (const std::exception &e) {
        // Its parts stay until the bucket's lifecycle rule for incomplete uploads removes them; no object appears.
        SLUICE_LOG(uploads_log(), Warning, "cannot abort the multipart upload of %s: %s", key.c_str(), e.what());
      }
    }
    for (const auto &key : objects) {
      try {
        storage->remove(key);
      } catch (const std::exception &e) {
        SLUICE_LOG(uploads_log(), Warning, "cannot remove %s: %s", key.c_str(), e.what());
      }
    }
  }).detach();
}

void Uploads::remove_leftovers(const std::vector<store::ResumableUpload> &rows, std::int64_t before) {
  std::map<std::string, const store::ResumableUpload *> by_id;
  for (const auto &u : rows)
    by_id[u.id] = &u;
  for (const auto &name : fs::list_dir(folder())) {
    if (busy_.count(name))
      continue;
    auto it = by_id.find(name);
    if (it != by_id.end() && (it->second->holder.empty() || it->second->holder == holder_))
      continue;
    GStatBuf st;
    const std::string path = file_of(name);
    if (g_stat(path.c_str(), &st) != 0 ||
        static_cast<std::int64_t>(st.st_mtime) * G_USEC_PER_SEC > before - kLeftoverAge)
      continue;
    SLUICE_LOG(uploads_log(), Info, "upload %s: its local bytes are removed (%s)", name.c_str(),
               it == by_id.end() ? "the upload is gone" : "another server holds it now");
    unlink(path.c_str());
  }
}

} // namespace sluice::app
