// SPDX-License-Identifier: LGPL-2.1-or-later
// A minimal MPEG-TS and Annex B reader: just enough to find the SPS of the encoded stream.
#include "media/h264.h"

#include "core/error.h"

#include <glib.h>

#include <cstdio>
#include <fstream>
#include <map>

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

std::string avc1_codec(const H264Sps &sps) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "avc1.%02x%02x%02x", sps.profile_idc & 0xff, sps.constraint_flags & 0xff,
                sps.level_idc & 0xff);
  return buf;
}

} // namespace sluice::media
