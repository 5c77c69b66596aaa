// SPDX-License-Identifier: LGPL-2.1-or-later
// The operator's figures: jobs by state, jobs and transcode speed per minute over the last hour, recent failures,
// and the disk or bucket use of the stored files (measured now and then, never per request).
#pragma once

#include "store/store.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::storage {
class Storage;
}

namespace sluice::app {

// One minute of the last hour: the jobs that ended in it, and the speed of its streaming jobs (hls, cmaf) that
// succeeded: their media seconds over the wall seconds they ran (0 when none).
struct StatsMinute {
  int succeeded = 0, failed = 0;
  double media_s = 0, wall_s = 0;
};

struct FailedJob {
  store::Job job;
  std::string video_title; // "" when the video is gone
};

struct Stats {
  static constexpr int kMinutes = 60;
  static constexpr int kFailures = 10;
  std::int64_t now = 0;
  std::int64_t window_start = 0; // the first minute's start (microseconds); the last minute is the current one
  std::array<int, 5> by_state{}; // queued, running, succeeded, failed, canceled (store::JobState's order)
  std::array<StatsMinute, kMinutes> minutes{};
  std::vector<FailedJob> failures; // the newest failed jobs, newest first (at most kFailures)
  std::vector<store::Stream> streams;
};

// Reads the figures from the catalog (a store call: run it on the executor). Of the succeeded and the failed jobs,
// the newest few thousand of each are looked at, which covers an hour of any queue this catalog serves.
Stats read_stats(store::Store &store, std::int64_t now);

// What the stored files take: the data folder's files (walked) or, with [storage], the bucket's objects under its
// prefix (listed). Measuring may take long, so it is done on a thread of its own, at most once a minute (a bucket:
// once every ten minutes); disk_use() answers at once with the latest measurement and starts the next one when it
// is due. Before the first is done, used_bytes and files are -1.
struct DiskUse {
  std::string kind; // "folder" or "bucket"
  std::string where;
  std::int64_t used_bytes = -1;
  std::int64_t files = -1;
  std::int64_t measured = 0; // microseconds since the epoch; 0: not yet
};
DiskUse disk_use(const std::string &data_dir, storage::Storage *storage);

} // namespace sluice::app
