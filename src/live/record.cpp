// SPDX-License-Identifier: LGPL-2.1-or-later
// The recording of a live stream: its top rung's segments kept during the event, then ingested as one video.
#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "live/engine_internal.h"

#include <glib/gstdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

constexpr const char *kPrefix = "rec-";

// "rec-000042.ts" -> 42 (-1: not a kept segment).
int kept_number(const std::string &name) {
  if (!g_str_has_prefix(name.c_str(), kPrefix) || !g_str_has_suffix(name.c_str(), ".ts"))
    return -1;
  const std::string digits = name.substr(4, name.size() - 7);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9)
    return -1;
  return std::stoi(digits);
}

// Appends the kept segments of `parts` (in their order) to one new file `out`; throws Error (Io).
std::int64_t concatenate(const std::string &parts, const std::string &out) {
  FILE *o = std::fopen(out.c_str(), "wbe");
  if (!o)
    throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
  std::int64_t total = 0;
  std::vector<char> buf(1 << 20);
  try {
    for (const auto &name : fs::list_dir(parts)) {
      if (kept_number(name) < 0)
        continue;
      const std::string path = fs::join(parts, name);
      FILE *in = std::fopen(path.c_str(), "rbe");
      if (!in)
        throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno));
      std::size_t n;
      while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0) {
        if (std::fwrite(buf.data(), 1, n, o) != n) {
          const int e = errno;
          std::fclose(in);
          throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(e));
        }
        total += static_cast<std::int64_t>(n);
      }
      const bool bad = std::ferror(in);
      std::fclose(in);
      if (bad)
        throw Error(ErrorCode::Io, "cannot read " + path);
    }
    if (std::fflush(o) != 0 || fsync(fileno(o)) != 0)
      throw Error(ErrorCode::Io, "cannot write " + out + ": " + g_strerror(errno));
  } catch (...) {
    std::fclose(o);
    g_unlink(out.c_str());
    throw;
  }
  std::fclose(o);
  return total;
}

} // namespace

Recorder::Recorder(app::Streams &streams, std::string stream_id, std::string title)
    : streams_(streams), id_(std::move(stream_id)), title_(std::move(title)), dir_(streams.folder(id_) + ".rec") {
  // Segments kept before the server stopped belong to the same event (it has not ended).
  for (const auto &name : fs::list_dir(dir_)) {
    const int n = kept_number(name);
    if (n < 0)
      continue;
    count_++;
    next_ = std::max(next_, n + 1);
  }
  if (count_ > 0)
    GST_INFO("stream %s: %d recorded segments taken up", id_.c_str(), count_);
}

void Recorder::add(const std::string &segment_path) {
  try {
    fs::make_dirs(dir_);
  } catch (const Error &e) {
    GST_WARNING("stream %s: not recorded: %s", id_.c_str(), e.what());
    return;
  }
  char name[32];
  std::snprintf(name, sizeof name, "%s%06d.ts", kPrefix, next_);
  const std::string dest = fs::join(dir_, name);
  // A second name for the same file: the live window deletes its own name, the recording keeps this one.
  if (link(segment_path.c_str(), dest.c_str()) != 0) {
    GST_WARNING("stream %s: segment %s not recorded: %s", id_.c_str(), segment_path.c_str(), g_strerror(errno));
    return;
  }
  next_++;
  count_++;
}

void Recorder::discard() {
  fs::remove_all(dir_);
  count_ = 0;
  next_ = 0;
}

void Recorder::finish(DoneFn done) {
  if (count_ == 0)
    return;
  // The kept segments leave the stream's hands at once (a publisher may start the next event right away): into
  // the uploads folder, which startup empties, so that nothing half made outlives a crash.
  app::Service &service = streams_.service();
  const std::string uploads = service.scheduler().layout().uploads_dir();
  const std::string stem = fs::join(uploads, "live-" + id_ + "-" + std::to_string(g_get_real_time()));
  const std::string parts = stem + ".parts", out = stem + ".ts";
  try {
    fs::make_dirs(uploads);
    if (g_rename(dir_.c_str(), parts.c_str()) != 0)
      throw Error(ErrorCode::Io, "cannot move " + dir_ + ": " + g_strerror(errno));
  } catch (const Error &e) {
    GST_WARNING("stream %s: the recording is not saved: %s", id_.c_str(), e.what());
    done("", e.what());
    return;
  }
  const int segments = count_;
  count_ = 0;
  next_ = 0;
  GST_INFO("stream %s: saving the recording (%d segments)", id_.c_str(), segments);
  app::Metadata meta;
  meta.title = title_.empty() ? "Recording of stream " + id_ : title_;
  // The copy runs on a thread of its own; the service is there as long as the main loop runs.
  std::thread([&service, id = id_, parts, out, meta, done = std::move(done)]() mutable {
    std::int64_t size = -1;
    std::string error;
    try {
      size = concatenate(parts, out);
    } catch (const Error &e) {
      error = e.what();
    }
    fs::remove_all(parts);
    post([&service, id, out, size, error, meta, done]() {
      if (!error.empty()) {
        GST_WARNING("stream %s: the recording is not saved: %s", id.c_str(), error.c_str());
        return done("", error);
      }
      app::IncomingFile file;
      file.path = out;
      file.filename = "live-" + id + ".ts";
      file.size = size;
      file.keep = [out](const std::string &dest) {
        if (g_rename(out.c_str(), dest.c_str()) != 0)
          throw Error(ErrorCode::Io, "cannot move " + out + " to " + dest + ": " + g_strerror(errno));
      };
      file.discard = [out] { g_unlink(out.c_str()); };
      service.ingest(std::move(file), meta, [id, done](app::Result<app::Ingested> r) {
        if (auto *f = std::get_if<app::Failure>(&r)) {
          GST_WARNING("stream %s: the recording was refused: %s", id.c_str(), f->message.c_str());
          return done("", f->message);
        }
        const auto &v = std::get<app::Ingested>(r).video;
        GST_INFO("stream %s: recorded as video %s", id.c_str(), v.id.c_str());
        done(v.id, "");
      });
    });
  }).detach();
}

} // namespace sluice::live
