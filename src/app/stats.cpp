// SPDX-License-Identifier: LGPL-2.1-or-later
// The operator's figures (app/stats.h): read from the catalog, and the stored files' use measured on a thread.
#include "app/stats.h"

#include "app/service_internal.h"
#include "core/error.h"
#include "core/json.h"
#include "storage/storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

namespace sluice::app {

using namespace detail;

namespace {

constexpr std::int64_t kMinuteUs = 60 * G_USEC_PER_SEC;
// How many of the newest succeeded (and failed) jobs are looked at.
constexpr int kJobsLooked = 5000;

// Whether a succeeded job made a streaming package, and its media seconds (result_json's output and duration).
double streamed_seconds(const store::Job &j) {
  if (j.result_json.empty())
    return 0;
  try {
    json::Node n = json::parse(j.result_json, "result");
    JsonObject *o = json::require_object(n.get(), "result");
    const auto output = json::opt_string(o, "output", "result");
    if (!output || (*output != "hls" && *output != "cmaf"))
      return 0;
    return json::opt_number(o, "duration", "result").value_or(0);
  } catch (const Error &) {
    return 0;
  }
}

} // namespace

Stats read_stats(store::Store &store, std::int64_t now) {
  Stats s;
  s.now = now;
  s.window_start = (now / kMinuteUs - (Stats::kMinutes - 1)) * kMinuteUs;
  for (auto state : {store::JobState::Queued, store::JobState::Running, store::JobState::Succeeded,
                     store::JobState::Failed, store::JobState::Canceled})
    s.by_state[static_cast<std::size_t>(state)] = store.count_jobs(state);

  auto minute_of = [&](const store::Job &j) -> StatsMinute * {
    if (j.finished < s.window_start || j.finished >= s.window_start + Stats::kMinutes * kMinuteUs)
      return nullptr;
    return &s.minutes[static_cast<std::size_t>((j.finished - s.window_start) / kMinuteUs)];
  };
  store::JobFilter f;
  f.limit = kJobsLooked;
  f.state = store::JobState::Succeeded;
  for (const auto &j : store.jobs(f)) {
    StatsMinute *m = minute_of(j);
    if (!m)
      continue;
    m->succeeded++;
    const double media = streamed_seconds(j);
    if (media > 0 && j.started > 0 && j.finished > j.started) {
      m->media_s += media;
      m->wall_s += static_cast<double>(j.finished - j.started) / G_USEC_PER_SEC;
    }
  }
  f.state = store::JobState::Failed;
  std::vector<store::Job> failed = store.jobs(f);
  for (const auto &j : failed)
    if (StatsMinute *m = minute_of(j))
      m->failed++;
  std::stable_sort(failed.begin(), failed.end(),
                   [](const store::Job &a, const store::Job &b) { return a.finished > b.finished; });
  std::map<std::string, std::string> titles;
  for (auto &j : failed) {
    if (s.failures.size() >= static_cast<std::size_t>(Stats::kFailures))
      break;
    if (!titles.count(j.video_id)) {
      auto v = store.video(j.video_id);
      titles[j.video_id] = v ? v->title : "";
    }
    std::string title = titles[j.video_id];
    s.failures.push_back({std::move(j), std::move(title)});
  }
  s.streams = store.streams();
  return s;
}

// ---------------------------------------------------------------------------------------------
// Disk use

namespace {

struct Measure {
  std::int64_t bytes = 0, files = 0;
};

// The regular files under the folder `dir` (opened at dirfd), links not followed.
void walk(int dirfd, Measure &m, int depth) {
  DIR *d = fdopendir(dirfd);
  if (!d) {
    close(dirfd);
    return;
  }
  while (struct dirent *e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..")
      continue;
    struct stat st;
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;
    if (S_ISREG(st.st_mode)) {
      m.bytes += st.st_size;
      m.files++;
    } else if (S_ISDIR(st.st_mode) && depth < 32) {
      int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0)
        walk(sub, m, depth + 1);
    }
  }
  closedir(d);
}

Measure measure_folder(const std::string &dir) {
  Measure m;
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot open " + dir);
  walk(fd, m, 0);
  return m;
}

Measure measure_bucket(storage::Storage &storage) {
  Measure m;
  for (const auto &o : storage.list("")) {
    m.bytes += o.size;
    m.files++;
  }
  return m;
}

// The latest measurement, shared by every request (one server per process).
struct DiskCache {
  std::mutex mu;
  DiskUse use;
  std::int64_t started = 0; // when the measurement in progress (or the latest) began; 0: never
  bool running = false;
};

DiskCache &disk_cache() {
  static DiskCache *cache = new DiskCache; // left to the end of the process: a measuring thread may outlive the server
  return *cache;
}

} // namespace

DiskUse disk_use(const std::string &data_dir, storage::Storage *storage) {
  DiskCache &c = disk_cache();
  const std::string kind = storage ? "bucket" : "folder";
  const std::string where = storage ? storage->describe() : data_dir;
  const std::int64_t every = (storage ? 600 : 60) * G_USEC_PER_SEC;
  const std::int64_t now = g_get_real_time();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.use.where != where || c.use.kind != kind) {
    c.use = DiskUse{kind, where};
    c.started = 0;
  }
  if (!c.running && (c.started == 0 || now - c.started >= every)) {
    c.running = true;
    c.started = now;
    try {
      std::thread([&c, data_dir, storage, kind, where] {
        Measure m;
        bool ok = true;
        try {
          m = storage ? measure_bucket(*storage) : measure_folder(data_dir);
        } catch (const std::exception &e) {
          ok = false;
          SLUICE_LOG(app_log(), Warning, "cannot measure the use of %s: %s", where.c_str(), e.what());
        }
        std::lock_guard<std::mutex> done(c.mu);
        c.running = false;
        if (ok && c.use.where == where && c.use.kind == kind) {
          c.use.used_bytes = m.bytes;
          c.use.files = m.files;
          c.use.measured = g_get_real_time();
        }
      }).detach();
    } catch (const std::system_error &e) {
      c.running = false;
      SLUICE_LOG(app_log(), Warning, "cannot start a thread to measure %s: %s", where.c_str(), e.what());
    }
  }
  return c.use;
}

} // namespace sluice::app
