// SPDX-License-Identifier: LGPL-2.1-or-later
// What the parts of the job scheduler share: its debug category, a job it runs, the progress members of its JSON.
#pragma once

#include "jobs/live_upload.h"
#include "jobs/scheduler.h"

#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(sluice_jobs_debug);

namespace sluice::jobs {

// A job the scheduler is planning or running.
struct Scheduler::Active {
  store::Job job;
  std::string out, work;
  std::unique_ptr<Transcode> transcode; // null while planning
  std::optional<Progress> progress;
  bool cancel_requested = false;
  bool lease_lost = false;       // the catalog says another claim or a cancel holds it now: nothing is written
  std::int64_t leased_until = 0; // as last renewed
  bool shutdown_requested = false;
  bool done = false;
  bool master_written = false;
  std::vector<std::function<void()>> on_stopped;
  // With [storage]: where this attempt's package was uploaded ("" : none), removed unless its end is recorded.
  std::string package_prefix;
  // With [storage]: a streaming job's live playlists mirrored to storage for other processes (jobs/live_upload.h).
  // Declared last: destroyed first, and its end removes them once the job's end is written.
  std::unique_ptr<LiveUpload> live_upload;
  // Segments or playlists may have changed in the working folder.
  void live_changed() {
    if (live_upload && transcode && !transcode->finishing())
      live_upload->poke();
  }
};

namespace detail {

// The progress members of a job's JSON and of a "progress" event: seconds, rounded for people.
void set_progress_members(JsonObject *o, const Progress &p);

} // namespace detail

} // namespace sluice::jobs
