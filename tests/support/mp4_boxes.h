// SPDX-License-Identifier: LGPL-2.1-or-later
// ISO-BMFF boxes written byte by byte, for tests and fuzz seeds that build MP4 files by hand.
#pragma once

#include <cstdint>
#include <string>

namespace sluice::test::mp4 {

// v as `bytes` big-endian bytes.
inline std::string be(std::uint64_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i)
    s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A box: 32-bit size, type, payload.
inline std::string box(const std::string &type, const std::string &payload) {
  return be(payload.size() + 8, 4) + type + payload;
}

// A full box: version and flags before the payload.
inline std::string full(const std::string &type, int version, std::uint32_t flags, const std::string &payload) {
  return box(type, be(version, 1) + be(flags, 3) + payload);
}

} // namespace sluice::test::mp4
