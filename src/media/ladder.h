// SPDX-License-Identifier: LGPL-2.1-or-later
// Rendition ladder planning: which sizes and bitrates to encode for a given source.
#pragma once

#include "pipeline/render.h"

#include <cstddef>
#include <string>
#include <vector>

namespace sluice::media {

// A rung names the short side of the picture ("720p" is 1280x720 landscape, 720x1280 portrait).
struct Rung {
  std::string name;
  int short_side = 0;
  int video_kbps = 0;
};

std::vector<Rung> default_ladder();
constexpr int kDefaultAudioKbps = 128;

// Every rung is one more encoder with its threads and buffers: a request names at most this many.
constexpr std::size_t kMaxRungs = 8;

// Parses "360p,720p" (rungs of the default ladder) or custom rungs "540p:2000" (kbit/s), comma separated,
// at most kMaxRungs of them. Throws sluice::Error naming the bad entry.
std::vector<Rung> parse_ladder(const std::string &spec);

// Plans the renditions for a source whose displayed size is display_w x display_h:
// never upscales, keeps the aspect ratio with even sizes, and gives a source smaller than the lowest
// rung one rendition at its own size. Sorted by ascending size.
std::vector<pipeline::RenditionSpec> plan_ladder(const std::vector<Rung> &ladder, int display_w, int display_h);

} // namespace sluice::media
