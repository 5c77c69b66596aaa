// SPDX-License-Identifier: LGPL-2.1-or-later
// What the parts of the ISO-BMFF reader share: the bounds-checked reader, the movie and fragment parsers, file reads.
#pragma once

#include "media/bmff.h"

#include "core/error.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unistd.h>

namespace sluice::media::detail {

// A bounds-checked big-endian reader over a byte range.
class Reader {
public:
  Reader(const std::uint8_t *p, std::size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  std::size_t left() const { return n_ - pos_; }
  std::size_t pos() const { return pos_; }
  void need(std::size_t k) const {
    if (left() < k)
      throw Error(ErrorCode::Invalid, "MP4: " + what_ + " is cut short");
  }
  void skip(std::size_t k) {
    need(k);
    pos_ += k;
  }
  std::uint64_t uint(int bytes) {
    need(bytes);
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v = (v << 8) | p_[pos_++];
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(uint(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(uint(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() { return uint(8); }
  const std::uint8_t *here() const { return p_ + pos_; }

private:
  const std::uint8_t *p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::string what_;
};

// The sample defaults of the track (trex), which a fragment's tfhd may override.
struct TrackDefaults {
  std::uint32_t duration = 0, size = 0, flags = 0;
};

// Reads the body of a moov box (p, n bytes): the one track and its defaults.
void parse_moov(const std::uint8_t *p, std::size_t n, Mp4Track &track, TrackDefaults &defaults);

// Reads the body of a moof box into f. `body_offset`: where p starts in the file. Returns how many bytes of media
// data its samples claim (checked against the mdat that follows).
std::uint64_t parse_moof(const std::uint8_t *p, std::size_t n, std::uint64_t body_offset, const Mp4Track &track,
                         const TrackDefaults &trex, Mp4Fragment &f);

// `read(offset, size)` returns those bytes of a file (or of bytes in memory).
using ReadFn = std::function<std::string(std::uint64_t, std::size_t)>;

// A file descriptor, closed with its owner.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0)
      close(fd);
  }
};

// The n bytes at off of an open file; throws sluice::Error (Io) when they cannot all be read.
std::string pread_all(int fd, std::uint64_t off, std::size_t n, const std::string &path);

} // namespace sluice::media::detail
