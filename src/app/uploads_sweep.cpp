// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads over time: the start (the folder, the recovery of what a restart cut), the sweep of expired
// uploads, and the removal of their rows and files.
#include "app/uploads.h"

#include "app/uploads_internal.h"

#include "core/fs.h"
#include "core/log.h"
#include "core/mainloop.h"

#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

namespace sluice::app {

using namespace uploads_detail;

void Uploads::start() {
  storage_ = service_.scheduler().storage();
  bucket_ = storage_ ? storage_->multipart() : nullptr;
  holder_ = service_.scheduler().worker_name();
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

void Uploads::remove(std::vector<store::ResumableUpload> rows) {
  if (rows.empty())
    return;
  std::vector<std::string> ids;
  for (const auto &u : rows)
    ids.push_back(u.id);
  // The rows first: without them nothing serves or resumes the files, and a file left alone is removed at startup.
  service_.executor().run(
      [ids](store::Store &s) {
        for (const auto &id : ids)
          s.delete_upload(id);
        return true;
      },
      [this, alive = alive_, rows = std::move(rows)](store::Outcome<bool> &o) {
        if (!*alive)
          return;
        if (!o.ok()) {
          SLUICE_LOG(uploads_log(), Warning, "cannot remove %zu uploads: %s", rows.size(), o.error->what());
          return; // rows and files stay: the sweep or the next start removes them
        }
        for (const auto &u : rows)
          unlink(file_of(u.id).c_str());
        // Their objects in the bucket (a partial upload's), and multipart uploads not completed.
        abort_multiparts(rows);
      });
}

void Uploads::sweep() {
  // One at a time: a catalog that does not answer gets no pile of sweeps. What is busy now (a PATCH running since
  // before its upload expired, an ingest) is left to the next one; an expired upload takes no new PATCH (Gone).
  if (sweeping_)
    return;
  sweeping_ = true;
  const std::int64_t now = now_us();
  std::set<std::string> busy = busy_;
  struct Swept {
    std::vector<std::string> ids;
    std::vector<store::ResumableUpload> rows, left;
  };
  const bool has_bucket = bucket_ != nullptr;
  service_.executor().run(
      [now, busy, has_bucket](store::Store &s) {
        Swept out;
        for (auto &u : s.uploads()) {
          if (u.expires > now || busy.count(u.id) || u.state == "processing")
            continue;
          // The row first, in the same call: the file goes only once it is gone.
          if (s.delete_upload(u.id))
            out.rows.push_back(std::move(u));
        }
        s.forget_direct_uploads(now);
        if (has_bucket)
          out.left = s.uploads();
        return out;
      },
      [this, alive = alive_, now](store::Outcome<Swept> &o) {
        if (!*alive)
          return;
        sweeping_ = false;
        if (!o.ok()) {
          SLUICE_LOG(uploads_log(), Warning, "sweep: %s", o.error->what());
          return;
        }
        for (const auto &u : o.value->rows) {
          SLUICE_LOG(uploads_log(), Info, "upload %s expired (%s, %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " bytes)",
                     u.id.c_str(), u.state.c_str(), u.offset, u.length);
          unlink(file_of(u.id).c_str());
        }
        abort_multiparts(o.value->rows);
        if (bucket_)
          remove_leftovers(o.value->left, now);
      });
}

void Uploads::recover() {
  std::set<std::string> rows;
  const std::int64_t now = now_us();
  std::vector<store::ResumableUpload> expired;
  for (auto u : service_.store().uploads()) {
    rows.insert(u.id);
    const std::string path = file_of(u.id);
    const std::int64_t size = fs::file_size(path);
    // [storage] in a bucket: another process's upload is not this one's to recover (its file here, if any, is a
    // leftover of an upload taken over), unless this one was cut while it ingested it (under another name).
    const bool elsewhere = !u.holder.empty() && u.holder != holder_;
    if (elsewhere && !(u.state == "processing" && size >= 0)) {
      if (u.expires <= now && service_.store().delete_upload(u.id))
        expired.push_back(u);
      if (size >= 0)
        unlink(path.c_str());
      continue;
    }
    if (u.state == "processing") {
      // Cut short while it was joined or ingested: done if its video exists, else again from its file.
      if (!u.video_id.empty() && service_.store().video(u.video_id)) {
        u.state = "completed";
        service_.store().update_upload(u);
        unlink(path.c_str());
      } else if (size >= 0 && size == u.length) {
        SLUICE_LOG(uploads_log(), Info, "upload %s: ingest again after a restart", u.id.c_str());
        if (!u.multipart.empty() && u.held_from == 0) {
          // Its multipart upload may have been completed (or be gone) before the cut: the whole file, here, is sent
          // again as a new one, and the old one aborted.
          abort_multiparts({u});
          u.multipart.clear();
          u.parts.clear();
        }
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
      service_.store().delete_upload(u.id);
      unlink(path.c_str());
      expired.push_back(u);
      continue;
    }
    if (u.state != "receiving" || is_final(u))
      continue;
    if (in_bucket(u)) {
      // What the file lacks is sent again from the end of the parts (the bucket holds those).
      const std::int64_t stored = store::parts_bytes(u.parts);
      if (size >= u.offset)
        continue;
      if (size < stored) {
        u.offset = u.held_from = stored;
      } else {
        u.offset = size;
      }
      service_.store().update_upload(u);
      continue;
    }
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
  abort_multiparts(expired);
}

} // namespace sluice::app
