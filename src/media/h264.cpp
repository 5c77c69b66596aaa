// SPDX-License-Identifier: LGPL-2.1-or-later
// A minimal MPEG-TS and Annex B reader: just enough to find the SPS of the encoded stream.
#include "media/h264.h"

#include "core/error.h"

#include <glib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

namespace sluice::media {

namespace {
bool known_profile(int p) {
  switch (p) {
  case 44: case 66: case 77: case 88: case 100: case 110: case 118: case 122: case 128: case 244:
    return true;
  default:
    return false;
  }
}
} // namespace

std::optional<H264Sps> find_sps_annexb(const std::uint8_t *d, std::size_t n) {
  for (std::size_t i = 0; i + 6 < n; i++) {
    if (d[i] != 0 || d[i + 1] != 0 || d[i + 2] != 1)
      continue;
    std::uint8_t hdr = d[i + 3];
    if ((hdr & 0x80) || (hdr & 0x1f) != 7)
      continue;
    H264Sps sps{d[i + 4], d[i + 5], d[i + 6]};
    if (known_profile(sps.profile_idc) && sps.level_idc > 0)
      return sps;
  }
  return std::nullopt;
}

std::optional<H264Sps> find_sps_ts(const std::string &ts) {
  constexpr std::size_t kPacket = 188;
  std::map<int, std::string> payloads;
  const auto *b = reinterpret_cast<const std::uint8_t *>(ts.data());
  for (std::size_t off = 0; off + kPacket <= ts.size(); off += kPacket) {
    const std::uint8_t *p = b + off;
    if (p[0] != 0x47)
      return std::nullopt; // not a TS file (or not aligned)
    int pid = ((p[1] & 0x1f) << 8) | p[2];
    int afc = (p[3] >> 4) & 3;
    if (pid == 0x1fff || !(afc & 1))
      continue;
    std::size_t start = 4;
    if (afc & 2)
      start += 1 + p[4];
    if (start >= kPacket)
      continue;
    auto &buf = payloads[pid];
    // Scan only the new bytes, plus enough old ones for a start code + SPS header split across packets.
    std::size_t from = buf.size() > 6 ? buf.size() - 6 : 0;
    buf.append(reinterpret_cast<const char *>(p + start), kPacket - start);
    if (auto sps = find_sps_annexb(reinterpret_cast<const std::uint8_t *>(buf.data()) + from, buf.size() - from))
      return sps;
  }
  return std::nullopt;
}

std::optional<H264Sps> find_sps_ts_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::Io, "cannot read " + path);
  std::string data(4 * 1024 * 1024, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(in.gcount()));
  return find_sps_ts(data);
}

std::optional<TsSpan> ts_presentation_span(const std::string &ts) {
  constexpr std::size_t kPacket = 188;
  constexpr std::int64_t kWrap = std::int64_t(1) << 33;
  std::vector<std::int64_t> video, audio;
  const auto *b = reinterpret_cast<const std::uint8_t *>(ts.data());
  for (std::size_t off = 0; off + kPacket <= ts.size(); off += kPacket) {
    const std::uint8_t *p = b + off;
    if (p[0] != 0x47)
      return std::nullopt;
    int afc = (p[3] >> 4) & 3;
    if (!(p[1] & 0x40) || !(afc & 1)) // a PES starts in packets with payload_unit_start_indicator
      continue;
    std::size_t at = 4;
    if (afc & 2)
      at += 1 + p[4];
    if (at + 14 > kPacket || p[at] != 0 || p[at + 1] != 0 || p[at + 2] != 1)
      continue;
    std::uint8_t stream_id = p[at + 3];
    bool is_video = stream_id >= 0xE0 && stream_id <= 0xEF, is_audio = stream_id >= 0xC0 && stream_id <= 0xDF;
    if ((!is_video && !is_audio) || !(p[at + 7] & 0x80)) // PTS_DTS_flags: a PTS is there
      continue;
    const std::uint8_t *t = p + at + 9;
    std::int64_t pts = (std::int64_t((t[0] >> 1) & 7) << 30) | (std::int64_t(t[1]) << 22) |
                       (std::int64_t(t[2] >> 1) << 15) | (std::int64_t(t[3]) << 7) | (t[4] >> 1);
    (is_video ? video : audio).push_back(pts);
  }
  auto &v = video.empty() ? audio : video;
  if (v.empty())
    return std::nullopt;
  // A timestamp that wrapped (33 bits) since the first comes after it.
  for (auto &x : v)
    if (x < v.front() - kWrap / 2)
      x += kWrap;
  std::sort(v.begin(), v.end());
  TsSpan span;
  span.frames = static_cast<int>(v.size());
  span.start = v.front() / 90000.0;
  // The last frame lasts as long as the frames before it did on average: timestamps derived from
  // nanoseconds step by 2999 or 3000 ticks at 30 fps.
  double step = v.size() > 1 ? static_cast<double>(v.back() - v.front()) / static_cast<double>(v.size() - 1) : 0.0;
  span.end = (static_cast<double>(v.back()) + step) / 90000.0;
  return span;
}

std::string avc1_codec(const H264Sps &sps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "avc1.%02x%02x%02x", sps.profile_idc & 0xff, sps.constraint_flags & 0xff,
                sps.level_idc & 0xff);
  return buf;
}

} // namespace sluice::media
