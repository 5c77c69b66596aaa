// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of HLS playlist reading/writing, bitrate measurement and H.264 codec strings from SPS bytes.

#include "core/error.h"
#include "core/fs.h"
#include "media/h264.h"
#include "media/hls.h"

#include <glib/gstdio.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include "check.h"
#include "media.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using sluice::ErrorCode;
using sluice::test::contains;
using sluice::test::count;
using sluice::test::expect_error;
using sluice::test::TempDir;
using namespace sluice::media;

[[maybe_unused]] ::testing::Environment *const gst_environment =
    ::testing::AddGlobalTestEnvironment(new sluice::test::GstEnvironment);

// Writes a file of exactly `bytes` bytes into dir.
void write_sized(const TempDir &dir, const std::string &name, std::size_t bytes) {
  std::string data(bytes, '\x47');
  ASSERT_TRUE(g_file_set_contents(dir.file(name).c_str(), data.data(), static_cast<gssize>(data.size()), nullptr));
}

// What hlssink2 (GStreamer 1.22) writes: integer durations as "4,", others with many digits,
// a blank line after the header and no newline after ENDLIST.
const char *const kHlssink2Playlist = "#EXTM3U\n"
                                      "#EXT-X-VERSION:3\n"
                                      "#EXT-X-MEDIA-SEQUENCE:0\n"
                                      "#EXT-X-TARGETDURATION:4\n"
                                      "\n"
                                      "#EXTINF:4,\n"
                                      "720p_00000.ts\n"
                                      "#EXTINF:4,\n"
                                      "720p_00001.ts\n"
                                      "#EXTINF:0.9666,\n"
                                      "720p_00002.ts\n"
                                      "#EXT-X-ENDLIST";

MediaPlaylist playlist(const std::vector<std::pair<std::string, double>> &segments, int target = 4) {
  MediaPlaylist pl;
  pl.target_duration = target;
  for (const auto &[uri, d] : segments)
    pl.segments.push_back({uri, d, -1});
  return pl;
}

// ---------------------------------------------------------------------------------------------
// Media playlists

TEST(ParseMediaPlaylistTest, ReadsHlssink2Output) {
  MediaPlaylist pl = parse_media_playlist(kHlssink2Playlist);
  EXPECT_EQ(pl.version, 3);
  EXPECT_EQ(pl.target_duration, 4);
  EXPECT_EQ(pl.media_sequence, 0);
  EXPECT_TRUE(pl.endlist);
  EXPECT_EQ(pl.playlist_type, "");
  ASSERT_EQ(pl.segments.size(), 3u);
  EXPECT_EQ(pl.segments[0].uri, "720p_00000.ts");
  EXPECT_DOUBLE_EQ(pl.segments[0].duration, 4.0);
  EXPECT_EQ(pl.segments[2].uri, "720p_00002.ts");
  EXPECT_DOUBLE_EQ(pl.segments[2].duration, 0.9666);
  EXPECT_EQ(pl.segments[0].size, -1);
  EXPECT_NEAR(pl.total_duration(), 8.9666, 1e-9);
}

TEST(ParseMediaPlaylistTest, ReadsOtherTagsAndCrLf) {
  MediaPlaylist pl = parse_media_playlist("#EXTM3U\r\n#EXT-X-VERSION:4\r\n#EXT-X-TARGETDURATION:6\r\n"
                                          "#EXT-X-MEDIA-SEQUENCE:12\r\n#EXT-X-PLAYLIST-TYPE:EVENT\r\n"
                                          "#EXT-X-ALLOW-CACHE:NO\r\n# a comment\r\n"
                                          "#EXTINF:5.5,title\r\na.ts\r\n#EXTINF:6.0,\r\nb.ts\r\n");
  EXPECT_EQ(pl.version, 4);
  EXPECT_EQ(pl.target_duration, 6);
  EXPECT_EQ(pl.media_sequence, 12);
  EXPECT_EQ(pl.playlist_type, "EVENT");
  EXPECT_FALSE(pl.endlist);
  ASSERT_EQ(pl.segments.size(), 2u);
  EXPECT_EQ(pl.segments[0].uri, "a.ts");
  EXPECT_DOUBLE_EQ(pl.segments[0].duration, 5.5);
  EXPECT_EQ(pl.segments[1].uri, "b.ts");
}

TEST(ParseMediaPlaylistTest, EmptyPlaylistHasNoSegments) {
  MediaPlaylist pl = parse_media_playlist("#EXTM3U\n");
  EXPECT_TRUE(pl.segments.empty());
  EXPECT_DOUBLE_EQ(pl.total_duration(), 0.0);
}

TEST(ParseMediaPlaylistTest, RejectsNonPlaylists) {
  for (const std::string bad :
       {"", "hello", "<html><body>404</body></html>", "\n#EXTM3U\n", " #EXTM3U\n", "#EXTM3U8\n", "{\"json\": true}"}) {
    Error e = expect_error([&] { parse_media_playlist(bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
  }
  // A URI line without its #EXTINF.
  Error e = expect_error([] { parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:4\nseg.ts\n"); });
  EXPECT_TRUE(contains(e.what(), "seg.ts")) << e.what();
  EXPECT_THROW(parse_media_playlist("#EXTM3U\n#EXTINF:4,\na.ts\nb.ts\n"), Error);
}

TEST(WriteMediaPlaylistTest, VodAddsTypeAndEndlist) {
  MediaPlaylist pl = parse_media_playlist(kHlssink2Playlist);
  std::string s = write_media_playlist(pl, "VOD");
  EXPECT_EQ(s.rfind("#EXTM3U\n#EXT-X-VERSION:3\n", 0), 0u) << s;
  EXPECT_EQ(count(s, "#EXT-X-PLAYLIST-TYPE:VOD\n"), 1) << s;
  EXPECT_EQ(count(s, "#EXT-X-TARGETDURATION:4\n"), 1) << s;
  EXPECT_EQ(count(s, "#EXT-X-MEDIA-SEQUENCE:0\n"), 1) << s;
  EXPECT_EQ(count(s, "#EXTINF:"), 3) << s;
  EXPECT_TRUE(contains(s, "#EXTINF:4.000000,\n720p_00000.ts\n")) << s;
  EXPECT_TRUE(contains(s, "#EXTINF:0.966600,\n720p_00002.ts\n")) << s;
  const std::string end = "#EXT-X-ENDLIST\n";
  ASSERT_GE(s.size(), end.size());
  EXPECT_EQ(s.substr(s.size() - end.size()), end) << s;
  EXPECT_EQ(count(s, "#EXT-X-ENDLIST"), 1);
}

TEST(WriteMediaPlaylistTest, EventStaysOpen) {
  MediaPlaylist pl = parse_media_playlist(kHlssink2Playlist); // has ENDLIST
  std::string s = write_media_playlist(pl, "EVENT");
  EXPECT_EQ(count(s, "#EXT-X-PLAYLIST-TYPE:EVENT\n"), 1) << s;
  EXPECT_EQ(count(s, "#EXT-X-ENDLIST"), 0) << s;
  EXPECT_EQ(count(s, "#EXTINF:"), 3) << s;
}

TEST(WriteMediaPlaylistTest, UntypedKeepsItsEndlist) {
  MediaPlaylist open = playlist({{"a.ts", 4}});
  std::string s = write_media_playlist(open, "");
  EXPECT_EQ(count(s, "PLAYLIST-TYPE"), 0) << s;
  EXPECT_EQ(count(s, "#EXT-X-ENDLIST"), 0) << s;
  open.endlist = true;
  EXPECT_EQ(count(write_media_playlist(open, ""), "#EXT-X-ENDLIST"), 1);
}

TEST(WriteMediaPlaylistTest, TargetDurationCoversTheLongestSegment) {
  struct Case {
    std::vector<double> durations;
    int target_in;
    int target_out;
  };
  for (const Case &c : {Case{{4.0, 4.6, 1.0}, 4, 5}, Case{{4.0, 4.4}, 4, 4}, Case{{3.9, 2.0}, 4, 4}, Case{{6.5}, 4, 7},
                        Case{{2.0}, 6, 6}, Case{{}, 0, 1}, Case{{0.2}, 0, 1}, Case{{10.49}, 2, 10}}) {
    MediaPlaylist pl;
    pl.target_duration = c.target_in;
    for (size_t i = 0; i < c.durations.size(); i++)
      pl.segments.push_back({"s" + std::to_string(i) + ".ts", c.durations[i], -1});
    std::string s = write_media_playlist(pl, "VOD");
    EXPECT_TRUE(contains(s, "#EXT-X-TARGETDURATION:" + std::to_string(c.target_out) + "\n")) << s;
    // RFC 8216: each EXTINF rounded to the nearest integer is at most the target duration.
    MediaPlaylist back = parse_media_playlist(s);
    for (const auto &seg : back.segments)
      EXPECT_LE(std::lround(seg.duration), back.target_duration) << s;
  }
}

TEST(WriteMediaPlaylistTest, RoundTrips) {
  MediaPlaylist pl = playlist({{"a_00000.ts", 4.004}, {"a_00001.ts", 3.9666667}, {"a_00002.ts", 0.5}});
  pl.media_sequence = 7;
  MediaPlaylist back = parse_media_playlist(write_media_playlist(pl, "VOD"));
  EXPECT_EQ(back.playlist_type, "VOD");
  EXPECT_TRUE(back.endlist);
  EXPECT_EQ(back.media_sequence, 7);
  ASSERT_EQ(back.segments.size(), pl.segments.size());
  for (size_t i = 0; i < pl.segments.size(); i++) {
    EXPECT_EQ(back.segments[i].uri, pl.segments[i].uri);
    EXPECT_NEAR(back.segments[i].duration, pl.segments[i].duration, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------
// measure()

TEST(MeasureTest, PeakIgnoresShortSegmentsAndAverageIsOverall) {
  TempDir dir;
  write_sized(dir, "s0.ts", 500000);
  write_sized(dir, "s1.ts", 800000);
  write_sized(dir, "s2.ts", 600000);
  write_sized(dir, "s3.ts", 400000); // 0.75 s: 4.27 Mbit/s, but shorter than a second
  MediaPlaylist pl = playlist({{"s0.ts", 4.0}, {"s1.ts", 4.0}, {"s2.ts", 4.0}, {"s3.ts", 0.75}});
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.bytes, 2300000);
  EXPECT_DOUBLE_EQ(st.duration, 12.75);
  EXPECT_EQ(st.peak_bps, 1600000); // s1: 800000 * 8 / 4
  EXPECT_EQ(st.average_bps, static_cast<std::int64_t>(std::ceil(2300000 * 8.0 / 12.75)));
  EXPECT_EQ(st.average_bps, 1443138);
  ASSERT_EQ(pl.segments.size(), 4u);
  EXPECT_EQ(pl.segments[0].size, 500000);
  EXPECT_EQ(pl.segments[3].size, 400000);
}

TEST(MeasureTest, AShortLastSegmentOfMoreThanASecondCounts) {
  // Like a 10 s clip cut into 4 s segments: the last 2 s segment has the highest rate.
  TempDir dir;
  write_sized(dir, "a.ts", 94376);
  write_sized(dir, "b.ts", 95880);
  write_sized(dir, "c.ts", 49444);
  MediaPlaylist pl = playlist({{"a.ts", 4.0}, {"b.ts", 4.0}, {"c.ts", 1.966667}});
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.peak_bps, static_cast<std::int64_t>(std::ceil(49444 * 8.0 / 1.966667)));
  EXPECT_GT(st.peak_bps, st.average_bps);
}

TEST(MeasureTest, SegmentOfHalfTheLongestCounts) {
  TempDir dir;
  write_sized(dir, "a.ts", 100000);
  write_sized(dir, "b.ts", 500000);
  MediaPlaylist pl = playlist({{"a.ts", 4.0}, {"b.ts", 2.0}});
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.peak_bps, 2000000);
  EXPECT_EQ(st.average_bps, 800000);
}

TEST(MeasureTest, PeakIsAtLeastTheAverage) {
  TempDir dir;
  write_sized(dir, "a.ts", 1000);
  write_sized(dir, "b.ts", 1000000); // too short to count for the peak, but part of the average
  MediaPlaylist pl = playlist({{"a.ts", 4.0}, {"b.ts", 0.5}});
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.average_bps, static_cast<std::int64_t>(std::ceil(1001000 * 8.0 / 4.5)));
  EXPECT_EQ(st.peak_bps, st.average_bps);
}

TEST(MeasureTest, SingleShortSegment) {
  TempDir dir;
  write_sized(dir, "only.ts", 12345);
  MediaPlaylist pl = playlist({{"only.ts", 0.5}});
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.peak_bps, static_cast<std::int64_t>(std::ceil(12345 * 8.0 / 0.5)));
  EXPECT_EQ(st.average_bps, st.peak_bps);
  EXPECT_EQ(st.bytes, 12345);
}

TEST(MeasureTest, EmptyPlaylist) {
  TempDir dir;
  MediaPlaylist pl;
  VariantStats st = measure(pl, dir.path());
  EXPECT_EQ(st.bytes, 0);
  EXPECT_EQ(st.peak_bps, 0);
  EXPECT_EQ(st.average_bps, 0);
}

TEST(MeasureTest, MissingSegmentThrows) {
  TempDir dir;
  write_sized(dir, "a.ts", 1000);
  MediaPlaylist pl = playlist({{"a.ts", 4.0}, {"gone.ts", 4.0}});
  Error e = expect_error([&] { measure(pl, dir.path()); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "gone.ts")) << e.what();
}

TEST(MeasureTest, RejectsUrisOutsideTheFolder) {
  TempDir dir;
  write_sized(dir, "a.ts", 1000);
  ASSERT_EQ(g_mkdir(dir.file("sub").c_str(), 0700), 0);
  write_sized(dir, "sub/b.ts", 1000);
  for (const char *uri : {"sub/b.ts", "../a.ts", "/etc/passwd", "..", "http://example.com/a.ts"}) {
    MediaPlaylist pl = playlist({{"a.ts", 4.0}, {uri, 4.0}});
    Error e = expect_error([&] { measure(pl, dir.path()); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << uri;
    EXPECT_TRUE(contains(e.what(), uri)) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Master playlist

TEST(MasterPlaylistTest, SortedWithAllAttributes) {
  std::vector<Variant> v = {
      {"720p.m3u8", 3100000, 2900000, 1280, 720, 29.97002997, "avc1.64001f,mp4a.40.2", ""},
      {"360p.m3u8", 950000, 880000, 640, 360, 29.97002997, "avc1.64001e,mp4a.40.2", ""},
      {"1080p.m3u8", 5600000, 5200000, 1920, 1080, 30.0, "avc1.640028,mp4a.40.2", ""},
  };
  const std::string expected = "#EXTM3U\n"
                               "#EXT-X-VERSION:3\n"
                               "#EXT-X-INDEPENDENT-SEGMENTS\n"
                               "#EXT-X-STREAM-INF:BANDWIDTH=950000,AVERAGE-BANDWIDTH=880000,RESOLUTION=640x360,"
                               "FRAME-RATE=29.970,CODECS=\"avc1.64001e,mp4a.40.2\"\n"
                               "360p.m3u8\n"
                               "#EXT-X-STREAM-INF:BANDWIDTH=3100000,AVERAGE-BANDWIDTH=2900000,RESOLUTION=1280x720,"
                               "FRAME-RATE=29.970,CODECS=\"avc1.64001f,mp4a.40.2\"\n"
                               "720p.m3u8\n"
                               "#EXT-X-STREAM-INF:BANDWIDTH=5600000,AVERAGE-BANDWIDTH=5200000,RESOLUTION=1920x1080,"
                               "FRAME-RATE=30.000,CODECS=\"avc1.640028,mp4a.40.2\"\n"
                               "1080p.m3u8\n";
  EXPECT_EQ(write_master_playlist(v), expected);
}

TEST(MasterPlaylistTest, AudioOnlyVariantHasNoResolution) {
  std::vector<Variant> v = {{"audio.m3u8", 140000, 131000, 0, 0, 0.0, "mp4a.40.2", ""}};
  std::string s = write_master_playlist(v);
  EXPECT_TRUE(
      contains(s, "#EXT-X-STREAM-INF:BANDWIDTH=140000,AVERAGE-BANDWIDTH=131000,CODECS=\"mp4a.40.2\"\naudio.m3u8\n"))
      << s;
  EXPECT_FALSE(contains(s, "RESOLUTION")) << s;
  EXPECT_FALSE(contains(s, "FRAME-RATE")) << s;
}

TEST(MasterPlaylistTest, FrameRateHasThreeDecimals) {
  for (const auto &[fps, text] : std::vector<std::pair<double, std::string>>{
           {23.976023976, "23.976"}, {25.0, "25.000"}, {59.94005994, "59.940"}, {12.5, "12.500"}}) {
    std::string s = write_master_playlist({{"v.m3u8", 1000, 900, 320, 240, fps, "avc1.42c01e", ""}});
    EXPECT_TRUE(contains(s, ",FRAME-RATE=" + text + ",")) << s;
  }
}

TEST(MasterPlaylistTest, EqualBandwidthKeepsInputOrder) {
  std::string s = write_master_playlist({{"b.m3u8", 1000, 900, 2, 2, 0, "x", ""}, {"a.m3u8", 1000, 900, 2, 2, 0, "x", ""}});
  EXPECT_LT(s.find("b.m3u8"), s.find("a.m3u8"));
  EXPECT_EQ(write_master_playlist({}), "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
}

// ---------------------------------------------------------------------------------------------
// H.264 SPS: Annex B

using Bytes = std::vector<std::uint8_t>;

std::optional<H264Sps> annexb(const Bytes &b) {
  return find_sps_annexb(b.data(), b.size());
}

TEST(H264AnnexBTest, FindsHighProfileSps) {
  auto sps = annexb({0x00, 0x00, 0x00, 0x01, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05});
  ASSERT_TRUE(sps.has_value());
  EXPECT_EQ(sps->profile_idc, 100);
  EXPECT_EQ(sps->constraint_flags, 0);
  EXPECT_EQ(sps->level_idc, 31);
  EXPECT_EQ(avc1_codec(*sps), "avc1.64001f");
}

TEST(H264AnnexBTest, AnyNalRefIdcAndThreeByteStartCodes) {
  // 0x27: nal_ref_idc 1, type 7; 0x47: nal_ref_idc 2, type 7.
  auto a = annexb({0x00, 0x00, 0x01, 0x27, 0x4d, 0x40, 0x1e, 0x95});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(avc1_codec(*a), "avc1.4d401e");
  auto b = annexb({0x00, 0x00, 0x01, 0x47, 0x42, 0xc0, 0x0d, 0x00});
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(avc1_codec(*b), "avc1.42c00d");
}

TEST(H264AnnexBTest, SkipsOtherNalsBeforeTheSps) {
  // An access unit delimiter and SEI first, as x264 writes them.
  auto sps = annexb({0x00, 0x00, 0x00, 0x01, 0x09, 0xf0, 0x00, 0x00, 0x00, 0x01, 0x06,
                     0x05, 0x11, 0x00, 0x00, 0x01, 0x67, 0x4d, 0x00, 0x0d, 0xab});
  ASSERT_TRUE(sps.has_value());
  EXPECT_EQ(avc1_codec(*sps), "avc1.4d000d");
}

TEST(H264AnnexBTest, RejectsGarbage) {
  EXPECT_FALSE(annexb({}).has_value());
  EXPECT_FALSE(find_sps_annexb(nullptr, 0).has_value());
  EXPECT_FALSE(annexb({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}).has_value());
  EXPECT_FALSE(annexb(Bytes(64, 0x00)).has_value());
  EXPECT_FALSE(annexb(Bytes(64, 0xff)).has_value());
  // A PPS (type 8), not an SPS.
  EXPECT_FALSE(annexb({0x00, 0x00, 0x01, 0x68, 0x64, 0x00, 0x1f, 0x00}).has_value());
  // The forbidden bit set.
  EXPECT_FALSE(annexb({0x00, 0x00, 0x01, 0xe7, 0x64, 0x00, 0x1f, 0x00}).has_value());
  // An unknown profile, or level 0.
  EXPECT_FALSE(annexb({0x00, 0x00, 0x01, 0x67, 0x05, 0x00, 0x1f, 0x00}).has_value());
  EXPECT_FALSE(annexb({0x00, 0x00, 0x01, 0x67, 0x64, 0x00, 0x00, 0x00}).has_value());
  // Cut before the level byte.
  EXPECT_FALSE(annexb({0x00, 0x00, 0x01, 0x67, 0x64, 0x00}).has_value());
  EXPECT_TRUE(annexb({0x00, 0x00, 0x01, 0x67, 0x64, 0x00, 0x1f}).has_value());
}

TEST(H264CodecStringTest, Formats) {
  EXPECT_EQ(avc1_codec({66, 0xc0, 30}), "avc1.42c01e");
  EXPECT_EQ(avc1_codec({77, 0x40, 31}), "avc1.4d401f");
  EXPECT_EQ(avc1_codec({100, 0, 40}), "avc1.640028");
  EXPECT_EQ(avc1_codec({100, 0, 9}), "avc1.640009");
}

// ---------------------------------------------------------------------------------------------
// H.264 SPS: MPEG-TS

constexpr int kVideoPid = 0x100;
constexpr int kAudioPid = 0x101;

// One 188-byte TS packet; the payload is padded in front with adaptation-field stuffing.
std::string ts_packet(int pid, bool unit_start, int cc, const Bytes &payload) {
  EXPECT_LE(payload.size(), 184u);
  std::string p;
  p += static_cast<char>(0x47);
  p += static_cast<char>((unit_start ? 0x40 : 0x00) | ((pid >> 8) & 0x1f));
  p += static_cast<char>(pid & 0xff);
  const bool adaptation = payload.size() < 184;
  p += static_cast<char>(((adaptation ? 3 : 1) << 4) | (cc & 0x0f));
  if (adaptation) {
    const std::size_t len = 183 - payload.size(); // adaptation_field_length
    p += static_cast<char>(len);
    if (len > 0) {
      p += static_cast<char>(0x00); // no flags
      p.append(len - 1, static_cast<char>(0xff));
    }
  }
  p.append(payload.begin(), payload.end());
  EXPECT_EQ(p.size(), 188u);
  return p;
}

// A packet carrying only an adaptation field (no payload), filled with `fill`.
std::string ts_adaptation_only(int pid, const Bytes &fill) {
  std::string p;
  p += static_cast<char>(0x47);
  p += static_cast<char>((pid >> 8) & 0x1f);
  p += static_cast<char>(pid & 0xff);
  p += static_cast<char>(0x20); // adaptation field only
  p += static_cast<char>(183);
  p += static_cast<char>(0x00);
  p.append(fill.begin(), fill.end());
  p.append(188 - p.size(), static_cast<char>(0xff));
  return p;
}

std::string pat_packet() {
  Bytes pat = {0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2};
  pat.resize(184, 0xff);
  return ts_packet(0, true, 0, pat);
}

// A stream whose SPS NAL header ends the first video packet and whose profile/level bytes open the
// second one, with decoys that a reader which does not separate PIDs or payloads would pick.
std::string synthetic_ts() {
  std::string ts = pat_packet();
  // Null packet (PID 0x1fff) holding SPS-looking bytes: must be ignored.
  Bytes null_payload = {0x00, 0x00, 0x01, 0x67, 0x42, 0x00, 0x0a};
  null_payload.resize(184, 0xff);
  ts += ts_packet(0x1fff, false, 0, null_payload);
  // Adaptation-only packet with SPS-looking bytes in its adaptation field: no payload to read.
  ts += ts_adaptation_only(kVideoPid, {0x00, 0x00, 0x01, 0x67, 0x42, 0x00, 0x0b});
  // Video PES start: PES header with PTS, an AUD, then the SPS start code and NAL header byte.
  Bytes first = {0x00, 0x00, 0x01, 0xe0, 0x00, 0x00, 0x80, 0x80, 0x05, 0x21, 0x00, 0x01, 0x00,
                 0x01, 0x00, 0x00, 0x00, 0x01, 0x09, 0xf0, 0x00, 0x00, 0x00, 0x01, 0x67};
  ts += ts_packet(kVideoPid, true, 0, first);
  // An audio packet in between, whose first bytes would complete the split SPS as baseline 1.0.
  Bytes audio = {0x42, 0x00, 0x0a, 0xff, 0xf1, 0x50, 0x80};
  audio.resize(184, 0x11);
  ts += ts_packet(kAudioPid, false, 0, audio);
  // The rest of the SPS, then a PPS.
  Bytes second = {0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10,
                  0x00, 0x00, 0x00, 0x01, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0};
  ts += ts_packet(kVideoPid, false, 1, second);
  return ts;
}

TEST(H264TsTest, FindsSpsSplitAcrossPackets) {
  std::string ts = synthetic_ts();
  ASSERT_EQ(ts.size() % 188, 0u);
  auto sps = find_sps_ts(ts);
  ASSERT_TRUE(sps.has_value());
  EXPECT_EQ(avc1_codec(*sps), "avc1.64001f");
}

TEST(H264TsTest, NotATransportStream) {
  std::string ts = synthetic_ts();
  EXPECT_FALSE(find_sps_ts("").has_value());
  EXPECT_FALSE(find_sps_ts(std::string(187, '\x47')).has_value());
  EXPECT_FALSE(find_sps_ts("x" + ts).has_value()); // misaligned
  std::string not_ts = ts;
  not_ts[0] = 0x48;
  EXPECT_FALSE(find_sps_ts(not_ts).has_value());
  // The raw Annex B bytes on their own are not a TS.
  std::string raw("\x00\x00\x00\x01\x67\x64\x00\x1f", 8);
  raw.resize(400, '\0');
  EXPECT_FALSE(find_sps_ts(raw).has_value());
}

TEST(H264TsTest, NoVideo) {
  std::string ts = pat_packet();
  Bytes audio(184, 0x11);
  for (int i = 0; i < 20; i++)
    ts += ts_packet(kAudioPid, i == 0, i, audio);
  EXPECT_FALSE(find_sps_ts(ts).has_value());
}

TEST(H264TsTest, FileErrors) {
  EXPECT_EQ(expect_error([] { find_sps_ts_file("/nonexistent/seg.ts"); }).code(), ErrorCode::Io);
  TempDir dir;
  const std::string ts = synthetic_ts();
  ASSERT_TRUE(g_file_set_contents(dir.file("a.ts").c_str(), ts.data(), static_cast<gssize>(ts.size()), nullptr));
  auto sps = find_sps_ts_file(dir.file("a.ts"));
  ASSERT_TRUE(sps.has_value());
  EXPECT_EQ(avc1_codec(*sps), "avc1.64001f");
  ASSERT_TRUE(g_file_set_contents(dir.file("b.txt").c_str(), "hello", 5, nullptr));
  EXPECT_FALSE(find_sps_ts_file(dir.file("b.txt")).has_value());
}

// The level_idc of a caps "level" string ("3.1" -> 31, "4" -> 40); -1 for "1b" or none.
int level_idc(const gchar *level) {
  if (!level || g_strcmp0(level, "1b") == 0)
    return -1;
  return static_cast<int>(std::lround(g_ascii_strtod(level, nullptr) * 10));
}

bool have_element(const char *name) {
  GstElementFactory *f = gst_element_factory_find(name);
  if (f)
    gst_object_unref(f);
  return f != nullptr;
}

TEST(H264TsTest, FindsTheSpsOfARealEncode) {
  if (!have_element("x264enc") || !have_element("mpegtsmux") || !have_element("h264parse"))
    GTEST_SKIP() << "x264enc or mpegtsmux is not installed";
  TempDir dir;
  const std::string path = dir.file("real.ts");
  const std::string launch =
      "videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! "
      "x264enc ! video/x-h264,profile=main ! h264parse name=parse ! "
      "mpegtsmux ! filesink location=\"" +
      path + "\"";
  GError *err = nullptr;
  GstElement *p = gst_parse_launch_full(launch.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  ASSERT_NE(p, nullptr) << (err ? err->message : "");
  g_clear_error(&err);
  gst_object_ref_sink(p);
  GstBus *bus = gst_element_get_bus(p);
  ASSERT_NE(gst_element_set_state(p, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  ASSERT_NE(msg, nullptr) << "the encode did not finish";
  EXPECT_EQ(GST_MESSAGE_TYPE(msg), GST_MESSAGE_EOS);
  gst_message_unref(msg);

  // What h264parse says it produced.
  int caps_level = -1;
  std::string caps_profile;
  if (GstElement *parse = gst_bin_get_by_name(GST_BIN(p), "parse")) {
    GstPad *src = gst_element_get_static_pad(parse, "src");
    if (GstCaps *caps = gst_pad_get_current_caps(src)) {
      const GstStructure *s = gst_caps_get_structure(caps, 0);
      caps_level = level_idc(gst_structure_get_string(s, "level"));
      if (const gchar *prof = gst_structure_get_string(s, "profile"))
        caps_profile = prof;
      gst_caps_unref(caps);
    }
    gst_object_unref(src);
    gst_object_unref(parse);
  }
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(p);

  auto sps = find_sps_ts_file(path);
  ASSERT_TRUE(sps.has_value());
  EXPECT_EQ(sps->profile_idc, 77);
  const std::string codec = avc1_codec(*sps);
  EXPECT_EQ(codec.rfind("avc1.4d", 0), 0u) << codec;
  EXPECT_EQ(codec.size(), 11u) << codec;
  EXPECT_EQ(caps_profile, "main");
  EXPECT_GT(caps_level, 0) << "h264parse gave no level";
  EXPECT_EQ(sps->level_idc, caps_level) << codec;
}

} // namespace

TEST(MasterPlaylist, LeavesOutWhatIsNotKnownYet) {
  // The master of a running job: nominal bandwidth, no average and no codecs until the end.
  std::string s = write_master_playlist({{"v.m3u8", 1000, 0, 320, 240, 25.0, "", ""}});
  EXPECT_EQ(s, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
               "#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x240,FRAME-RATE=25.000\nv.m3u8\n");
}
