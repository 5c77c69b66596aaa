// SPDX-License-Identifier: LGPL-2.1-or-later
// The MPEG-TS cutter of live HLS: packets walked as they come, cut before each video keyframe's first packet.
#include "media/ts.h"

#include "core/error.h"

#include <algorithm>
#include <cstring>

namespace sluice::media {

namespace {

constexpr std::int64_t kPtsWrap = std::int64_t{1} << 33;

int pid_of(const std::uint8_t *p) {
  return ((p[1] & 0x1f) << 8) | p[2];
}
bool unit_start(const std::uint8_t *p) {
  return (p[1] & 0x40) != 0;
}

// Where the payload of a packet begins (kTsPacket: none).
std::size_t payload_at(const std::uint8_t *p) {
  const int control = (p[3] >> 4) & 3;
  if (!(control & 1))
    return kTsPacket;
  std::size_t at = 4;
  if (control & 2)
    at += 1 + p[4];
  return at < kTsPacket ? at : kTsPacket;
}

bool random_access(const std::uint8_t *p) {
  const int control = (p[3] >> 4) & 3;
  return (control & 2) && p[4] > 0 && (p[5] & 0x40) != 0;
}

// The section a PSI packet starts (after its pointer field), and its length up to the CRC.
bool section(const std::uint8_t *p, const std::uint8_t *&s, std::size_t &len) {
  std::size_t at = payload_at(p);
  if (at >= kTsPacket)
    return false;
  at += 1 + p[at];
  if (at + 3 > kTsPacket)
    return false;
  s = p + at;
  const std::size_t section_length = ((s[1] & 0x0f) << 8) | s[2];
  len = std::min<std::size_t>(3 + section_length, kTsPacket - at);
  return len >= 12;
}

bool video_type(int stream_type) {
  return stream_type == 0x1b || stream_type == 0x24 || stream_type == 0x01 || stream_type == 0x02 ||
         stream_type == 0x10;
}

} // namespace

std::int64_t TsCutter::unwrap(std::int64_t pts) {
  if (last_raw_ >= 0 && pts < last_raw_ - kPtsWrap / 2)
    wraps_++;
  else if (last_raw_ >= 0 && pts > last_raw_ + kPtsWrap / 2 && wraps_ > 0)
    wraps_--; // a PTS from just before a wrap
  last_raw_ = pts;
  return pts + wraps_ * kPtsWrap;
}

std::vector<TsSegment> TsCutter::push(const void *data, std::size_t size) {
  std::vector<TsSegment> out;
  const auto *d = static_cast<const std::uint8_t *>(data);
  if (!partial_.empty()) {
    const std::size_t take = std::min(size, kTsPacket - partial_.size());
    partial_.append(reinterpret_cast<const char *>(d), take);
    d += take;
    size -= take;
    if (partial_.size() < kTsPacket)
      return out;
    packet(reinterpret_cast<const std::uint8_t *>(partial_.data()), out);
    partial_.clear();
  }
  for (; size >= kTsPacket; d += kTsPacket, size -= kTsPacket)
    packet(d, out);
  partial_.assign(reinterpret_cast<const char *>(d), size);
  return out;
}

std::vector<TsSegment> TsCutter::finish() {
  std::vector<TsSegment> out;
  partial_.clear();
  if (has_video_ && !open_.bytes.empty()) {
    open_.video_pid = video_pid_;
    out.push_back(std::move(open_));
  }
  open_ = TsSegment{};
  has_video_ = false;
  psi_tail_ = std::string::npos;
  return out;
}

void TsCutter::packet(const std::uint8_t *p, std::vector<TsSegment> &out) {
  if (p[0] != 0x47)
    throw Error(ErrorCode::Invalid, "the MPEG-TS stream lost its packet sync");
  const int pid = pid_of(p);
  const auto *bytes = reinterpret_cast<const char *>(p);
  const bool psi = pid == 0 || (pid == pmt_pid_ && pmt_pid_ >= 0);
  if (pid == 0) {
    if (unit_start(p)) {
      pat_.assign(bytes, kTsPacket);
      const std::uint8_t *s = nullptr;
      std::size_t len = 0;
      if (section(p, s, len) && s[0] == 0x00)
        for (std::size_t at = 8; at + 4 <= len - 4; at += 4) {
          const int program = (s[at] << 8) | s[at + 1];
          if (program != 0) {
            pmt_pid_ = ((s[at + 2] & 0x1f) << 8) | s[at + 3];
            break;
          }
        }
    } else if (!pat_.empty()) {
      pat_.append(bytes, kTsPacket);
    }
  } else if (pid == pmt_pid_) {
    if (unit_start(p)) {
      pmt_.assign(bytes, kTsPacket);
      const std::uint8_t *s = nullptr;
      std::size_t len = 0;
      if (section(p, s, len) && s[0] == 0x02) {
        std::size_t at = 12 + (((s[10] & 0x0f) << 8) | s[11]);
        for (; at + 5 <= len - 4; at += 5 + (((s[at + 3] & 0x0f) << 8) | s[at + 4]))
          if (video_type(s[at])) {
            video_pid_ = ((s[at + 1] & 0x1f) << 8) | s[at + 2];
            break;
          }
      }
    } else if (!pmt_.empty()) {
      pmt_.append(bytes, kTsPacket);
    }
  }

  if (pid == video_pid_ && video_pid_ >= 0 && unit_start(p)) {
    const std::size_t at = payload_at(p);
    const std::uint8_t *pes = p + at;
    const std::size_t n = kTsPacket - at;
    std::int64_t pts = -1;
    bool keyframe = random_access(p);
    if (n >= 14 && pes[0] == 0 && pes[1] == 0 && pes[2] == 1) {
      if (pes[7] & 0x80)
        pts = unwrap((static_cast<std::int64_t>((pes[9] >> 1) & 7) << 30) | (pes[10] << 22) | ((pes[11] >> 1) << 15) |
                     (pes[12] << 7) | (pes[13] >> 1));
      // Without the flag (another muxer): an H.264 IDR or SPS at the start of the PES.
      for (std::size_t i = 9 + pes[8]; !keyframe && i + 3 < n; i++)
        if (pes[i] == 0 && pes[i + 1] == 0 && pes[i + 2] == 1) {
          const int type = pes[i + 3] & 0x1f;
          keyframe = type == 5 || type == 7;
          if (type == 1) // a slice of another picture: not a keyframe
            break;
        }
    }
    const bool long_enough = min_ticks_ <= 0 || pts < 0 || open_.first_pts < 0 || pts - open_.first_pts >= min_ticks_;
    if (keyframe && has_video_ && long_enough) {
      // Cut: the PAT/PMT right before the keyframe go with it (they are put in front of it anyway).
      TsSegment done = std::move(open_);
      if (psi_tail_ != std::string::npos)
        done.bytes.resize(psi_tail_);
      done.video_pid = video_pid_;
      done.next_pts = pts;
      out.push_back(std::move(done));
      open_ = TsSegment{};
      has_video_ = false;
      psi_tail_ = std::string::npos;
    }
    if (!has_video_) {
      if (open_.bytes.empty()) // cut before this packet: the latest tables first
        open_.bytes = pat_ + pmt_;
      open_.first_pts = pts;
      open_.keyframe = keyframe;
      has_video_ = true;
    }
    if (pts > open_.last_pts)
      open_.last_pts = pts;
  }

  if (!psi)
    psi_tail_ = std::string::npos;
  else if (psi_tail_ == std::string::npos)
    psi_tail_ = open_.bytes.size();
  open_.bytes.append(bytes, kTsPacket);
}

} // namespace sluice::media
