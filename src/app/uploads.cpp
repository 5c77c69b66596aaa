// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads: their rows and files, PATCHes made durable, parts joined (uploads_join.cpp), and the hand-over
// to ingest.
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
  try {
    flush_due(true);
  } catch (const std::exception &e) {
    SLUICE_LOG(uploads_log(), Warning, "cannot record the last bytes of uploads: %s", e.what());
  }
  *alive_ = false;
  if (sweep_timer_)
    g_source_remove(sweep_timer_);
  if (flush_timer_)
    g_source_remove(flush_timer_);
}

std::optional<Failure> Uploads::flush(const std::string &id) {
  auto it = unsynced_.find(id);
  if (it == unsynced_.end())
    return std::nullopt;
  const std::int64_t offset = it->second.offset;
  int fd = open(file_of(id).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || fdatasync(fd) != 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return io_failure(e, "cannot write the upload");
  }
  close(fd);
  auto u = service_.store().upload(id);
  unsynced_.erase(id);
  if (u && u->offset < offset) {
    u->offset = offset;
    // A partial upload whose last bytes are on disk now is complete (Uploads::complete left it to this).
    if (u->concat == "partial" && u->offset == u->length && u->state == "receiving")
      u->state = "completed";
    try {
      service_.store().update_upload(*u);
    } catch (const Error &e) {
      return failure_of(e);
    }
  }
  return std::nullopt;
}

void Uploads::flush_due(bool all) {
  // Those due within the next 100 ms too: one wake-up for bytes accepted at about the same time.
  const std::int64_t until = g_get_monotonic_time() + G_USEC_PER_SEC / 10;
  std::vector<std::string> ids;
  for (const auto &[id, u] : unsynced_)
    if (all || u.due <= until)
      ids.push_back(id);
  for (const auto &id : ids)
    if (auto f = flush(id)) {
      SLUICE_LOG(uploads_log(), Warning, "upload %s: %s", id.c_str(), f->message.c_str());
      unsynced_.erase(id); // not tried again and again; its recorded offset stays what is on disk
    }
}

void Uploads::mark_unsynced(const store::ResumableUpload &u, std::int64_t offset) {
  auto [it, added] = unsynced_.try_emplace(u.id);
  it->second.offset = std::max(it->second.offset, offset);
  // The bound runs from the first byte not synced (the bounds stated in docs/api.md): later PATCHes do not push it.
  if (added)
    it->second.due = g_get_monotonic_time() + (u.concat == "partial" ? kPartialSyncWithinUs : kSyncWithinUs);
  flush_soon();
}

void Uploads::flush_soon() {
  std::int64_t first = INT64_MAX;
  for (const auto &[_, u] : unsynced_)
    first = std::min(first, u.due);
  if (first == INT64_MAX || (flush_timer_ && flush_at_ <= first))
    return;
  if (flush_timer_)
    g_source_remove(flush_timer_);
  flush_at_ = first;
  const std::int64_t wait_us = std::max<std::int64_t>(0, first - g_get_monotonic_time());
  flush_timer_ = g_timeout_add(
      static_cast<guint>((wait_us + 999) / 1000),
      [](gpointer p) -> gboolean {
        auto *self = static_cast<Uploads *>(p);
        self->flush_timer_ = 0;
        self->flush_due(false);
        self->flush_soon();
        return G_SOURCE_REMOVE;
      },
      this);
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

void Uploads::start() {
  fs::make_dirs(folder());
  recover();
  guint every = static_cast<guint>(std::clamp<std::int64_t>(service_.config().resumable_expiry_s / 4, 1, 60));
  sweep_timer_ = g_timeout_add_seconds(
      every,
      [](gpointer p) -> gboolean {
        try {
          static_cast<Uploads *>(p)->sweep();
        } catch (const std::exception &e) {
          SLUICE_LOG(uploads_log(), Warning, "sweep: %s", e.what());
        }
        return G_SOURCE_CONTINUE;
      },
      this);
}

void Uploads::remove(const store::ResumableUpload &u) {
  unsynced_.erase(u.id);
  // The row first: without it nothing serves or resumes the file, and a file left alone is removed at startup.
  service_.store().delete_upload(u.id);
  unlink(file_of(u.id).c_str());
}

void Uploads::sweep() {
  const std::int64_t now = now_us();
  for (const auto &u : service_.store().uploads()) {
    if (u.expires > now || busy_.count(u.id) || u.state == "processing")
      continue;
    SLUICE_LOG(uploads_log(), Info, "upload %s expired (%s, %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " bytes)",
               u.id.c_str(), u.state.c_str(), u.offset, u.length);
    remove(u);
  }
  service_.store().forget_direct_uploads(now);
}

void Uploads::recover() {
  std::set<std::string> rows;
  const std::int64_t now = now_us();
  for (auto u : service_.store().uploads()) {
    rows.insert(u.id);
    const std::string path = file_of(u.id);
    const std::int64_t size = fs::file_size(path);
    if (u.state == "processing") {
      // Cut short while it was joined or ingested: done if its video exists, else again from its file.
      if (!u.video_id.empty() && service_.store().video(u.video_id)) {
        u.state = "completed";
        service_.store().update_upload(u);
        unlink(path.c_str());
      } else if (size >= 0 && size == u.length) {
        SLUICE_LOG(uploads_log(), Info, "upload %s: ingest again after a restart", u.id.c_str());
        busy_.insert(u.id);
        ingest(u, [](Result<store::ResumableUpload>) {});
      } else {
        u.state = "failed";
        u.error_code = "interrupted";
        u.error = "the server stopped while the upload was being joined";
        service_.store().update_upload(u);
        unlink(path.c_str());
      }
      continue;
    }
    if (u.expires <= now) {
      remove(u);
      continue;
    }
    if (u.state != "receiving" || is_final(u))
      continue;
    if (size < 0) {
      // Its file is gone: what it held is lost; the client starts again.
      SLUICE_LOG(uploads_log(), Warning, "upload %s: its file is missing; removed", u.id.c_str());
      service_.store().delete_upload(u.id);
    } else if (size < u.offset) {
      u.offset = size; // never more than what is on disk
      service_.store().update_upload(u);
    }
  }
  for (const auto &name : fs::list_dir(folder()))
    if (!rows.count(name))
      fs::remove_all(file_of(name));
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

Result<store::ResumableUpload> Uploads::find(const std::string &id) {
  auto u = store::is_id(id) ? service_.store().upload(id) : std::nullopt;
  if (!u)
    return refused(Refusal::NotFound, "no upload " + id);
  if (u->expires <= now_us())
    return refused(Refusal::Gone, "upload " + id + " has expired");
  if (auto it = unsynced_.find(id); it != unsynced_.end() && it->second.offset > u->offset)
    u->offset = it->second.offset;
  return *u;
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
  if (r.concat != UploadRequest::Concat::Partial) {
    auto spec = service_.job_spec(std::get<Metadata>(meta));
    if (auto *f = std::get_if<Failure>(&spec))
      return done(*f);
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
  u.created = now_us();
  u.expires = u.created + service_.config().resumable_expiry_s * G_USEC_PER_SEC;

  std::vector<store::ResumableUpload> parts;
  if (r.concat == UploadRequest::Concat::Final) {
    if (r.parts.empty())
      return done(refused(Refusal::InvalidField, "Upload-Concat: a final upload names its parts", "Upload-Concat"));
    std::int64_t total = 0;
    u.concat = "final";
    for (const auto &id : r.parts) {
      auto p = find(id);
      if (auto *f = std::get_if<Failure>(&p))
        return done(*f);
      auto &part = std::get<store::ResumableUpload>(p);
      if (part.concat != "partial" || part.length < 0 || part.offset != part.length || busy_.count(id))
        return done(refused(Refusal::InvalidField, "Upload-Concat: upload " + id + " is not a complete partial upload",
                            "Upload-Concat"));
      if (std::find_if(parts.begin(), parts.end(), [&](const auto &q) { return q.id == id; }) != parts.end())
        return done(refused(Refusal::InvalidField, "Upload-Concat: upload " + id + " is named twice", "Upload-Concat"));
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
  } else {
    if (r.concat == UploadRequest::Concat::Partial)
      u.concat = "partial";
    if (u.length > limit)
      return done(refused(Refusal::TooLarge, "the upload is " + std::to_string(u.length) + " bytes; at most " +
                                                 std::to_string(limit) + " are accepted"));
    if (u.length == 0 && r.concat != UploadRequest::Concat::Partial)
      return done(refused(Refusal::NotMedia, "the uploaded file is empty", "file"));
  }

  try {
    // The file before the row: a row never names a file that is not there.
    fs::make_dirs(folder());
    int fd = open(file_of(u.id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
      return done(io_failure(errno, "cannot create the upload's file"));
    close(fd);
    service_.store().add_upload(u);
  } catch (const Error &e) {
    unlink(file_of(u.id).c_str());
    return done(failure_of(e));
  }
  SLUICE_LOG(uploads_log(), Info, "upload %s created (%" G_GINT64_FORMAT " bytes%s)", u.id.c_str(), u.length,
             u.concat.empty() ? "" : (", " + u.concat.substr(0, u.concat.find(' '))).c_str());
  if (parts.empty())
    return done(u);
  join(std::move(u), std::move(parts), std::move(done));
}

void Uploads::join(store::ResumableUpload u, std::vector<store::ResumableUpload> parts,
                   std::function<void(Result<store::ResumableUpload>)> done) {
  for (const auto &p : parts) {
    busy_.insert(p.id);
    // Their bytes are synced in the joined file (below), not where they are now.
    unsynced_.erase(p.id);
  }
  busy_.insert(u.id);
  std::vector<std::string> sources;
  for (const auto &p : parts)
    sources.push_back(file_of(p.id));
  const std::string dest = file_of(u.id);
  auto alive = alive_;
  // Copying gigabytes takes seconds: off the main loop (copy_file_range shares blocks where the file system can).
  std::thread([this, alive, u, parts, sources, dest, done = std::move(done)]() mutable {
    const std::int64_t started = g_get_monotonic_time();
    std::int64_t copied = started;
    const int err = join_files(sources, parts, dest, copied);
    const std::int64_t synced = g_get_monotonic_time();
    post([this, alive, u, parts, err, started, copied, synced, done = std::move(done)]() mutable {
      if (!*alive)
        return;
      for (const auto &p : parts)
        busy_.erase(p.id);
      if (err) {
        busy_.erase(u.id);
        SLUICE_LOG(uploads_log(), Error, "upload %s: cannot join its parts: %s", u.id.c_str(), g_strerror(err));
        // The first part's file may be the joined one already: the parts go with it.
        try {
          remove(u);
          for (const auto &p : parts)
            remove(p);
        } catch (const Error &) {
        }
        return done(io_failure(err, "cannot join the parts of the upload (they are removed; send them again)"));
      }
      SLUICE_LOG(uploads_log(), Info,
                 "upload %s: %zu parts joined (%" G_GINT64_FORMAT " bytes appended in %.2f s, synced in %.2f s)",
                 u.id.c_str(), parts.size(), u.length - parts[0].length, (copied - started) / 1e6,
                 (synced - copied) / 1e6);
      // The parts are in the final file: they go.
      for (const auto &p : parts) {
        try {
          remove(p);
        } catch (const Error &e) {
          SLUICE_LOG(uploads_log(), Warning, "upload %s: %s", p.id.c_str(), e.what());
        }
      }
      ingest(std::move(u), std::move(done));
    });
  }).detach();
}

std::optional<Failure> Uploads::terminate(const std::string &id) {
  auto found = find(id);
  if (auto *f = std::get_if<Failure>(&found))
    return *f;
  auto &u = std::get<store::ResumableUpload>(found);
  if (busy_.count(id))
    return refused(Refusal::Locked, "upload " + id + " is being written or processed; try again when it is done");
  try {
    remove(u);
  } catch (const Error &e) {
    return failure_of(e);
  }
  SLUICE_LOG(uploads_log(), Info, "upload %s terminated", id.c_str());
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Completion

void Uploads::complete(const std::string &id, std::function<void(Result<store::ResumableUpload>)> done) {
  auto found = find(id);
  if (auto *f = std::get_if<Failure>(&found))
    return done(*f);
  auto u = std::get<store::ResumableUpload>(std::move(found));
  if (u.length < 0 || u.offset != u.length || u.state != "receiving")
    return done(u);
  if (u.concat == "partial") {
    // Its bytes go to disk once: in the final upload's file when a final names it within kPartialSyncWithinUs, else
    // where they are (flush() then records it completed, as it does when a HEAD or GET asks first).
    if (!unsynced_.count(id)) {
      u.state = "completed";
      service_.store().update_upload(u);
    }
    return done(u);
  }
  // Every byte on disk and recorded before the file is handed on.
  if (auto f = flush(id))
    return done(*f);
  busy_.insert(u.id);
  ingest(std::move(u), std::move(done));
}

void Uploads::ingest(store::ResumableUpload u, std::function<void(Result<store::ResumableUpload>)> done) {
  // The video's id is chosen and recorded first: after a crash, recovery knows whether the video was made.
  u.state = "processing";
  if (u.video_id.empty())
    u.video_id = store::new_id();
  try {
    service_.store().update_upload(u);
  } catch (const Error &e) {
    busy_.erase(u.id);
    return done(failure_of(e));
  }
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
  service_.ingest(std::move(file), metadata, [this, alive, u, done = std::move(done)](Result<Ingested> r) mutable {
    if (!*alive)
      return;
    busy_.erase(u.id);
    if (auto *f = std::get_if<Failure>(&r)) {
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
    try {
      service_.store().update_upload(u);
    } catch (const Error &e) {
      SLUICE_LOG(uploads_log(), Error, "upload %s: %s", u.id.c_str(), e.what());
    }
    SLUICE_LOG(uploads_log(), Info, "upload %s %s%s%s", u.id.c_str(), u.state.c_str(),
               u.state == "completed" ? ": video " : ": ",
               u.state == "completed" ? u.video_id.c_str() : u.error.c_str());
    publish(u, u.state.c_str());
    if (auto *f = std::get_if<Failure>(&r))
      return done(*f);
    done(u);
  });
}

} // namespace sluice::app
