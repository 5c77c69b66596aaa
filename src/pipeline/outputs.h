// SPDX-License-Identifier: LGPL-2.1-or-later
// The kinds of output a pipeline description produces (its "output"), in one typed table.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::pipeline {

enum class OutputKind { Hls, Cmaf, Poster, Storyboard, Preview, LiveHls, LiveCmaf };

struct OutputInfo {
  OutputKind kind;
  std::string_view name; // as a description's "output" and the API say it
  // A streaming package from the rendition ladder (video_rendition per rung): it makes a video playable, and it can
  // be watched while its job runs (EVENT playlists, then a master playlist once every rendition has a segment).
  bool streaming;
  // An artifact made from the picture: no ladder, `video` and `sink` once, integer parameters max_width and
  // max_height; refused for an input without video.
  bool needs_picture;
  std::string_view master;        // the HLS master playlist of a package, "" for artifacts
  std::string_view manifest;      // the DASH manifest of a finished package, "" when it has none
  std::string_view artifact_file; // the one file an artifact is fetched by, "" for packages
  // The ladder of a live stream (pipelines/live-*.json): appsrcs `v` and `a` fed by the live engine, a rung per
  // video_rendition; never a job's pipeline.
  bool live = false;
};

inline constexpr std::array<OutputInfo, 7> kOutputs{{
    {OutputKind::Hls, "hls", true, false, "master.m3u8", "", ""},
    {OutputKind::Cmaf, "cmaf", true, false, "master.m3u8", "manifest.mpd", ""},
    {OutputKind::Poster, "poster", false, true, "", "", "poster.jpg"},
    {OutputKind::Storyboard, "storyboard", false, true, "", "", "storyboard.vtt"},
    {OutputKind::Preview, "preview", false, true, "", "", "preview.mp4"}, // (named by pipelines/preview.json)
    {OutputKind::LiveHls, "live-hls", false, false, "master.m3u8", "", "", true},
    {OutputKind::LiveCmaf, "live-cmaf", false, false, "master.m3u8", "manifest.mpd", "", true},
}};

constexpr const OutputInfo &output_info(OutputKind kind) {
  return kOutputs[static_cast<std::size_t>(kind)];
}

// The kind named `name` ("hls", "cmaf", ...), nothing for another word.
constexpr std::optional<OutputKind> parse_output_kind(std::string_view name) {
  for (const auto &o : kOutputs)
    if (o.name == name)
      return o.kind;
  return std::nullopt;
}

inline std::string output_name(OutputKind kind) {
  return std::string(output_info(kind).name);
}

// "hls, cmaf, poster, storyboard, preview, live-hls, live-cmaf": for messages that list what is allowed.
inline std::string output_names() {
  std::string names;
  for (const auto &o : kOutputs)
    names += (names.empty() ? "" : ", ") + std::string(o.name);
  return names;
}

namespace detail {
constexpr bool table_in_order() {
  for (std::size_t i = 0; i < kOutputs.size(); ++i)
    if (static_cast<std::size_t>(kOutputs[i].kind) != i || parse_output_kind(kOutputs[i].name) != kOutputs[i].kind)
      return false;
  return true;
}
} // namespace detail
static_assert(detail::table_in_order(), "kOutputs is indexed by OutputKind and its names are distinct");

} // namespace sluice::pipeline
