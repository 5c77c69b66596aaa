// SPDX-License-Identifier: LGPL-2.1-or-later
// A live stream's output: sliding media playlists the engine writes itself (MPEG-TS, or CMAF with HLS v7 and a
// dynamic DASH MPD over the same segments), old segments deleted, the master.
#pragma once

#include "media/bmff.h"
#include "pipeline/render.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace sluice::live {

struct LiveSegment {
  std::string uri;
  double duration = 0.0;
  std::int64_t date_us = 0; // wall time of its first frame, microseconds since the epoch (0: unknown)
  bool discontinuity = false;
  int session = 0; // of the ladder that made it (set when it is listed)
  // CMAF (live-cmaf): the init segment it plays with (EXT-X-MAP), its decode time and duration in the track's
  // timescale, its number in its session (DASH $Number$), its size, whether it starts with a keyframe, and the
  // track as its movie header describes it.
  std::string map;
  std::uint64_t decode_time = 0, ticks = 0;
  std::uint32_t timescale = 0;
  int number = 0;
  std::int64_t bytes = 0;
  bool keyframe = false;
  media::Mp4Track track;
};

struct LivePlaylist {
  std::int64_t media_sequence = 0;
  std::int64_t discontinuity_sequence = 0;
  int target_duration = 2;
  bool ended = false;
  std::deque<LiveSegment> segments;
};

// The text of a live media playlist: version 3 (version 7 with an EXT-X-MAP before the first segment of each
// init segment, for CMAF), a PROGRAM-DATE-TIME before every segment that has one, DISCONTINUITY where a new
// publisher began, ENDLIST once ended.
std::string write_live_playlist(const LivePlaylist &pl);

// One Representation of a live MPD: a CMAF track and the segments it lists now (of one or more sessions).
struct LiveMpdTrack {
  std::string id; // its folder too: "720p", "audio"
  bool video = true;
  std::int64_t bandwidth = 0;
  std::string frame_rate; // "25", "30000/1001"; "" for audio
  const std::deque<LiveSegment> *segments = nullptr;
};

struct LiveMpd {
  std::int64_t availability_start_us = 0;       // wall time of the presentation's start
  std::int64_t publish_us = 0;                  // when this MPD was written
  std::map<int, std::int64_t> session_start_us; // per session: the wall time of its ladder's running time 0
  double window_s = 8, segment_s = 2;           // timeShiftBufferDepth; minimumUpdatePeriod, minBufferTime
  bool ended = false;                           // static, with mediaPresentationDuration
  std::string time_url; // where players read the server's clock (UTCTiming http-head: its Date header); \"\": none
  std::vector<LiveMpdTrack> tracks;
};

// The MPD of a live CMAF output (ISO/IEC 23009-1, isoff-live): type="dynamic" while live, one Period per
// publisher session (mp4mux starts each session's decode times again) with a SegmentTemplate and SegmentTimeline
// per Representation over the listed .m4s files; type="static" once ended, its Periods moved to start at 0.
std::string write_live_mpd(const LiveMpd &mpd);

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
  // file of the earlier output is deleted. cmaf: live-cmaf, where the audio is a track of its own (the index
  // after the renditions) and manifest.mpd is written too.
  void begin(const std::vector<pipeline::RenditionSpec> &renditions, double frame_rate, bool audio, int session,
             bool cmaf = false, int segment_seconds = 2);
  // A segment of rendition `index` made by the ladder of `session` is complete: listed (after a discontinuity
  // when the session changed), the window slides, files that left it are deleted, and the master is written
  // once every rendition has a segment. A segment of an earlier session than the last one listed is deleted
  // instead. Throws sluice::Error on I/O errors.
  void add(std::size_t index, int session, LiveSegment segment);
  // ENDLIST on every media playlist (nothing when none has a segment).
  void end();
  // Deletes every file of the output and forgets it.
  void clear();

  // The URL path of the MPD as it is served ("/streams/ID/manifest.mpd"): the MPD's UTCTiming points players at
  // it, so that they take the server's clock from its Date header (not from a time server on the Internet).
  void set_time_url(std::string url) { time_url_ = std::move(url); }

  bool master_written() const { return master_written_; }
  bool has_segments() const;
  bool ended() const { return ended_; }
  const std::string &dir() const { return dir_; }

private:
  struct Rendition {
    pipeline::RenditionSpec spec; // the audio track of CMAF: named "audio", no picture
    LivePlaylist playlist;
    std::deque<LiveSegment> stale; // left the playlist, still on disk
    std::deque<std::string> inits; // CMAF init segments on disk, oldest first
    int session = 0;               // of the last segment listed
  };
  void write_playlist(const Rendition &r) const;
  void write_master();
  void write_master_cmaf();
  void write_mpd();
  void forget_inits(Rendition &r);

  std::string dir_;
  std::size_t window_;
  std::size_t keep_extra_;
  std::vector<Rendition> renditions_;
  double frame_rate_ = 0.0;
  int first_session_ = 0; // segments of earlier ladders are not this output's
  bool audio_ = false;
  bool cmaf_ = false;
  int segment_seconds_ = 2;
  std::string time_url_;
  std::int64_t availability_start_us_ = 0;       // CMAF: the MPD's availabilityStartTime
  std::map<int, std::int64_t> session_start_us_; // CMAF: per session, the wall time of its running time 0
  bool master_written_ = false;
  bool ended_ = false;
};

// Writes a file through a temporary name and a rename, without syncing (live playlists are rewritten every
// few seconds and are worthless after a crash). Throws sluice::Error (Io).
void write_replace(const std::string &path, const std::string &contents);

} // namespace sluice::live
