// SPDX-License-Identifier: LGPL-2.1-or-later
// DASH: a static MPD (ISO/IEC 23009-1, isoff-live profile) over CMAF segments, with a SegmentTimeline
// taken from the segments themselves.
#pragma once

#include "media/bmff.h"

#include <string>
#include <vector>

namespace sluice::media {

struct DashRepresentation {
  std::string id; // also its folder: $RepresentationID$/init.mp4, $RepresentationID$/seg_%05d.m4s
  const FragmentedMp4 *mp4 = nullptr;
  std::int64_t bandwidth = 0;
  std::string frame_rate; // "30", "30000/1001"; "" for audio
};

struct DashAdaptationSet {
  std::string content_type; // "video" or "audio"
  std::vector<DashRepresentation> representations;
  bool segment_alignment = true;
  std::string language; // "" leaves it out
};

std::string write_mpd(const std::vector<DashAdaptationSet> &sets, double duration, double min_buffer);

// Appends `query` ("v=abc") to the initialization and media templates of an MPD this module wrote.
std::string version_mpd_urls(const std::string &mpd, const std::string &query);

// "PT1M2.500S" (xs:duration as DASH uses it).
std::string iso_duration(double seconds);

// A frame rate as DASH and HLS spell it: 29.97 -> "30000/1001", 25 -> "25".
std::string frame_rate_string(double fps);

} // namespace sluice::media
