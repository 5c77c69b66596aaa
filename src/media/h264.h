// SPDX-License-Identifier: LGPL-2.1-or-later
// H.264 codec strings (RFC 6381 "avc1.PPCCLL") read from what was really encoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace sluice::media {

struct H264Sps {
  int profile_idc = 0;
  int constraint_flags = 0; // the byte after profile_idc
  int level_idc = 0;
};

// Finds the first sequence parameter set in an Annex B byte stream.
std::optional<H264Sps> find_sps_annexb(const std::uint8_t *data, std::size_t size);
// Finds the first SPS in an MPEG-TS file's bytes (payloads are reassembled per PID first).
std::optional<H264Sps> find_sps_ts(const std::string &ts);
// Reads at most the first few MiB of a TS file; throws on I/O errors.
std::optional<H264Sps> find_sps_ts_file(const std::string &path);

std::string avc1_codec(const H264Sps &sps); // e.g. "avc1.64001f"

// When an MPEG-TS file's video stream (its audio stream when it has no video) is presented, in seconds
// of its 90 kHz clock: from its earliest timestamp (PTS) to its latest plus the last frame's own
// duration (the average step between its timestamps in presentation order).
struct TsSpan {
  double start = 0.0, end = 0.0;
  int frames = 0; // PES packets with a timestamp
};
std::optional<TsSpan> ts_presentation_span(const std::string &ts);

} // namespace sluice::media
