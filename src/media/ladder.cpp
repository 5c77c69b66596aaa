// SPDX-License-Identifier: LGPL-2.1-or-later
// Ladder planning: never upscale, keep the aspect ratio, even sizes.
#include "media/ladder.h"

#include "core/error.h"

#include <glib.h>

#include <algorithm>
#include <cmath>

namespace sluice::media {

std::vector<Rung> default_ladder() {
  return {{"240p", 240, 400},   {"360p", 360, 800},   {"480p", 480, 1400},   {"720p", 720, 2800},
          {"1080p", 1080, 5000}, {"1440p", 1440, 8000}, {"2160p", 2160, 14000}};
}

static int parse_int(const std::string &s, const std::string &entry) {
  if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), [](char c) { return g_ascii_isdigit(c); }))
    throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "': '" + s + "' is not a number");
  return std::atoi(s.c_str());
}

std::vector<Rung> parse_ladder(const std::string &spec) {
  std::vector<Rung> out;
  const auto defaults = default_ladder();
  if (std::size_t n = static_cast<std::size_t>(std::count(spec.begin(), spec.end(), ',')) + 1; n > kMaxRungs)
    throw Error(ErrorCode::Invalid, "the ladder names " + std::to_string(n) + " rungs; at most " +
                                        std::to_string(kMaxRungs) + " are allowed");
  gchar **parts = g_strsplit(spec.c_str(), ",", -1);
  for (gchar **p = parts; *p; p++) {
    std::string entry = g_strstrip(*p);
    if (entry.empty())
      continue;
    std::string name = entry, rate;
    if (auto colon = entry.find(':'); colon != std::string::npos) {
      name = entry.substr(0, colon);
      rate = entry.substr(colon + 1);
      if (!rate.empty() && (rate.back() == 'k' || rate.back() == 'K'))
        rate.pop_back();
      if (rate.empty()) {
        g_strfreev(parts);
        throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "' has an empty bitrate");
      }
    }
    if (name.size() < 2 || name.back() != 'p') {
      g_strfreev(parts);
      throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "' must look like 720p or 540p:2000");
    }
    Rung r;
    try {
      r.short_side = parse_int(name.substr(0, name.size() - 1), entry);
      r.name = std::to_string(r.short_side) + "p";
      if (!rate.empty()) {
        r.video_kbps = parse_int(rate, entry);
      } else {
        for (const auto &d : defaults)
          if (d.short_side == r.short_side)
            r.video_kbps = d.video_kbps;
        if (!r.video_kbps)
          throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "' is not in the default ladder: give its bitrate, e.g. " + r.name + ":2000");
      }
    } catch (...) {
      g_strfreev(parts);
      throw;
    }
    if (r.short_side < 16 || r.short_side > 4320 || r.short_side % 2) {
      g_strfreev(parts);
      throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "': the size must be even, 16 to 4320");
    }
    if (r.video_kbps < 50 || r.video_kbps > 100000) {
      g_strfreev(parts);
      throw Error(ErrorCode::Invalid, "ladder entry '" + entry + "': the bitrate must be 50 to 100000 kbit/s");
    }
    out.push_back(r);
  }
  g_strfreev(parts);
  if (out.empty())
    throw Error(ErrorCode::Invalid, "the ladder is empty");
  // Stable: of two entries for one size, the first one given wins.
  std::stable_sort(out.begin(), out.end(), [](const Rung &a, const Rung &b) { return a.short_side < b.short_side; });
  out.erase(std::unique(out.begin(), out.end(), [](const Rung &a, const Rung &b) { return a.short_side == b.short_side; }),
            out.end());
  return out;
}

static int even(double v) { return std::max(2, 2 * static_cast<int>(std::lround(v / 2.0))); }
static int even_floor(int v) { return std::max(2, v - (v % 2)); }

static pipeline::RenditionSpec make(const std::string &name, int w, int h, int kbps) {
  pipeline::RenditionSpec r;
  r.name = name;
  r.width = w;
  r.height = h;
  r.bitrate_kbps = kbps;
  r.maxrate_kbps = static_cast<int>(std::lround(kbps * 1.07));
  r.bufsize_kbit = static_cast<int>(std::lround(kbps * 1.5));
  return r;
}

std::vector<pipeline::RenditionSpec> plan_ladder(const std::vector<Rung> &ladder, int display_w, int display_h) {
  if (display_w <= 0 || display_h <= 0)
    throw Error(ErrorCode::NotMedia, "the video has no size");
  if (ladder.empty())
    throw Error(ErrorCode::Invalid, "the ladder is empty");
  const bool portrait = display_h > display_w;
  const int src_short = std::min(display_w, display_h);
  const int src_long = std::max(display_w, display_h);
  std::vector<pipeline::RenditionSpec> out;
  for (const auto &r : ladder) {
    if (r.short_side > src_short)
      continue; // never upscale
    int s = r.short_side;
    // Rounding to even must not make the long side larger than the source's.
    int l = std::min(even(static_cast<double>(src_long) * s / src_short), even_floor(src_long));
    out.push_back(portrait ? make(r.name, s, l, r.video_kbps) : make(r.name, l, s, r.video_kbps));
  }
  if (out.empty()) {
    // Smaller than the lowest rung: one rendition at the source's own size, bitrate scaled by area.
    const Rung &low = *std::min_element(ladder.begin(), ladder.end(),
                                        [](const Rung &a, const Rung &b) { return a.short_side < b.short_side; });
    int s = even_floor(src_short);
    int l = even_floor(src_long);
    double low_area = static_cast<double>(low.short_side) * low.short_side * 16.0 / 9.0;
    int kbps = std::max(100, static_cast<int>(std::lround(low.video_kbps * (static_cast<double>(s) * l) / low_area)));
    kbps = std::min(kbps, low.video_kbps);
    std::string name = std::to_string(s) + "p";
    out.push_back(portrait ? make(name, s, l, kbps) : make(name, l, s, kbps));
  }
  return out;
}

} // namespace sluice::media
