// SPDX-License-Identifier: LGPL-2.1-or-later
// Probing media files with GstDiscoverer: container, duration, and the first video and audio streams.
#pragma once

#include <json-glib/json-glib.h>

#include <cstdint>
#include <optional>
#include <string>

namespace sluice::media {

struct VideoInfo {
  std::string codec; // human readable, e.g. "H.264 (High Profile)"
  std::string caps;  // media type, e.g. "video/x-h264"
  int width = 0, height = 0;
  int par_n = 1, par_d = 1;
  int display_width = 0, display_height = 0; // after pixel aspect ratio and rotation
  int fps_n = 0, fps_d = 1;
  double fps = 0.0;
  std::int64_t bitrate = 0; // bit/s, 0 if unknown
  int rotation = 0;         // degrees clockwise, from the image-orientation tag
  bool mirrored = false;    // the tag also flips the picture (flip-rotate-N)
  bool interlaced = false;
};

struct AudioInfo {
  std::string codec;
  std::string caps;
  int channels = 0;
  int sample_rate = 0;
  std::int64_t bitrate = 0;
};

struct ProbeResult {
  std::string path;
  std::string container; // e.g. "Quicktime", "" when elementary
  std::int64_t duration_ns = -1;
  std::int64_t size = 0;
  int video_streams = 0, audio_streams = 0, subtitle_streams = 0;
  std::optional<VideoInfo> video;
  std::optional<AudioInfo> audio;
};

// Probes a local file. Throws sluice::Error (NotFound, NotMedia) with the reason; never hangs
// longer than timeout_s.
ProbeResult probe(const std::string &path, int timeout_s = 20);

JsonNode *probe_to_json(const ProbeResult &r);

// The deepest nesting of the structures that GStreamer's demuxers read recursively without a limit
// (ISO-BMFF boxes: see kMaxBoxDepth; Matroska/WebM chapters and tags; FLV metadata objects). Nested
// tens of thousands deep, they overflow the reading thread's stack and take the process down.
constexpr int kMaxNesting = 16;

// Why a file cannot be handed to the demuxers: one of those structures nested deeper than kMaxNesting
// (or kMaxBoxDepth). "" otherwise, and for other files. probe() refuses such a file (NotMedia).
std::string nesting_problem(const std::string &path);

} // namespace sluice::media
