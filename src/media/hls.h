// SPDX-License-Identifier: LGPL-2.1-or-later
// HLS playlists: reading hlssink2's media playlists, rewriting them as VOD/EVENT, writing the master.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::media {

struct Segment {
  std::string uri;
  double duration = 0.0;
  std::int64_t size = -1; // bytes, filled by measure()
};

struct MediaPlaylist {
  int version = 3;
  int target_duration = 0;
  std::int64_t media_sequence = 0;
  std::string playlist_type; // "", "VOD" or "EVENT"
  std::string map_uri;       // EXT-X-MAP (fMP4 init segment); "" for MPEG-TS
  bool endlist = false;
  std::vector<Segment> segments;

  double total_duration() const;
};

// Parses a media playlist; throws sluice::Error on something that is not one.
MediaPlaylist parse_media_playlist(const std::string &text);

// hlssink2 ends its last segment at the timestamp of the last frame, without that frame's own duration:
// the playlist would last one frame less than the stream. The last segment's duration is measured again
// from the segment itself (an MPEG-TS file in `dir`): from its first timestamp to the end of its last
// frame. Left as it is where that cannot be read, or would move it by more than half a second.
void complete_last_segment(MediaPlaylist &pl, const std::string &dir);

// Serialises with the given type ("VOD" adds ENDLIST; "EVENT" leaves it open).
std::string write_media_playlist(const MediaPlaylist &pl, const std::string &type);

struct VariantStats {
  std::int64_t peak_bps = 0;
  std::int64_t average_bps = 0;
  double duration = 0.0;
  std::int64_t bytes = 0;
};

// Sizes every segment (relative to dir) and computes peak and average bitrates.
// Throws when a segment is missing.
VariantStats measure(MediaPlaylist &pl, const std::string &dir);

struct Variant {
  std::string uri;
  std::int64_t bandwidth = 0;
  std::int64_t average_bandwidth = 0;
  int width = 0, height = 0; // 0 for audio-only
  double frame_rate = 0.0;
  std::string codecs;
  std::string audio_group; // GROUP-ID of the EXT-X-MEDIA audio it plays with; "" when muxed in
};

// An alternative rendition (EXT-X-MEDIA), e.g. the audio track of a CMAF package.
struct MediaRendition {
  std::string type = "AUDIO";
  std::string group_id;
  std::string name;
  std::string language; // "" leaves it out
  std::string uri;
  int channels = 0;
  bool is_default = true;
};

// With alternative renditions or fMP4 the playlist declares version 7, else 3.
std::string write_master_playlist(const std::vector<Variant> &variants, const std::vector<MediaRendition> &media = {},
                                  int version = 3);

} // namespace sluice::media
