// SPDX-License-Identifier: LGPL-2.1-or-later
// A running job's live playlists in object storage: segments uploaded as they complete, then EVENT playlists that list
// only uploaded segments, then the master, under a prefix of the attempt, so that any api process can serve them.
#pragma once

#include "storage/storage.h"

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::jobs {

// Where one attempt of a running job puts its live files: "videos/ID/PIPELINE/live-JOB-TOKEN/" (the claim's fencing
// token: every attempt writes a prefix of its own).
std::string live_prefix(const std::string &video_id, const std::string &pipeline, const std::string &job_id,
                        std::int64_t token);

// Mirrors a running job's working folder into storage from a thread of its own (never the main loop):
// - every segment (and CMAF init segment) its media playlists list, once, when it is listed (hlssink2 and the CMAF
//   splitter list a segment once it is complete);
// - then each media playlist, rewritten as an EVENT playlist (no ENDLIST) that lists only the segments uploaded, in
//   order, once it lists one;
// - then the master playlist, once every playlist it names is there.
// At the start the prefixes of the job's earlier attempts are removed (an attempt that died leaves its own). Once
// ended (destroyed), the thread removes this attempt's prefix after its last upload, and exits.
class LiveUpload {
public:
  // storage must outlive the thread (the server's, which lives as long as the process). `master` is the master
  // playlist's file name in `work` ("master.m3u8").
  LiveUpload(storage::Storage &storage, std::string work, std::string master, std::string video_id,
             std::string pipeline, std::string job_id, std::int64_t token);
  // end().
  ~LiveUpload();
  LiveUpload(const LiveUpload &) = delete;
  LiveUpload &operator=(const LiveUpload &) = delete;

  // Something new may be listed in the working folder: the thread looks again (pokes coalesce). Cheap, never blocks.
  void poke();
  // The working folder is going away: nothing more is looked at or uploaded (what is uploaded stays served).
  void stop();
  // The attempt is over (its package published and recorded, or not): after its current upload the thread removes
  // the prefix and ends. Never blocks.
  void end();
  const std::string &prefix() const;

  struct State;

private:
  std::shared_ptr<State> state_;
};

} // namespace sluice::jobs
