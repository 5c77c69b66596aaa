// SPDX-License-Identifier: LGPL-2.1-or-later
// ISO base media file format (MP4): reading a fragmented MP4 of one track and splitting it into a CMAF
// init segment and media segments on fragment (moof + mdat) boundaries.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::media {

struct Mp4Track {
  std::uint32_t id = 0;
  std::uint32_t timescale = 0;       // of the media (mdhd)
  std::string handler;               // "vide", "soun", ...
  std::string sample_entry;          // "avc1", "mp4a", ...
  std::string codecs;                // RFC 6381: "avc1.64001f", "mp4a.40.2"
  int width = 0, height = 0;         // video sample entry
  int channels = 0, sample_rate = 0; // audio sample entry
};

// One movie fragment: a moof box and the mdat that follows it.
struct Mp4Fragment {
  std::uint64_t offset = 0;      // of the moof in the file
  std::uint64_t size = 0;        // moof + mdat bytes: the size of the media segment
  std::uint64_t decode_time = 0; // tfdt, in the track's timescale
  std::uint64_t duration = 0;    // the sum of its sample durations
  std::uint32_t samples = 0;
  std::uint32_t sync_samples = 0;
  bool starts_with_sync = false;
  // Closed GOP: no sample is presented before the first one (composition time, decode-time units).
  std::int64_t first_composition = 0;
  std::int64_t earliest_composition = 0;
  // Where the tfdt value sits in the file, and its size (4 or 8 bytes): the split writes decode_time
  // there, so that a track can be moved on the timeline (see shift()).
  std::uint64_t tfdt_value_offset = 0;
  int tfdt_value_size = 0;
};

struct FragmentedMp4 {
  std::string path;
  Mp4Track track;
  std::uint64_t ftyp_offset = 0, ftyp_size = 0;
  std::uint64_t moov_offset = 0, moov_size = 0;
  std::vector<Mp4Fragment> fragments;

  std::uint64_t duration() const; // in the track's timescale, from the first decode time to the end
  std::uint64_t end_time() const; // decode time after the last sample
  std::uint64_t samples() const;
  // Moves every fragment later by `ticks` of the track's timescale. Throws when a 32-bit decode time
  // would overflow.
  void shift(std::uint64_t ticks);
  double seconds(std::uint64_t t) const { return track.timescale ? static_cast<double>(t) / track.timescale : 0.0; }
};

// Reads the structure of a fragmented MP4 file holding exactly one track (mp4mux with
// fragment-duration). Only box headers, moov and moofs are read. Throws sluice::Error.
FragmentedMp4 read_fragmented_mp4(const std::string &path);
FragmentedMp4 parse_fragmented_mp4(const std::string &bytes); // the same, from memory

// For an ISO-BMFF file (one that starts with ftyp): why it cannot be played at all, when it has no movie
// header (moov) and no fragment: it was cut short or never finished. "" otherwise, and for other files.
// Reads only top-level box headers.
std::string mp4_unplayable_reason(const std::string &path);

// The deepest nesting of boxes sluice lets a demuxer see. GStreamer's MP4 demuxer (qtdemux) reads nested
// boxes recursively without a limit: 50,000 levels (400 KB of box headers) overflow its thread's stack
// and take the whole process down. Real files nest about 8 deep (moov/trak/mdia/minf/stbl/stsd/avc1/avcC).
constexpr int kMaxBoxDepth = 16;

// For an ISO-BMFF file (one whose first bytes are a box header): why its boxes cannot be handed to a
// demuxer: nested deeper than kMaxBoxDepth, counting every place where qtdemux looks for boxes inside
// a box (the body of a container, after the fields of a sample entry, inside a compressed movie header),
// or too intricate to check. "" otherwise, and for other files. Reads every box but the media data.
std::string mp4_nesting_problem(const std::string &path);
std::string mp4_nesting_problem_of(const std::string &bytes); // the same, from memory

// Follows a fragmented MP4 while a muxer writes it: each update() reads the boxes completed since the
// last one (a fragment counts once its mdat is whole).
class GrowingMp4 {
public:
  explicit GrowingMp4(std::string path);
  ~GrowingMp4();
  GrowingMp4(const GrowingMp4 &) = delete;
  GrowingMp4 &operator=(const GrowingMp4 &) = delete;
  // Returns how many fragments were added (0 while the file does not exist). Throws sluice::Error.
  std::size_t update();
  bool has_header() const; // ftyp and moov are read
  FragmentedMp4 &mp4() { return mp4_; }
  const FragmentedMp4 &mp4() const { return mp4_; }

private:
  struct State;
  FragmentedMp4 mp4_;
  std::unique_ptr<State> state_;
};

// Cuts a fragmented MP4 of one track that arrives as a byte stream (mp4mux with streamable=true into an appsink):
// push() takes the next bytes and returns what they completed, in order: the init segment (ftyp + moov) once,
// then every fragment (moof + mdat) once its media data is whole. Bytes already returned are let go.
class Mp4Cutter {
public:
  struct Piece {
    bool init = false;    // ftyp + moov; otherwise a media segment
    std::string bytes;    // the whole segment
    Mp4Fragment fragment; // a media segment's figures; its offsets count from the start of `bytes`
  };
  Mp4Cutter();
  ~Mp4Cutter();
  Mp4Cutter(const Mp4Cutter &) = delete;
  Mp4Cutter &operator=(const Mp4Cutter &) = delete;
  // Throws sluice::Error on bytes that are not a fragmented MP4 of one track.
  std::vector<Piece> push(const void *data, std::size_t size);
  const Mp4Track &track() const { return mp4_.track; }

private:
  struct State;
  FragmentedMp4 mp4_;
  std::unique_ptr<State> state_;
};

// Writes the decode time of a fragment into the tfdt of its bytes (`f` as Mp4Cutter returns it: offsets from the
// start of `bytes`). Throws sluice::Error when a 32-bit tfdt cannot hold it.
void set_decode_time(std::string &bytes, const Mp4Fragment &f, std::uint64_t decode_time);

// Writes `dir`/init.mp4 (ftyp + moov) and `dir`/seg_00001.m4s, ... (one per fragment from `from`, with
// the fragment's decode_time in its tfdt). Files already there with the right size are kept.
void split_fragmented_mp4(const FragmentedMp4 &mp4, const std::string &dir, std::size_t from = 0);

// The name of media segment `number` (from 1): "seg_00001.m4s".
std::string segment_name(std::size_t number);

// The smallest constant bit rate (bits/s) over which the segments arrive before they are needed,
// when a player first buffers `min_buffer` seconds (the DASH definition of @bandwidth, per segment).
std::int64_t constant_bandwidth(const FragmentedMp4 &mp4, double min_buffer);
// The highest bit rate of one segment (the HLS definition of BANDWIDTH); very short last segments
// do not count.
std::int64_t peak_bandwidth(const FragmentedMp4 &mp4);
std::int64_t average_bandwidth(const FragmentedMp4 &mp4);

} // namespace sluice::media
