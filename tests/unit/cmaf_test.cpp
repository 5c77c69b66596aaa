// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the ISO-BMFF walker (on MP4 files built byte by byte here), the CMAF split, the DASH MPD
// writer, HLS v7 playlists with EXT-X-MAP and audio groups, and the rendering of the new output kinds.

#include "core/error.h"
#include "core/fs.h"
#include "jobs/outputs.h"
#include "live/playlist.h"
#include "media/bmff.h"
#include "media/dash.h"
#include "media/hls.h"
#include "pipeline/description.h"
#include "pipeline/encoders.h"
#include "pipeline/render.h"

#include <gtest/gtest.h>

#include "check.h"
#include "media.h"
#include "mp4_boxes.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using sluice::test::contains;
using sluice::test::count;
using sluice::test::expect_error;
using sluice::test::TempDir;
using namespace sluice::media;
namespace fs = sluice::fs;

// --- a tiny MP4 writer -----------------------------------------------------------------------------

using sluice::test::mp4::be;
using sluice::test::mp4::box;
using sluice::test::mp4::full;
const std::uint32_t kNonSync = 0x00010000;

std::string avc1_entry(int w, int h, int profile, int compat, int level) {
  std::string e = std::string(6, '\0') + be(1, 2) + std::string(16, '\0') + be(w, 2) + be(h, 2) + be(0x00480000, 4) +
                  be(0x00480000, 4) + be(0, 4) + be(1, 2) + std::string(32, '\0') + be(24, 2) + be(0xffff, 2);
  std::string avcc = be(1, 1) + be(profile, 1) + be(compat, 1) + be(level, 1) + be(0xff, 1) + be(0xe0, 1);
  return box("avc1", e + box("avcC", avcc));
}

std::string mp4a_entry(int channels, int rate, int aot) {
  std::string e = std::string(6, '\0') + be(1, 2) + std::string(8, '\0') + be(channels, 2) + be(16, 2) + be(0, 4) +
                  be(static_cast<std::uint64_t>(rate) << 16, 4);
  // AudioSpecificConfig: 5 bits of object type, 4 of frequency index (3: 48 kHz), 4 of channels
  std::uint16_t asc = static_cast<std::uint16_t>((aot << 11) | (3 << 7) | (channels << 3));
  std::string dsi = be(0x05, 1) + be(2, 1) + be(asc, 2);
  std::string dcd =
      be(0x04, 1) + be(13 + dsi.size(), 1) + be(0x40, 1) + be(0x15, 1) + be(0, 3) + be(128000, 4) + be(128000, 4) + dsi;
  std::string esd = be(0x03, 1) + be(3 + dcd.size(), 1) + be(1, 2) + be(0, 1) + dcd;
  return box("mp4a", e + full("esds", 0, 0, esd));
}

struct Sample {
  std::uint32_t duration, size, flags;
  std::int32_t cto = 0;
};

std::string moov(const std::string &handler, std::uint32_t timescale, const std::string &entry, int traks = 1,
                 std::uint32_t trex_duration = 0, std::uint32_t trex_flags = 0) {
  std::string tkhd = full("tkhd", 0, 3, be(0, 4) + be(0, 4) + be(1, 4) + std::string(72, '\0'));
  std::string mdhd = full("mdhd", 0, 0, be(0, 4) + be(0, 4) + be(timescale, 4) + be(0, 4) + be(0x55c4, 2) + be(0, 2));
  std::string hdlr = full("hdlr", 0, 0, be(0, 4) + handler + std::string(12, '\0') + "x" + std::string(1, '\0'));
  std::string stbl = box("stbl", full("stsd", 0, 0, be(1, 4) + entry) + full("stts", 0, 0, be(0, 4)));
  std::string trak = box("trak", tkhd + box("mdia", mdhd + hdlr + box("minf", stbl)));
  std::string trex = full("trex", 0, 0, be(1, 4) + be(1, 4) + be(trex_duration, 4) + be(0, 4) + be(trex_flags, 4));
  std::string body = full("mvhd", 0, 0, std::string(96, '\0'));
  for (int i = 0; i < traks; ++i)
    body += trak;
  return box("moov", body + box("mvex", trex));
}

// A fragment: moof (tfhd default-base-is-moof, tfdt v1, trun with per-sample values) + mdat.
std::string fragment(std::uint32_t seq, std::uint64_t decode_time, const std::vector<Sample> &samples,
                     bool per_sample_duration = true) {
  std::uint32_t tflags = 0x001 | 0x200 | 0x400 | 0x800 | (per_sample_duration ? 0x100 : 0);
  std::string entries;
  std::uint32_t bytes = 0;
  for (const auto &s : samples) {
    if (per_sample_duration)
      entries += be(s.duration, 4);
    entries += be(s.size, 4) + be(s.flags, 4) + be(static_cast<std::uint32_t>(s.cto), 4);
    bytes += s.size;
  }
  std::string tfhd = full("tfhd", 0, 0x020000 | (per_sample_duration ? 0 : 0x08),
                          be(1, 4) + (per_sample_duration ? "" : be(samples.front().duration, 4)));
  std::string tfdt = full("tfdt", 1, 0, be(decode_time, 8));
  auto build = [&](std::uint32_t data_offset) {
    std::string trun = full("trun", 1, tflags, be(samples.size(), 4) + be(data_offset, 4) + entries);
    return box("moof", full("mfhd", 0, 0, be(seq, 4)) + box("traf", tfhd + tfdt + trun));
  };
  std::string moof = build(0);
  moof = build(static_cast<std::uint32_t>(moof.size() + 8));
  return moof + box("mdat", std::string(bytes, '\x42'));
}

std::vector<Sample> gop(int frames, std::uint32_t duration = 100, std::uint32_t size = 50) {
  std::vector<Sample> s;
  for (int i = 0; i < frames; ++i)
    s.push_back({duration, size, i == 0 ? 0x02000000u : (0x01000000u | kNonSync)});
  return s;
}

const std::string kFtyp = box("ftyp", "iso6" + be(0, 4) + "iso6cmfc");

std::string video_file() {
  return kFtyp + moov("vide", 3000, avc1_entry(640, 360, 0x64, 0x00, 0x1e)) + fragment(1, 0, gop(30)) +
         fragment(2, 3000, gop(30)) + fragment(3, 6000, gop(10)) + box("mfra", std::string(8, '\0'));
}

// --- the walker --------------------------------------------------------------------------------------

TEST(Bmff, ReadsTrackAndFragments) {
  auto mp4 = parse_fragmented_mp4(video_file());
  EXPECT_EQ(mp4.track.handler, "vide");
  EXPECT_EQ(mp4.track.timescale, 3000u);
  EXPECT_EQ(mp4.track.codecs, "avc1.64001e");
  EXPECT_EQ(mp4.track.width, 640);
  EXPECT_EQ(mp4.track.height, 360);
  ASSERT_EQ(mp4.fragments.size(), 3u);
  EXPECT_EQ(mp4.fragments[1].decode_time, 3000u);
  EXPECT_EQ(mp4.fragments[0].duration, 3000u);
  EXPECT_EQ(mp4.fragments[2].duration, 1000u);
  EXPECT_EQ(mp4.samples(), 70u);
  EXPECT_EQ(mp4.duration(), 7000u);
  EXPECT_DOUBLE_EQ(mp4.seconds(mp4.end_time()), 7000.0 / 3000.0);
  for (const auto &f : mp4.fragments) {
    EXPECT_TRUE(f.starts_with_sync);
    EXPECT_EQ(f.sync_samples, 1u);
    EXPECT_EQ(f.earliest_composition, f.first_composition);
  }
  // moof + mdat, back to back
  EXPECT_EQ(mp4.fragments[0].offset + mp4.fragments[0].size, mp4.fragments[1].offset);
  EXPECT_EQ(mp4.fragments[1].size, fragment(2, 3000, gop(30)).size());
}

TEST(Bmff, DefaultsComeFromTfhdAndTrex) {
  // The sample duration in tfhd, the flags in trex: a fragment that does not start with a keyframe.
  std::vector<Sample> s = gop(5, 200);
  std::string file = kFtyp + moov("vide", 1000, avc1_entry(2, 2, 0x42, 0xc0, 0x0d)) + fragment(1, 0, s, false);
  auto mp4 = parse_fragmented_mp4(file);
  EXPECT_EQ(mp4.track.codecs, "avc1.42c00d");
  EXPECT_EQ(mp4.fragments[0].duration, 1000u);
  EXPECT_TRUE(mp4.fragments[0].starts_with_sync);

  std::vector<Sample> delta = gop(3);
  delta[0].flags = kNonSync;
  auto d = parse_fragmented_mp4(kFtyp + moov("vide", 1000, avc1_entry(2, 2, 0x64, 0, 0x1f)) + fragment(1, 0, delta));
  EXPECT_FALSE(d.fragments[0].starts_with_sync);
  EXPECT_EQ(d.fragments[0].sync_samples, 0u);
}

TEST(Bmff, SeesAnOpenGop) {
  // A frame shown before the keyframe it follows in decode order (a leading B-frame of an open GOP).
  std::vector<Sample> s = gop(4);
  s[0].cto = 200;
  s[1].cto = -100; // version 1 trun: signed
  auto mp4 = parse_fragmented_mp4(kFtyp + moov("vide", 1000, avc1_entry(2, 2, 0x64, 0, 0x1f)) + fragment(1, 0, s));
  EXPECT_LT(mp4.fragments[0].earliest_composition, mp4.fragments[0].first_composition);
}

TEST(Bmff, AudioCodecFromEsds) {
  auto lc = parse_fragmented_mp4(kFtyp + moov("soun", 48000, mp4a_entry(2, 48000, 2)) + fragment(1, 0, gop(3, 1024)));
  EXPECT_EQ(lc.track.handler, "soun");
  EXPECT_EQ(lc.track.codecs, "mp4a.40.2");
  EXPECT_EQ(lc.track.channels, 2);
  EXPECT_EQ(lc.track.sample_rate, 48000);
  auto he = parse_fragmented_mp4(kFtyp + moov("soun", 48000, mp4a_entry(1, 48000, 5)) + fragment(1, 0, gop(3, 1024)));
  EXPECT_EQ(he.track.codecs, "mp4a.40.5");
}

TEST(Bmff, RefusesWhatItCannotSplit) {
  const std::string head = kFtyp + moov("vide", 3000, avc1_entry(2, 2, 0x64, 0, 0x1f));
  const std::string frag = fragment(1, 0, gop(3));
  struct Case {
    const char *what;
    std::string bytes;
    const char *message;
  };
  std::vector<Case> cases = {
      {"cut in the middle of the mdat", head + frag.substr(0, frag.size() - 10), "cut short"},
      {"a moof without its mdat", head + frag.substr(0, frag.size() - 158) + frag, "without media data"},
      {"two tracks", kFtyp + moov("vide", 3000, avc1_entry(2, 2, 0x64, 0, 0x1f), 2) + frag, "one track"},
      {"not fragmented", head + box("mdat", "xx"), "not fragmented"},
      {"no moov", kFtyp + frag, "before the movie header"},
      {"garbage", std::string("\x00\x00\x00\x02junk", 8), "bad size"},
  };
  for (const auto &c : cases) {
    Error e = expect_error([&] { parse_fragmented_mp4(c.bytes); });
    EXPECT_TRUE(contains(e.what(), c.message)) << c.what << ": " << e.what();
  }
}

TEST(Bmff, DamagedFilesAreErrorsNotCrashes) {
  // Every single-byte change and every cut of a valid file: parsed, or refused with sluice::Error.
  const std::string file = video_file();
  std::uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1103515245u + 12345u; };
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bad = file;
    std::size_t at = next() % bad.size();
    bad[at] = static_cast<char>(next() >> 16);
    if (i % 3 == 0)
      bad.resize(next() % bad.size());
    try {
      parse_fragmented_mp4(bad);
    } catch (const Error &) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

// A fragment whose track run claims `count` samples: with no per-sample field (all from the defaults:
// 10 ticks, `size` bytes each), or with a per-sample duration in a box that holds one.
std::string hostile_fragment(std::uint32_t count, std::uint32_t size, bool per_sample, std::size_t mdat_bytes) {
  std::string tfhd = full("tfhd", 0, 0x020000 | 0x08 | 0x10, be(1, 4) + be(10, 4) + be(size, 4));
  std::string trun = per_sample ? full("trun", 0, 0x100, be(count, 4) + be(10, 4)) : full("trun", 0, 0, be(count, 4));
  return box("moof", full("mfhd", 0, 0, be(1, 4)) + box("traf", tfhd + full("tfdt", 0, 0, be(0, 4)) + trun)) +
         box("mdat", std::string(mdat_bytes, 'x'));
}

TEST(Bmff, SampleCountsAreBoundedByWhatTheBoxesHold) {
  const std::string head = kFtyp + moov("vide", 3000, avc1_entry(2, 2, 0x64, 0, 0x1f));
  struct Case {
    const char *what;
    std::string bytes;
    const char *message;
  };
  std::vector<Case> cases = {
      // 0xffffffff samples from the defaults: the walker used to count them one by one (7 s).
      {"4 G samples", head + hostile_fragment(0xffffffffu, 4, false, 100), "more than 16777216 samples"},
      {"64 MiB of samples in 100 bytes", head + hostile_fragment(0xffffff, 4, false, 100), "media data holds 100"},
      {"per-sample fields for one sample", head + hostile_fragment(0xffffffffu, 4, true, 100), "holds at most 1"},
  };
  for (const auto &c : cases) {
    auto start = std::chrono::steady_clock::now();
    Error e = expect_error([&] { parse_fragmented_mp4(c.bytes); });
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_TRUE(contains(e.what(), c.message)) << c.what << ": " << e.what();
    EXPECT_LT(took, 0.2) << c.what;
    // The same, read from a file while it grows (the live split).
    TempDir tmp;
    fs::write_atomic(tmp.file("v.mp4"), c.bytes);
    GrowingMp4 growing(tmp.file("v.mp4"));
    start = std::chrono::steady_clock::now();
    EXPECT_THROW(growing.update(), Error) << c.what;
    took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(took, 0.2) << c.what;
  }
  // What a run of default samples really holds is counted at once, and still right.
  auto ok = parse_fragmented_mp4(head + hostile_fragment(1000000, 1, false, 1000000));
  EXPECT_EQ(ok.samples(), 1000000u);
  EXPECT_EQ(ok.fragments[0].duration, 10000000u);
  EXPECT_EQ(ok.fragments[0].sync_samples, 1000000u);
  EXPECT_EQ(ok.fragments[0].earliest_composition, 0);
}

TEST(Bmff, TellsAnMp4ThatCannotPlayAtAll) {
  TempDir tmp;
  const std::string file = video_file();
  fs::write_atomic(tmp.file("whole.mp4"), file);
  EXPECT_EQ(mp4_unplayable_reason(tmp.file("whole.mp4")), "");
  // moov at the end (the usual MP4 of a camera or ffmpeg), cut in the middle of the mdat
  const std::string moov_last =
      kFtyp + box("mdat", std::string(5000, 'x')) + moov("vide", 3000, avc1_entry(2, 2, 0x64, 0, 0x1f));
  fs::write_atomic(tmp.file("half.mp4"), moov_last.substr(0, 2000));
  EXPECT_TRUE(contains(mp4_unplayable_reason(tmp.file("half.mp4")), "cut short"))
      << mp4_unplayable_reason(tmp.file("half.mp4"));
  fs::write_atomic(tmp.file("unfinished.mp4"), kFtyp + box("mdat", std::string(500, 'x')));
  EXPECT_TRUE(contains(mp4_unplayable_reason(tmp.file("unfinished.mp4")), "never finished"));
  fs::write_atomic(tmp.file("moov_last.mp4"), moov_last);
  EXPECT_EQ(mp4_unplayable_reason(tmp.file("moov_last.mp4")), "");
  fs::write_atomic(tmp.file("other.mkv"), std::string("\x1a\x45\xdf\xa3", 4) + std::string(100, '\0'));
  EXPECT_EQ(mp4_unplayable_reason(tmp.file("other.mkv")), ""); // not ISO-BMFF: not for this check
  EXPECT_EQ(mp4_unplayable_reason(tmp.file("missing.mp4")), "");
}

TEST(Bmff, SplitsIntoInitAndMediaSegments) {
  TempDir tmp;
  const std::string file = video_file();
  fs::write_atomic(tmp.file("v.mp4"), file);
  auto mp4 = read_fragmented_mp4(tmp.file("v.mp4"));
  split_fragmented_mp4(mp4, tmp.file("v"));
  const std::string ftyp_moov = kFtyp + moov("vide", 3000, avc1_entry(640, 360, 0x64, 0x00, 0x1e));
  EXPECT_EQ(fs::read_file(tmp.file("v/init.mp4")), ftyp_moov); // no mfra, nothing else
  EXPECT_EQ(fs::read_file(tmp.file("v/seg_00001.m4s")), fragment(1, 0, gop(30)));
  EXPECT_EQ(fs::read_file(tmp.file("v/seg_00002.m4s")), fragment(2, 3000, gop(30)));
  EXPECT_EQ(fs::read_file(tmp.file("v/seg_00003.m4s")), fragment(3, 6000, gop(10)));
  EXPECT_FALSE(fs::exists(tmp.file("v/seg_00004.m4s")));
  EXPECT_EQ(fs::list_dir(tmp.file("v")).size(), 4u); // no temporary file left
  EXPECT_EQ(segment_name(123), "seg_00123.m4s");

  // A track moved later on the timeline: the split segments carry the new decode times, nothing else
  // changes.
  mp4.shift(300);
  split_fragmented_mp4(mp4, tmp.file("late"));
  auto moved = parse_fragmented_mp4(
      fs::read_file(tmp.file("late/init.mp4")) + fs::read_file(tmp.file("late/seg_00001.m4s")) +
      fs::read_file(tmp.file("late/seg_00002.m4s")) + fs::read_file(tmp.file("late/seg_00003.m4s")));
  ASSERT_EQ(moved.fragments.size(), 3u);
  EXPECT_EQ(moved.fragments[0].decode_time, 300u);
  EXPECT_EQ(moved.fragments[2].decode_time, 6300u);
  EXPECT_EQ(moved.samples(), 70u);
  EXPECT_EQ(fs::file_size(tmp.file("late/seg_00002.m4s")), fs::file_size(tmp.file("v/seg_00002.m4s")));
  // A 32-bit decode time that would overflow is refused.
  auto small =
      parse_fragmented_mp4(kFtyp + moov("vide", 3000, avc1_entry(2, 2, 0x64, 0, 0x1f)) +
                           box("moof", full("mfhd", 0, 0, be(1, 4)) +
                                           box("traf", full("tfhd", 0, 0x020000 | 0x08, be(1, 4) + be(10, 4)) +
                                                           full("tfdt", 0, 0, be(0xfffffff0u, 4)) +
                                                           full("trun", 0, 0x004, be(1, 4) + be(0x02000000, 4)))) +
                           box("mdat", "x"));
  EXPECT_EQ(small.fragments[0].decode_time, 0xfffffff0u);
  EXPECT_THROW(small.shift(100), Error);
}

// A live ladder's muxer hands its fragmented MP4 to an appsink in buffers of any size: the cutter returns the init
// segment once and every fragment once its media data is whole, byte for byte what a file split would give.
TEST(Bmff, CutsAByteStreamAsItArrives) {
  const std::string file = video_file();
  const std::string ftyp_moov = kFtyp + moov("vide", 3000, avc1_entry(640, 360, 0x64, 0x00, 0x1e));
  for (std::size_t chunk : {std::size_t(1), std::size_t(7), std::size_t(1000), file.size()}) {
    SCOPED_TRACE(chunk);
    Mp4Cutter cutter;
    std::vector<Mp4Cutter::Piece> pieces;
    std::vector<std::size_t> completed_at; // how many bytes had come when each piece was returned
    for (std::size_t at = 0; at < file.size(); at += chunk) {
      for (auto &p : cutter.push(file.data() + at, std::min(chunk, file.size() - at))) {
        pieces.push_back(std::move(p));
        completed_at.push_back(std::min(at + chunk, file.size()));
      }
    }
    ASSERT_EQ(pieces.size(), 4u);
    EXPECT_TRUE(pieces[0].init);
    EXPECT_EQ(pieces[0].bytes, ftyp_moov);
    EXPECT_EQ(cutter.track().timescale, 3000u);
    EXPECT_EQ(cutter.track().codecs, "avc1.64001e");
    const std::string expect[] = {fragment(1, 0, gop(30)), fragment(2, 3000, gop(30)), fragment(3, 6000, gop(10))};
    std::size_t end = ftyp_moov.size();
    for (int i = 0; i < 3; i++) {
      const auto &p = pieces[i + 1];
      EXPECT_FALSE(p.init);
      EXPECT_EQ(p.bytes, expect[i]);
      EXPECT_EQ(p.fragment.decode_time, 3000u * i);
      EXPECT_EQ(p.fragment.duration, i < 2 ? 3000u : 1000u);
      EXPECT_TRUE(p.fragment.starts_with_sync);
      end += expect[i].size();
      // Not before its last byte came, and (byte by byte) right then.
      EXPECT_GE(completed_at[i + 1], end);
      if (chunk == 1) {
        EXPECT_EQ(completed_at[i + 1], end);
      }
    }
    // The decode time is written into the segment's own bytes.
    std::string moved = pieces[2].bytes;
    set_decode_time(moved, pieces[2].fragment, 12345);
    EXPECT_EQ(parse_fragmented_mp4(ftyp_moov + moved).fragments.at(0).decode_time, 12345u);
    EXPECT_EQ(moved.size(), pieces[2].bytes.size());
  }
  // Bytes that are no MP4 are an error, not a crash.
  Mp4Cutter bad;
  const std::string junk = box("moof", "xxxxxxxx") + box("mdat", "x");
  EXPECT_THROW(bad.push(junk.data(), junk.size()), Error);
}

TEST(Bmff, Bandwidths) {
  // 3 segments of 1 s: 1000, 3000 and 1000 bytes (plus the box overhead of each).
  auto seg = [](std::uint32_t seq, std::uint64_t t, std::uint32_t bytes) {
    return fragment(seq, t, {{1000, bytes, 0x02000000u}});
  };
  auto mp4 = parse_fragmented_mp4(kFtyp + moov("vide", 1000, avc1_entry(2, 2, 0x64, 0, 0x1f)) + seg(1, 0, 1000) +
                                  seg(2, 1000, 3000) + seg(3, 2000, 1000));
  const double o = static_cast<double>(mp4.fragments[0].size - 1000); // moof + mdat header bytes
  EXPECT_EQ(peak_bandwidth(mp4), static_cast<std::int64_t>(std::ceil((3000 + o) * 8)));
  EXPECT_EQ(average_bandwidth(mp4), static_cast<std::int64_t>(std::ceil((5000 + 3 * o) * 8 / 3.0)));
  // With a 1 s buffer, segment k must have arrived after 1 + k seconds.
  double need = std::max({(1000 + o) * 8 / 1.0, (4000 + 2 * o) * 8 / 2.0, (5000 + 3 * o) * 8 / 3.0});
  EXPECT_EQ(constant_bandwidth(mp4, 1.0), static_cast<std::int64_t>(std::ceil(need)));
  EXPECT_LE(constant_bandwidth(mp4, 1.0), peak_bandwidth(mp4));
  EXPECT_LT(constant_bandwidth(mp4, 2.0), constant_bandwidth(mp4, 1.0));
}

// --- DASH ------------------------------------------------------------------------------------------

TEST(Dash, Durations) {
  EXPECT_EQ(iso_duration(9.0026), "PT9.003S");
  EXPECT_EQ(iso_duration(3725.5), "PT1H2M5.500S");
  EXPECT_EQ(iso_duration(60), "PT1M0.000S");
  EXPECT_EQ(iso_duration(-1), "PT0.000S");
  EXPECT_EQ(frame_rate_string(29.97002997), "30000/1001");
  EXPECT_EQ(frame_rate_string(23.976023976), "24000/1001");
  EXPECT_EQ(frame_rate_string(25.0), "25");
  EXPECT_EQ(frame_rate_string(12.5), "25/2");
  EXPECT_EQ(frame_rate_string(0), "");
}

TEST(Dash, TimelineGroupsRunsAndMarksGaps) {
  auto v = parse_fragmented_mp4(video_file());
  // A gap: the third segment starts later than the second ends.
  auto gap = parse_fragmented_mp4(kFtyp + moov("soun", 48000, mp4a_entry(2, 48000, 2)) + fragment(1, 0, gop(2, 1024)) +
                                  fragment(2, 2048, gop(2, 1024)) + fragment(3, 5000, gop(1, 1024)));
  std::string mpd =
      write_mpd({{"video", {{"720p", &v, 1234, "30"}}, true, ""}, {"audio", {{"audio", &gap, 128000, ""}}, true, "en"}},
                7000.0 / 3000, 1.0);
  EXPECT_TRUE(contains(mpd, "<S t=\"0\" d=\"3000\" r=\"1\"/>\n")) << mpd;
  EXPECT_TRUE(contains(mpd, "<S d=\"1000\"/>\n")) << mpd;
  EXPECT_TRUE(contains(mpd, "<S t=\"0\" d=\"2048\" r=\"1\"/>\n")) << mpd;
  EXPECT_TRUE(contains(mpd, "<S t=\"5000\" d=\"1024\"/>\n")) << mpd;
  EXPECT_TRUE(contains(mpd, "mediaPresentationDuration=\"PT2.333S\" minBufferTime=\"PT1.000S\"")) << mpd;
  EXPECT_TRUE(contains(mpd, "codecs=\"avc1.64001e\" width=\"640\" height=\"360\" sar=\"1:1\"")) << mpd;
  EXPECT_TRUE(contains(mpd, "maxWidth=\"640\" maxHeight=\"360\" frameRate=\"30\"")) << mpd;
  EXPECT_TRUE(contains(mpd, "lang=\"en\"")) << mpd;
  EXPECT_TRUE(contains(mpd, "audioSamplingRate=\"48000\"")) << mpd;
  EXPECT_TRUE(contains(mpd, "audio_channel_configuration:2011\" value=\"2\"")) << mpd;
  EXPECT_EQ(count(mpd, "<SegmentTemplate "), 2);
  EXPECT_EQ(count(mpd, "initialization=\"$RepresentationID$/init.mp4\""), 2);
}

TEST(Dash, VersionedUrls) {
  auto v = parse_fragmented_mp4(video_file());
  std::string mpd = write_mpd({{"video", {{"a", &v, 1, ""}}, true, ""}}, 1, 1);
  std::string out = version_mpd_urls(mpd, "v=abc");
  EXPECT_TRUE(contains(out, "initialization=\"$RepresentationID$/init.mp4?v=abc\"")) << out;
  EXPECT_TRUE(contains(out, "media=\"$RepresentationID$/seg_$Number%05d$.m4s?v=abc\"")) << out;
  EXPECT_EQ(out.size(), mpd.size() + 2 * 6);
  EXPECT_EQ(version_mpd_urls("<MPD/>", "v=1"), "<MPD/>");
}

// --- HLS v7 ----------------------------------------------------------------------------------------

TEST(HlsV7, MapRoundTripsAndRaisesTheVersion) {
  MediaPlaylist pl;
  pl.map_uri = "720p/init.mp4";
  pl.segments = {{"720p/seg_00001.m4s", 4.0, -1}, {"720p/seg_00002.m4s", 1.5, -1}};
  std::string text = write_media_playlist(pl, "VOD");
  EXPECT_TRUE(contains(text, "#EXT-X-VERSION:7\n")) << text;
  EXPECT_TRUE(contains(text, "#EXT-X-MAP:URI=\"720p/init.mp4\"\n#EXTINF:4.000000,\n720p/seg_00001.m4s\n")) << text;
  auto back = parse_media_playlist(text);
  EXPECT_EQ(back.map_uri, "720p/init.mp4");
  EXPECT_EQ(back.segments.size(), 2u);
  EXPECT_EQ(write_media_playlist(back, "VOD"), text);
  EXPECT_THROW(parse_media_playlist("#EXTM3U\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n"), Error);
}

TEST(HlsV7, MasterWithAnAudioGroup) {
  std::vector<Variant> v = {{"360p.m3u8", 900000, 800000, 640, 360, 30.0, "avc1.64001e,mp4a.40.2", "audio"}};
  MediaRendition a;
  a.group_id = "audio";
  a.name = "Audio";
  a.uri = "audio.m3u8";
  a.channels = 2;
  std::string m = write_master_playlist(v, {a}, 7);
  EXPECT_EQ(m, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
               "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\","
               "URI=\"audio.m3u8\"\n"
               "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360,FRAME-RATE=30.000,"
               "CODECS=\"avc1.64001e,mp4a.40.2\",AUDIO=\"audio\"\n360p.m3u8\n");
}

// --- rendering and the artifacts' helpers ------------------------------------------------------------

TEST(Outputs, FitSizeNeverEnlarges) {
  using sluice::pipeline::fit_size;
  EXPECT_EQ(fit_size(1920, 1080, 1280, 720), (std::pair<int, int>{1280, 720}));
  EXPECT_EQ(fit_size(640, 360, 1280, 720), (std::pair<int, int>{640, 360}));
  EXPECT_EQ(fit_size(1080, 1920, 160, 90), (std::pair<int, int>{50, 90}));
  EXPECT_EQ(fit_size(321, 241, 4000, 4000), (std::pair<int, int>{320, 240}));
  EXPECT_EQ(fit_size(0, 0, 160, 90), (std::pair<int, int>{160, 90}));
}

TEST(Outputs, ClipRange) {
  using sluice::pipeline::clip_range;
  const std::int64_t s = 1000000000;
  EXPECT_EQ(clip_range(100, 10, 30), (std::pair<std::int64_t, std::int64_t>{10 * s, 40 * s}));
  EXPECT_EQ(clip_range(9, 5, 30), (std::pair<std::int64_t, std::int64_t>{5 * s, 9 * s}));     // ends with the video
  EXPECT_EQ(clip_range(20, 50, 10), (std::pair<std::int64_t, std::int64_t>{10 * s, 20 * s})); // past the end
  EXPECT_EQ(clip_range(5, 50, 30), (std::pair<std::int64_t, std::int64_t>{0, 5 * s}));
  EXPECT_EQ(clip_range(0, 3, 4), (std::pair<std::int64_t, std::int64_t>{3 * s, 7 * s})); // unknown duration
}

TEST(Outputs, RendersCmafWithOneAudioTrackSet) {
  using namespace sluice::pipeline;
  auto encoders = EncoderTable::load_default();
  Description d = find_description("cmaf");
  RenderInput in;
  in.input = "/in.mp4";
  in.out = "/out";
  in.renditions = {{"360p", 640, 360, 800, 0, 0}, {"720p", 1280, 720, 2500, 0, 0}};
  in.encoder = "x264";
  std::string launch = render(d, resolve(d.params, {}), in, encoders);
  EXPECT_EQ(count(launch, "location=\"/out/audio.mp4\""), 1) << launch;
  EXPECT_EQ(count(launch, "mp4mux "), 3) << launch;
  EXPECT_TRUE(contains(launch, "mp4mux name=hls_360p fragment-duration=3600000")) << launch;
  EXPECT_TRUE(contains(launch, "mp4mux fragment-duration=4000 streamable=true")) << launch; // audio: ~ a segment
  EXPECT_EQ(count(launch, "key-int-max=120 "), 2) << launch;

  // Audio only: the audio track set and nothing waiting for video.
  in.has_video = false;
  in.renditions.clear();
  launch = render(d, resolve(d.params, {}), in, encoders);
  EXPECT_EQ(count(launch, "mp4mux "), 1) << launch;
  EXPECT_FALSE(contains(launch, "hls_")) << launch;
}

TEST(Outputs, RendersArtifactsFromThePicture) {
  using namespace sluice::pipeline;
  auto encoders = EncoderTable::load_default();
  RenderInput in;
  in.input = "/in.mkv";
  in.out = "/out";
  in.duration = 8.2;
  in.display_width = 1920;
  in.display_height = 800;
  in.encoder = "x264";
  Description poster = find_description("poster");
  std::string launch = render(poster, resolve(poster.params, {}), in, encoders);
  EXPECT_TRUE(contains(launch, "framerate=10/9 ")) << launch; // 10 candidates over 9 s
  EXPECT_TRUE(contains(launch, "width=1280,height=532,")) << launch;
  EXPECT_FALSE(contains(launch, "audio")) << launch;
  EXPECT_TRUE(contains(launch, "jpegenc quality=85 ! multifilesink")) << launch;

  Description preview = find_description("preview");
  launch = render(preview, resolve(preview.params, {{"start_seconds", "5"}, {"length_seconds", "30"}}), in, encoders);
  EXPECT_TRUE(contains(launch, "target-running-time=5000000000 end-running-time=8200000000")) << launch;
  EXPECT_TRUE(contains(launch, "x264enc")) << launch;
  EXPECT_TRUE(contains(launch, "clip.asink")) << launch;

  // Nothing to make a picture from.
  in.has_video = false;
  Error e = expect_error([&] { render(preview, resolve(preview.params, {}), in, encoders); });
  EXPECT_TRUE(contains(e.what(), "no video")) << e.what();
}

TEST(Outputs, VttTimesAndI420Sizes) {
  using namespace sluice::jobs;
  EXPECT_EQ(vtt_time(0), "00:00:00.000");
  EXPECT_EQ(vtt_time(3725.0625), "01:02:05.063");
  EXPECT_EQ(i420_size(160, 90), 160u * 90 + 2 * 80 * 45);
  // GStreamer pads rows to 4 bytes: 158 -> 160 (luma), 79 -> 80 (chroma)
  EXPECT_EQ(i420_size(158, 90), 160u * 90 + 2 * 80 * 45);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Live CMAF (live-cmaf): the playlists and the MPD the live engine writes over its segments.

namespace {

sluice::live::LiveSegment live_segment(int session, int number, std::uint64_t t, std::uint64_t d, std::uint32_t ts,
                                       const char *track, std::int64_t date_us) {
  sluice::live::LiveSegment s;
  s.session = session;
  s.number = number;
  s.decode_time = t;
  s.ticks = d;
  s.timescale = ts;
  s.duration = static_cast<double>(d) / ts;
  s.map = std::string(track) + "/init-" + std::to_string(session) + ".mp4";
  s.uri = std::string(track) + "/" + std::to_string(session) + "-" + (number < 10 ? "0000" : "000") +
          std::to_string(number) + ".m4s";
  s.date_us = date_us;
  s.track.codecs = std::string(track) == "audio" ? "mp4a.40.2" : "avc1.64001e";
  s.track.width = std::string(track) == "audio" ? 0 : 640;
  s.track.height = std::string(track) == "audio" ? 0 : 360;
  s.track.sample_rate = 48000;
  s.track.channels = 2;
  return s;
}

} // namespace

TEST(LiveCmaf, MediaPlaylistIsVersion7WithAMapPerSession) {
  sluice::live::LivePlaylist pl;
  pl.media_sequence = 4;
  pl.segments.push_back(live_segment(1, 5, 10000, 5000, 2500, "360p", 1700000000000000));
  pl.segments.push_back(live_segment(1, 6, 15000, 5000, 2500, "360p", 1700000002000000));
  auto second = live_segment(2, 1, 500, 5000, 2500, "360p", 1700000010000000);
  second.discontinuity = true;
  pl.segments.push_back(second);
  const std::string text = sluice::live::write_live_playlist(pl);
  EXPECT_TRUE(contains(text, "#EXT-X-VERSION:7\n")) << text;
  EXPECT_EQ(count(text, "#EXT-X-MAP:"), 2) << text;
  // The map comes before the first segment of each session, after the discontinuity.
  EXPECT_TRUE(contains(text, "#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-MAP:URI=\"360p/init-1.mp4\"\n")) << text;
  EXPECT_TRUE(contains(text, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"360p/init-2.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"))
      << text;
  EXPECT_TRUE(contains(text, "#EXTINF:2.000,\n360p/1-00006.m4s\n")) << text;
  // MPEG-TS segments (live-hls) keep version 3 and no map.
  sluice::live::LivePlaylist ts;
  sluice::live::LiveSegment seg;
  seg.uri = "360p-1-00000.ts";
  seg.duration = 2;
  ts.segments.push_back(seg);
  EXPECT_TRUE(contains(sluice::live::write_live_playlist(ts), "#EXT-X-VERSION:3\n"));
  EXPECT_FALSE(contains(sluice::live::write_live_playlist(ts), "EXT-X-MAP"));
}

TEST(LiveCmaf, DynamicMpdHasAPeriodPerSessionAndTurnsStatic) {
  const std::int64_t ast = 1700000000000000; // session 1's running time 0
  std::deque<sluice::live::LiveSegment> video, audio;
  // Session 1: video segments 3 and 4 (4 s and 6 s into it), audio at 4.01 s; session 2 began 20 s after session 1.
  video.push_back(live_segment(1, 3, 10000, 5000, 2500, "360p", ast + 4000000));
  video.push_back(live_segment(1, 4, 15000, 5000, 2500, "360p", ast + 6000000));
  video.push_back(live_segment(2, 1, 250, 5000, 2500, "360p", ast + 20100000));
  audio.push_back(live_segment(1, 3, 192480, 95232, 48000, "audio", ast + 4010000));
  audio.push_back(live_segment(2, 1, 4800, 95232, 48000, "audio", ast + 20100000));
  sluice::live::LiveMpd m;
  m.availability_start_us = ast;
  m.publish_us = ast + 22000000;
  m.session_start_us = {{1, ast}, {2, ast + 20000000}};
  m.window_s = 8;
  m.segment_s = 2;
  m.tracks.push_back({"360p", true, 900000, "25", &video});
  m.tracks.push_back({"audio", false, 128000, "", &audio});
  const std::string dynamic = sluice::live::write_live_mpd(m);
  SCOPED_TRACE(dynamic);
  EXPECT_TRUE(contains(dynamic, "type=\"dynamic\" availabilityStartTime=\"2023-11-14T22:13:20.000Z\""));
  EXPECT_TRUE(contains(dynamic, "publishTime=\"2023-11-14T22:13:42.000Z\""));
  EXPECT_TRUE(contains(dynamic, "timeShiftBufferDepth=\"PT8.000S\""));
  // Refreshed every half segment (at least 1 s), so that a player near the live edge learns of a segment soon.
  EXPECT_TRUE(contains(dynamic, "minimumUpdatePeriod=\"PT1.000S\""));
  EXPECT_TRUE(contains(dynamic, "suggestedPresentationDelay=\"PT6.000S\""));
  EXPECT_FALSE(contains(dynamic, "mediaPresentationDuration"));
  // One Period per session, at the wall time its running time began, its decode times as they are.
  EXPECT_TRUE(contains(dynamic, "<Period id=\"s1\" start=\"PT0.000S\">"));
  EXPECT_TRUE(contains(dynamic, "<Period id=\"s2\" start=\"PT20.000S\">"));
  EXPECT_TRUE(contains(dynamic, "timescale=\"2500\" presentationTimeOffset=\"0\" initialization=\"360p/init-1.mp4\" "
                                "media=\"360p/1-$Number%05d$.m4s\" startNumber=\"3\""));
  EXPECT_TRUE(contains(dynamic, "<S t=\"10000\" d=\"5000\" r=\"1\"/>"));
  EXPECT_TRUE(
      contains(dynamic, "initialization=\"360p/init-2.mp4\" media=\"360p/2-$Number%05d$.m4s\" startNumber=\"1\""));
  EXPECT_TRUE(contains(dynamic, "<S t=\"250\" d=\"5000\"/>"));
  EXPECT_TRUE(contains(dynamic, "codecs=\"mp4a.40.2\" audioSamplingRate=\"48000\""));
  EXPECT_EQ(count(dynamic, "<AdaptationSet "), 4);
  EXPECT_FALSE(contains(dynamic, "UTCTiming"));
  m.time_url = "/streams/abc/manifest.mpd";
  EXPECT_TRUE(
      contains(sluice::live::write_live_mpd(m),
               "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"/streams/abc/manifest.mpd\"/>"));

  // Ended: static, the first listed segment at 0, what the Periods last as its duration.
  m.ended = true;
  const std::string fixed = sluice::live::write_live_mpd(m);
  SCOPED_TRACE(fixed);
  EXPECT_TRUE(contains(fixed, "type=\"static\" mediaPresentationDuration=\"PT18.100S\"")); // 4 s -> 22.1 s
  EXPECT_FALSE(contains(fixed, "availabilityStartTime"));
  EXPECT_FALSE(contains(fixed, "UTCTiming"));
  EXPECT_TRUE(contains(fixed, "<Period id=\"s1\" start=\"PT0.000S\">"));
  EXPECT_TRUE(contains(fixed, "<Period id=\"s2\" start=\"PT16.000S\">"));
  EXPECT_TRUE(contains(fixed, "timescale=\"2500\" presentationTimeOffset=\"10000\""));
  EXPECT_TRUE(contains(fixed, "timescale=\"48000\" presentationTimeOffset=\"192000\""));
}
