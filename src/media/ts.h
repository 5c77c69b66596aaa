// SPDX-License-Identifier: LGPL-2.1-or-later
// MPEG-TS: cutting a muxer's byte stream into segments that each start at a video keyframe and play on their own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::media {

// The size of a transport stream packet.
constexpr std::size_t kTsPacket = 188;

struct TsSegment {
  std::string bytes;           // whole packets: the latest PAT and PMT first, then the keyframe's packets on
  int video_pid = -1;          // the program's first video stream
  std::int64_t first_pts = -1; // of its first video PES, 90 kHz (wraps of the 33-bit clock counted: never smaller)
  std::int64_t last_pts = -1;  // the latest video PTS in it
  std::int64_t next_pts = -1;  // the first video PTS of the segment after it; -1 for the last (finish())
  bool keyframe = false;       // it starts at a random access point (the stream's first may not)
};

// Fed a muxer's output in chunks of any size (mpegtsmux: PAT, PMT, PES packets), returns each segment once it is
// complete: a segment ends right before the packet that starts a video PES at a random access point (the
// adaptation field's random_access_indicator, or an H.264 IDR or SPS at the start of the PES). A segment that does
// not begin with the program's tables gets the latest PAT and PMT in front, so that it decodes on its own; bytes
// before the first keyframe belong to the first segment.
class TsCutter {
public:
  // Throws sluice::Error (Invalid) when the bytes lose the packet sync.
  std::vector<TsSegment> push(const void *data, std::size_t size);
  // The end of the stream: the segment still open (none when it holds no video), and what is left of a packet is
  // dropped.
  std::vector<TsSegment> finish();
  int video_pid() const { return video_pid_; }
  // A keyframe less than `ticks` (90 kHz) after the open segment's first video PTS stays inside it (an encoder's
  // extra keyframe does not make a short segment); 0, the default, cuts at every keyframe.
  void set_min_duration(std::int64_t ticks) { min_ticks_ = ticks; }

private:
  void packet(const std::uint8_t *p, std::vector<TsSegment> &out);
  std::int64_t unwrap(std::int64_t pts);

  std::string partial_;                      // an incomplete packet
  TsSegment open_;                           // the segment being filled
  bool has_video_ = false;                   // open_ holds video
  std::size_t psi_tail_ = std::string::npos; // where a run of PAT/PMT packets at the end of open_ begins
  std::string pat_, pmt_;                    // the latest ones
  int pmt_pid_ = -1, video_pid_ = -1;
  std::int64_t last_raw_ = -1, wraps_ = 0;
  std::int64_t min_ticks_ = 0;
};

} // namespace sluice::media
