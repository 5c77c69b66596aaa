// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads: their rows and files, PATCHes made durable, parts joined (uploads_join.cpp), and the hand-over
// to ingest; the start and the sweep are in uploads_sweep.cpp, the bucket's parts in uploads_bucket.cpp.
#include "app/uploads.h"

#include "app/uploads_internal.h"

#include "auth/keys.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/mainloop.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

namespace sluice::app {

using namespace uploads_detail;

// ---------------------------------------------------------------------------------------------
// The uploads

Uploads::Uploads(Service &service) : service_(service) {}

Uploads::~Uploads() {
  *alive_ = false;
  if (sweep_timer_)
    g_source_remove(sweep_timer_);
}

void Uploads::save(const store::ResumableUpload &u, std::function<void(std::optional<Failure>)> done) {
  Writes &w = writes_[u.id];
  if (w.in_flight) {
    // Two writes of one row on two pool threads could land in either order: the newer waits.
    w.next = u;
    w.waiting.push_back(std::move(done));
    return;
  }
  w.in_flight = true;
  const std::string id = u.id;
  service_.executor().run([u](store::Store &s) { return s.update_upload(u); },
                          [this, alive = alive_, id, done = std::move(done)](store::Outcome<bool> &o) {
                            if (!*alive)
                              return;
                            std::optional<Failure> f;
                            if (!o.ok())
                              f = failure_of(*o.error);
                            else if (!*o.value)
                              // The row names another holder: another process took the upload over (or it is gone).
                              f = refused(Refusal::OffsetMismatch,
                                          "upload " + id +
                                              " is being received by another server now; HEAD it to "
                                              "resume from the bytes in storage");
                            Writes &back = writes_[id];
                            back.in_flight = false;
                            auto next = std::move(back.next);
                            auto waiting = std::move(back.waiting);
                            back.next.reset();
                            back.waiting.clear();
                            // The newer row goes first: a write that `done` asks for comes after it.
                            if (next)
                              save(*next, [waiting = std::move(waiting)](std::optional<Failure> f2) {
                                for (const auto &d : waiting)
                                  if (d)
                                    d(f2);
                              });
                            if (done)
                              done(f);
                            auto it = writes_.find(id);
                            if (it == writes_.end() || it->second.in_flight)
                              return;
                            auto idle = std::move(it->second.idle);
                            writes_.erase(it);
                            for (auto &fn : idle)
                              fn();
                          });
}

void Uploads::after_writes(const std::string &id, std::function<void()> fn) {
  auto it = writes_.find(id);
  if (it == writes_.end() || !it->second.in_flight)
    return fn();
  it->second.idle.push_back(std::move(fn));
}

std::string Uploads::folder() const {
  return fs::join(service_.scheduler().layout().data_dir, "resumable");
}

std::string Uploads::file_of(const std::string &id) const {
  return fs::join(folder(), id);
}

std::int64_t Uploads::max_size() const {
  return service_.config().max_upload_size;
}

void Uploads::publish(const store::ResumableUpload &u, const char *action) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", u.id.c_str());
  json_object_set_string_member(o, "action", action);
  json_object_set_string_member(o, "state", u.state.c_str());
  if (!u.video_id.empty() && u.state == "completed")
    json_object_set_string_member(o, "video_id", u.video_id.c_str());
  json::Node n(json::object_node(o));
  service_.events().publish("upload", "", u.state == "completed" ? u.video_id : "", json::to_string(n.get(), false));
}

std::optional<store::ResumableUpload> Uploads::row(store::Store &store, const std::string &id) {
  return store::is_id(id) ? store.upload(id) : std::nullopt;
}

Result<store::ResumableUpload> Uploads::found(const std::string &id,
                                              const std::optional<store::ResumableUpload> &row) const {
  if (!row)
    return refused(Refusal::NotFound, "no upload " + id);
  if (row->expires <= now_us())
    return refused(Refusal::Gone, "upload " + id + " has expired");
  return *row;
}

void Uploads::find(const std::string &id, std::function<void(Result<store::ResumableUpload>)> done) {
  service_.executor().run(
      [id](store::Store &s) { return row(s, id); },
      [this, alive = alive_, id, done = std::move(done)](store::Outcome<std::optional<store::ResumableUpload>> &o) {
        if (!*alive)
          return;
        if (!o.ok())
          return done(failure_of(*o.error));
        done(found(id, *o.value));
      });
}

void Uploads::create(const UploadRequest &r, std::function<void(Result<store::ResumableUpload>)> done) {
  if (!service_.accepting())
    return done(refused(Refusal::Unavailable, "the server is shutting down"));
  const std::int64_t limit = r.max_size >= 0 ? std::min(r.max_size, max_size()) : max_size();
  // The metadata is checked now, before a byte is sent: what ingest would refuse later.
  auto keys = parse_tus_metadata(r.metadata_header);
  if (!keys)
    return done(refused(Refusal::InvalidField, "Upload-Metadata: expected comma-separated 'key base64' pairs",
                        "Upload-Metadata"));
  if (!r.direct_id.empty() && (!r.length || r.concat != UploadRequest::Concat::None))
    return done(refused(Refusal::InvalidField,
                        "a direct upload is one whole file: it gives Upload-Length and no "
                        "Upload-Concat",
                        "Upload-Length"));
  for (const auto &[k, v] : r.forced)
    (*keys)[k] = v;
  std::string filename;
  auto meta = metadata_from(*keys, filename);
  if (auto *f = std::get_if<Failure>(&meta))
    return done(*f);
  if (r.concat != UploadRequest::Concat::Partial && !r.spec_checked) {
    // The job it asks for is checked before a byte is sent, the live workers' rows (when it needs them) read on the
    // executor; then the creation starts again, checked.
    return service_.check_spec_later(std::get<Metadata>(meta),
                                     [this, alive = alive_, req = r, done](std::optional<Failure> f) mutable {
                                       if (!*alive)
                                         return done(refused(Refusal::Unavailable, "the server is shutting down"));
                                       if (f)
                                         return done(*f);
                                       req.spec_checked = true;
                                       create(req, std::move(done));
                                     });
  }
  if (service_.space_low())
    return done(refused(Refusal::NoSpace, "the server is short of disk space (less than [health] min-free-space is "
                                          "free); try again later"));

  store::ResumableUpload u;
  u.id = store::new_id();
  u.length = r.length.value_or(-1);
  u.metadata = r.forced.empty() ? r.metadata_header : tus_metadata_header(*keys);
  u.state = "receiving";
  u.direct_id = r.direct_id;
  // [storage] in a bucket: a whole upload goes there as it arrives, a partial one too (an object of its own, for a
  // final on any process); a final is joined here from its parts.
  if (bucket_ && r.concat != UploadRequest::Concat::Final)
    u.holder = holder_;
  u.created = now_us();
  u.expires = u.created + service_.config().resumable_expiry_s * G_USEC_PER_SEC;

  if (r.concat != UploadRequest::Concat::Final) {
    if (r.concat == UploadRequest::Concat::Partial)
      u.concat = "partial";
    if (u.length > limit)
      return done(refused(Refusal::TooLarge, "the upload is " + std::to_string(u.length) + " bytes; at most " +
                                                 std::to_string(limit) + " are accepted"));
    if (u.length == 0 && r.concat != UploadRequest::Concat::Partial)
      return done(refused(Refusal::NotMedia, "the uploaded file is empty", "file"));
    return create_row(std::move(u), {}, r.direct_id, std::move(done));
  }
  if (r.parts.empty())
    return done(refused(Refusal::InvalidField, "Upload-Concat: a final upload names its parts", "Upload-Concat"));
  // A final concatenation: its parts' rows are read on the executor, then checked here (the locks are here).
  const std::vector<std::string> ids = r.parts;
  service_.executor().run(
      [ids](store::Store &s) {
        std::vector<std::optional<store::ResumableUpload>> rows;
        for (const auto &id : ids)
          rows.push_back(row(s, id));
        return rows;
      },
      [this, alive = alive_, ids, limit, u = std::move(u),
       done = std::move(done)](store::Outcome<std::vector<std::optional<store::ResumableUpload>>> &o) mutable {
        if (!*alive)
          return;
        if (!o.ok())
          return done(failure_of(*o.error));
        std::vector<store::ResumableUpload> parts;
        std::int64_t total = 0;
        u.concat = "final";
        for (std::size_t i = 0; i < ids.size(); ++i) {
          const std::string &id = ids[i];
          auto p = found(id, (*o.value)[i]);
          if (auto *f = std::get_if<Failure>(&p))
            return done(*f);
          auto &part = std::get<store::ResumableUpload>(p);
          // In a bucket, a part is complete once its object is (its last PATCH recorded it so): never half of it.
          const bool stored = !in_bucket(part) || part.state == "completed" || part.length == 0;
          if (part.concat != "partial" || part.length < 0 || part.offset != part.length || !stored || busy_.count(id))
            return done(refused(Refusal::InvalidField,
                                "Upload-Concat: upload " + id + " is not a complete partial upload", "Upload-Concat"));
          if (std::find_if(parts.begin(), parts.end(), [&](const auto &q) { return q.id == id; }) != parts.end())
            return done(
                refused(Refusal::InvalidField, "Upload-Concat: upload " + id + " is named twice", "Upload-Concat"));
          total += part.length;
          u.concat += " " + id;
          parts.push_back(part);
        }
        if (total > limit)
          return done(refused(Refusal::TooLarge, "the joined upload is " + std::to_string(total) + " bytes; at most " +
                                                     std::to_string(limit) + " are accepted"));
        if (total == 0)
          return done(refused(Refusal::InvalidField, "the joined upload is empty", "Upload-Concat"));
        u.length = total;
        u.offset = total;
        u.state = "processing";
        create_row(std::move(u), std::move(parts), "", std::move(done));
      });
}

void Uploads::create_row(store::ResumableUpload u, std::vector<store::ResumableUpload> parts, std::string direct_id,
                         std::function<void(Result<store::ResumableUpload>)> done) {
  // The file before the row: a row never names a file that is not there.
  try {
    fs::make_dirs(folder());
  } catch (const Error &e) {
    return done(failure_of(e));
  }
  int fd = open(file_of(u.id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0)
    return done(io_failure(errno, "cannot create the upload's file"));
  close(fd);
  // Locked until its row is there (and the parts, until they are joined): nothing else takes them meanwhile.
  busy_.insert(u.id);
  for (const auto &p : parts)
    busy_.insert(p.id);
  service_.executor().run(
      [u, direct_id](store::Store &s) {
        s.add_upload(u);
        // A direct upload's token opens one creation: claimed in the same call, the row gone when another request
        // claimed it first.
        if (!direct_id.empty() && !s.claim_direct_upload(direct_id, u.id)) {
          s.delete_upload(u.id);
          return false;
        }
        return true;
      },
      [this, alive = alive_, u, parts, done = std::move(done)](store::Outcome<bool> &o) mutable {
        if (!*alive)
          return;
        busy_.erase(u.id);
        if (!o.ok() || !*o.value) {
          for (const auto &p : parts)
            busy_.erase(p.id);
          unlink(file_of(u.id).c_str());
          if (!o.ok())
            return done(failure_of(*o.error));
          // field "token": the HTTP layer answers it as the credential's refusal.
          return done(refused(Refusal::Forbidden, "this upload token has been used", "token"));
        }
        SLUICE_LOG(uploads_log(), Info, "upload %s created (%" G_GINT64_FORMAT " bytes%s)", u.id.c_str(), u.length,
                   u.concat.empty() ? "" : (", " + u.concat.substr(0, u.concat.find(' '))).c_str());
        if (parts.empty())
          return done(u);
        join(std::move(u), std::move(parts), std::move(done));
      });
}

void Uploads::join(store::ResumableUpload u, std::vector<store::ResumableUpload> parts,
                   std::function<void(Result<store::ResumableUpload>)> done) {
  // The parts are locked (create_row); the final upload is too until it is ingested.
  busy_.insert(u.id);
  std::vector<std::string> sources;
  for (const auto &p : parts)
    sources.push_back(file_of(p.id));
  const std::string dest = file_of(u.id);
  storage::Storage *storage = bucket_ ? storage_ : nullptr;
  const std::string holder = holder_;
  auto alive = alive_;
  // Copying gigabytes takes seconds: off the main loop (copy_file_range shares blocks where the file system can). In a
  // bucket, the parts received by other processes are fetched first, on the same thread.
  std::thread([this, alive, u, parts, sources, dest, storage, holder, done = std::move(done)]() mutable {
    const std::int64_t started = g_get_monotonic_time();
    const std::optional<Failure> fetch = gather_parts(storage, holder, parts, sources);
    const std::int64_t fetched = g_get_monotonic_time();
    std::int64_t copied = fetched;
    const int err = fetch ? 0 : join_files(sources, parts, dest, copied);
    const std::int64_t synced = g_get_monotonic_time();
    post([this, alive, u, parts, fetch, err, started, fetched, copied, synced, done = std::move(done)]() mutable {
      if (!*alive)
        return;
      for (const auto &p : parts)
        busy_.erase(p.id);
      if (fetch || err) {
        busy_.erase(u.id);
        // The final goes. Parts in the bucket stay (their objects serve another final, on any process); the others go
        // (the first part's file may be the joined one already).
        std::vector<store::ResumableUpload> gone{u};
        for (const auto &p : parts)
          if (!fetch && !in_bucket(p))
            gone.push_back(p);
        const bool kept = gone.size() == 1;
        remove(std::move(gone));
        if (fetch) {
          SLUICE_LOG(uploads_log(), Warning, "upload %s: %s", u.id.c_str(), fetch->message.c_str());
          return done(*fetch);
        }
        SLUICE_LOG(uploads_log(), Error, "upload %s: cannot join its parts: %s", u.id.c_str(), g_strerror(err));
        return done(io_failure(err, kept ? "cannot join the parts of the upload (they are kept: send the final again)"
                                         : "cannot join the parts of the upload (they are removed; send them again)"));
      }
      SLUICE_LOG(uploads_log(), Info,
                 "upload %s: %zu parts joined (%.2f s to fetch, %" G_GINT64_FORMAT
                 " bytes appended in %.2f s, synced in %.2f s)",
                 u.id.c_str(), parts.size(), (fetched - started) / 1e6, u.length - parts[0].length,
                 (copied - fetched) / 1e6, (synced - copied) / 1e6);
      // The parts are in the final file: they go (their rows, files and objects).
      remove(parts);
      ingest(std::move(u), std::move(done));
    });
  }).detach();
}

void Uploads::terminate(const std::string &id, std::function<void(std::optional<Failure>)> done) {
  if (busy_.count(id))
    return done(refused(Refusal::Locked, "upload " + id + " is being written or processed; try again when it is done"));
  // Locked while its row goes: a PATCH that would begin meanwhile is told so.
  busy_.insert(id);
  const std::int64_t now = now_us();
  service_.executor().run(
      [id, now](store::Store &s) -> Result<store::ResumableUpload> {
        auto u = row(s, id);
        if (!u)
          return refused(Refusal::NotFound, "no upload " + id);
        if (u->expires <= now)
          return refused(Refusal::Gone, "upload " + id + " has expired");
        s.delete_upload(id);
        return *u;
      },
      [this, alive = alive_, id, done = std::move(done)](store::Outcome<Result<store::ResumableUpload>> &o) {
        if (!*alive)
          return;
        busy_.erase(id);
        if (!o.ok())
          return done(failure_of(*o.error));
        if (auto *f = std::get_if<Failure>(&*o.value))
          return done(*f);
        // The row is gone: the file goes, and the parts in the bucket.
        unlink(file_of(id).c_str());
        abort_multiparts({std::get<store::ResumableUpload>(*o.value)});
        SLUICE_LOG(uploads_log(), Info, "upload %s terminated", id.c_str());
        done(std::nullopt);
      });
}

// ---------------------------------------------------------------------------------------------
// Completion

void Uploads::complete(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done) {
  // finish() recorded the hand-over with the last offset (state processing): the rest is ingest's.
  if (u.state != "processing" || is_final(u))
    return done(u);
  ingest(std::move(u), std::move(done));
}

void Uploads::ingest(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done) {
  busy_.insert(u.id);
  if (u.state == "processing" && !u.video_id.empty())
    return ingest_recorded(std::move(u), std::move(done));
  // The video's id is chosen and recorded first: after a crash, recovery knows whether the video was made.
  u.state = "processing";
  if (u.video_id.empty())
    u.video_id = store::new_id();
  save(u, [this, u, done = std::move(done)](std::optional<Failure> f) mutable {
    if (f) {
      busy_.erase(u.id);
      return done(*f);
    }
    ingest_recorded(std::move(u), std::move(done));
  });
}

void Uploads::ingest_recorded(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done) {
  auto keys = parse_tus_metadata(u.metadata).value_or(std::map<std::string, std::string>{});
  std::string filename;
  auto meta = metadata_from(keys, filename);
  Metadata metadata = std::holds_alternative<Metadata>(meta) ? std::get<Metadata>(meta) : Metadata{};
  IncomingFile file;
  file.path = file_of(u.id);
  file.filename = filename.empty() ? "upload-" + u.id : filename;
  file.size = u.length;
  file.video_id = u.video_id;
  const std::string path = file.path;
  file.keep = [path](const std::string &dest) {
    if (rename(path.c_str(), dest.c_str()) != 0)
      throw Error(ErrorCode::Io, "cannot move the upload to " + dest + ": " + g_strerror(errno));
  };
  file.discard = [path] { unlink(path.c_str()); };
  auto alive = alive_;
  auto ingested = [this, alive, u, done = std::move(done)](Result<Ingested> r) mutable {
    if (!*alive)
      return;
    std::optional<Failure> refusal;
    if (auto *f = std::get_if<Failure>(&r)) {
      refusal = *f;
      u.state = "failed";
      u.video_id.clear();
      u.error = f->message;
      switch (f->refusal) {
      case Refusal::NotMedia: u.error_code = "not_media"; break;
      case Refusal::InvalidParameter: u.error_code = "invalid_parameter"; break;
      case Refusal::QueueFull: u.error_code = "queue_full"; break;
      case Refusal::NoSpace: u.error_code = "insufficient_storage"; break;
      default: u.error_code = "unavailable"; break;
      }
    } else {
      u.state = "completed";
    }
    // The upload's end is recorded before it is announced and answered: a GET after the answer shows it.
    save(u, [this, u, refusal, done = std::move(done)](std::optional<Failure> f) {
      busy_.erase(u.id);
      if (f)
        SLUICE_LOG(uploads_log(), Error, "upload %s: %s", u.id.c_str(), f->message.c_str());
      SLUICE_LOG(uploads_log(), Info, "upload %s %s%s%s", u.id.c_str(), u.state.c_str(),
                 u.state == "completed" ? ": video " : ": ",
                 u.state == "completed" ? u.video_id.c_str() : u.error.c_str());
      publish(u, u.state.c_str());
      if (refusal)
        return done(*refusal);
      done(u);
    });
  };
  if (in_bucket(u))
    return ingest_bucket(std::move(u), std::move(file), metadata, std::move(ingested));
  service_.ingest(std::move(file), metadata, std::move(ingested));
}

} // namespace sluice::app
