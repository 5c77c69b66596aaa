// SPDX-License-Identifier: LGPL-2.1-or-later
// A live stream's HLS output: sliding media playlists the engine writes itself, old segments deleted, the master.
#pragma once

#include "pipeline/render.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace sluice::live {

struct LiveSegment {
  std::string uri;
  double duration = 0.0;
  std::int64_t date_us = 0; // wall time of its first frame, microseconds since the epoch (0: unknown)
  bool discontinuity = false;
};

struct LivePlaylist {
  std::int64_t media_sequence = 0;
  std::int64_t discontinuity_sequence = 0;
  int target_duration = 2;
  bool ended = false;
  std::deque<LiveSegment> segments;
};

// The text of a live media playlist: version 3, a PROGRAM-DATE-TIME before every segment that has one,
// DISCONTINUITY where a new publisher began, ENDLIST once ended.
std::string write_live_playlist(const LivePlaylist &pl);

// "2026-11-26T12:01:40.887Z"
std::string format_date(std::int64_t unix_us);

// The files of one stream's live output (DATA/streams/ID/): per rendition NAME.m3u8 and its segments, and
// master.m3u8 once every rendition has a segment. Used on the main loop only.
class Output {
public:
  // window_segments: segments a media playlist lists; keep_extra: segments kept on disk after they left it
  // (a player that read the playlist just before may still fetch them).
  Output(std::string dir, int window_segments, int keep_extra);

  // A ladder begins. The same renditions as before continue their playlists; other ones start over: every
  // file of the earlier output is deleted.
  void begin(const std::vector<pipeline::RenditionSpec> &renditions, double frame_rate, bool audio, int session);
  // A segment of rendition `index` made by the ladder of `session` is complete: listed (after a discontinuity
  // when the session changed), the window slides, files that left it are deleted, and the master is written
  // once every rendition has a segment. A segment of an earlier session than the last one listed is deleted
  // instead. Throws sluice::Error on I/O errors.
  void add(std::size_t index, int session, LiveSegment segment);
  // ENDLIST on every media playlist (nothing when none has a segment).
  void end();
  // Deletes every file of the output and forgets it.
  void clear();

  bool master_written() const { return master_written_; }
  bool has_segments() const;
  bool ended() const { return ended_; }
  const std::string &dir() const { return dir_; }

private:
  struct Rendition {
    pipeline::RenditionSpec spec;
    LivePlaylist playlist;
    std::deque<std::string> stale; // left the playlist, still on disk
    int session = 0;               // of the last segment listed
  };
  void write_playlist(const Rendition &r) const;
  void write_master();

  std::string dir_;
  std::size_t window_;
  std::size_t keep_extra_;
  std::vector<Rendition> renditions_;
  double frame_rate_ = 0.0;
  int first_session_ = 0; // segments of earlier ladders are not this output's
  bool audio_ = false;
  bool master_written_ = false;
  bool ended_ = false;
};

// Writes a file through a temporary name and a rename, without syncing (live playlists are rewritten every
// few seconds and are worthless after a crash). Throws sluice::Error (Io).
void write_replace(const std::string &path, const std::string &contents);

} // namespace sluice::live
