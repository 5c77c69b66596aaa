// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the nesting bounds checked before a file reaches GStreamer's demuxers (which read MP4
// boxes, Matroska chapters and tags, and FLV metadata recursively), on files built byte by byte here.

#include "core/error.h"
#include "core/fs.h"
#include "media/bmff.h"
#include "media/probe.h"

#include <gio/gio.h>
#include <gtest/gtest.h>

#include "check.h"
#include "media.h"
#include "mp4_boxes.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace {

using sluice::test::contains;
using sluice::test::TempDir;
using namespace sluice::media;
namespace fs = sluice::fs;

using sluice::test::mp4::be;
using sluice::test::mp4::box;
// Seconds fn takes.
double timed(const std::function<void()> &fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The verdict on a file of these bytes.
std::string problem(const TempDir &tmp, const std::string &name, const std::string &bytes) {
  fs::write_atomic(tmp.file(name), bytes);
  return nesting_problem(tmp.file(name));
}

// --- MP4 ---------------------------------------------------------------------------------------------

const std::string kFtyp = box("ftyp", "isom" + be(0, 4) + "isomavc1");

// `levels` boxes, each inside the one before, each after `skip` bytes of fields (0: containers). Built
// from the outside in (linear time).
std::string chain(const std::string &type, int levels, std::size_t skip = 0) {
  std::string out;
  for (int i = 0; i < levels; ++i)
    out += be((8 + skip) * static_cast<std::uint64_t>(levels - i), 4) + type + std::string(skip, '\0');
  return out;
}

// An MP4 whose movie header holds `body`: moov is at depth 1.
std::string mp4_with(const std::string &body) {
  return kFtyp + box("moov", box("mvhd", std::string(100, '\0')) + body) + box("mdat", std::string(64, 'x'));
}

TEST(Nesting, Mp4BoxesNestAtMost16Deep) {
  TempDir tmp;
  // moov > 15 traks: 16 levels, the deepest allowed; one more is refused.
  EXPECT_EQ(problem(tmp, "ok.mp4", mp4_with(chain("trak", kMaxBoxDepth - 1))), "");
  EXPECT_TRUE(contains(problem(tmp, "deep.mp4", mp4_with(chain("trak", kMaxBoxDepth))), "nested more than 16 deep"));
  // What crashed GStreamer's MP4 demuxer: 100,000 levels (800 KB), refused at once.
  std::string why, crash = mp4_with(chain("udta", 100000));
  double took = timed([&] { why = problem(tmp, "crash.mp4", crash); });
  EXPECT_TRUE(contains(why, "nested more than 16 deep")) << why;
  EXPECT_LT(took, 0.5);
  // A real movie header's depth (moov/trak/mdia/minf/stbl/stsd/avc1/avcC) and a flat list of many
  // boxes are fine.
  std::string avc1 = box("avc1", std::string(78, '\0') + box("avcC", std::string(20, '\x01')));
  std::string stsd = box("stsd", be(0, 4) + be(1, 4) + avc1);
  EXPECT_EQ(problem(tmp, "real.mp4",
                    mp4_with(box(
                        "trak", box("mdia", box("minf", box("stbl", stsd + box("stsz", std::string(4000, '\x07')))))))),
            "");
  std::string flat;
  for (int i = 0; i < 100000; ++i)
    flat += box("free", "");
  std::string flat_file = mp4_with(box("udta", flat));
  took = timed([&] { why = problem(tmp, "flat.mp4", flat_file); });
  EXPECT_EQ(why, "");
  EXPECT_LT(took, 2.0);
  // Not an MP4: not for this check.
  EXPECT_EQ(problem(tmp, "text.txt", "hello, this is not a media file"), "");
}

TEST(Nesting, Mp4BoxesInsideSampleEntriesAndMetaCount) {
  TempDir tmp;
  // qtdemux reads boxes after the 78 bytes of a visual sample entry, the 28 of a sound one, after
  // version and flags in meta, after the entry count in stsd: nesting through any of them counts.
  for (auto [type, skip] : {std::pair<const char *, std::size_t>{"avc1", 78}, {"mp4a", 28}, {"meta", 4}, {"stsd", 8}}) {
    EXPECT_TRUE(contains(problem(tmp, "deep.mp4", mp4_with(chain(type, 40, skip))), "nested more than 16 deep"))
        << type;
    EXPECT_EQ(problem(tmp, "ok.mp4", mp4_with(chain(type, 10, skip))), "") << type;
  }
  // In a fragment (moof) as in the movie header.
  std::string moof = box("moof", chain("traf", 30));
  EXPECT_TRUE(contains(problem(tmp, "frag.mp4", mp4_with("") + moof + box("mdat", "x")), "nested more than"));
}

// zlib-compressed bytes.
std::string deflate(const std::string &in) {
  g_autoptr(GZlibCompressor) z = g_zlib_compressor_new(G_ZLIB_COMPRESSOR_FORMAT_ZLIB, 1);
  std::string out(in.size() + 1024, '\0');
  gsize read = 0, written = 0;
  GConverterResult r = g_converter_convert(G_CONVERTER(z), in.data(), in.size(), out.data(), out.size(),
                                           G_CONVERTER_INPUT_AT_END, &read, &written, nullptr);
  EXPECT_EQ(r, G_CONVERTER_FINISHED);
  out.resize(written);
  return out;
}

TEST(Nesting, CompressedMovieHeadersAreInflatedAndChecked) {
  TempDir tmp;
  // moov > cmov > dcom 'zlib' + cmvd (length, zlib data): qtdemux inflates it and reads the boxes.
  auto compressed = [&](const std::string &inner_moov) {
    std::string cmvd = box("cmvd", be(inner_moov.size(), 4) + deflate(inner_moov));
    return kFtyp + box("moov", box("cmov", box("dcom", "zlib") + cmvd)) + box("mdat", "x");
  };
  // 100,000 levels (800 KB) deflate to about a quarter.
  std::string deep = compressed(box("moov", chain("trak", 100000)));
  EXPECT_LT(deep.size(), 400000u);
  EXPECT_TRUE(contains(problem(tmp, "deep.mov", deep), "nested more than 16 deep"));
  EXPECT_EQ(problem(tmp, "ok.mov", compressed(box("moov", chain("trak", 5)))), "");
}

// --- Matroska / WebM -----------------------------------------------------------------------------------

// An EBML element with an 8-byte size.
std::string el(std::uint32_t id, const std::string &body) {
  int id_len = id > 0xffffff ? 4 : id > 0xffff ? 3 : id > 0xff ? 2 : 1;
  return be(id, id_len) + be(0x01, 1) + be(body.size(), 7) + body;
}

const std::string kEbml = el(0x1A45DFA3, el(0x4282, "matroska"));

std::string mkv_with(const std::string &segment_body) {
  return kEbml + el(0x18538067, el(0x1549A966, el(0x2AD7B1, be(1000000, 3))) + segment_body);
}

// `levels` elements `id`, each starting with `head` and then holding the next; `leaf` in the last. Built
// from the outside in (linear time).
std::string nested(std::uint32_t id, int levels, const std::string &head, const std::string &leaf) {
  const std::size_t header = el(id, "").size();
  std::string out;
  for (int i = 0; i < levels; ++i) {
    std::size_t body = (header + head.size()) * static_cast<std::size_t>(levels - i - 1) + head.size() + leaf.size();
    out += el(id, "").substr(0, header - 7) + be(body, 7) + head;
  }
  return out + leaf;
}

// Chapters > EditionEntry > `atoms` ChapterAtoms, each inside the one before.
std::string chapters(int atoms) {
  return el(0x1043A770, el(0x45B9, nested(0xB6, atoms, el(0x73C4, be(7, 2)), el(0x73C4, be(1, 1)))));
}

// Tags > Tag > `levels` SimpleTags, each (named) inside the one before.
std::string tags(int levels) {
  return el(0x1254C367,
            el(0x7373, el(0x63C0, "") + nested(0x67C8, levels, el(0x45A3, "name"), el(0x45A3, "x") + el(0x4487, "y"))));
}

TEST(Nesting, MatroskaChaptersAndTagsNestAtMost16Deep) {
  TempDir tmp;
  // Chapters, EditionEntry and 14 atoms: 16 levels; one more atom is refused.
  EXPECT_EQ(problem(tmp, "ok.mkv", mkv_with(chapters(kMaxNesting - 2))), "");
  EXPECT_TRUE(contains(problem(tmp, "deep.mkv", mkv_with(chapters(kMaxNesting - 1))), "chapters or tags are nested"));
  EXPECT_EQ(problem(tmp, "ok-tags.mkv", mkv_with(tags(kMaxNesting - 2))), "");
  EXPECT_TRUE(contains(problem(tmp, "deep-tags.mkv", mkv_with(tags(kMaxNesting - 1))), "nested more than 16"));
  // What crashed GStreamer's Matroska demuxer: 200,000 nested chapters, refused at once.
  std::string why, crash = mkv_with(chapters(200000));
  double took = timed([&] { why = problem(tmp, "crash.mkv", crash); });
  EXPECT_TRUE(contains(why, "nested more than 16")) << why;
  EXPECT_LT(took, 1.0);
  // After a live cluster of unknown size (its blocks walked one by one).
  std::string cluster = be(0x1F43B675, 4) + be(0x01FFFFFFFFFFFFFFull, 8) + el(0xE7, be(0, 1)) + el(0xA3, "abcd");
  EXPECT_TRUE(contains(problem(tmp, "live.mkv", mkv_with(cluster + chapters(40))), "nested more than 16"));
  // Hidden in a Void element where only the SeekHead points (as the demuxer finds them).
  std::string info = el(0x1549A966, el(0x2AD7B1, be(1000000, 3)));
  std::string hidden = el(0xEC, chapters(40)); // Void
  auto seekhead = [&](std::uint64_t position) {
    return el(0x114D9B74, el(0x4DBB, el(0x53AB, be(0x1043A770, 4)) + el(0x53AC, be(position, 8))));
  };
  std::size_t head_size = seekhead(0).size();
  // The chapters start after the SeekHead, Info and the Void's 9-byte header, from the segment's data.
  std::string segment = seekhead(head_size + info.size() + 9) + info + hidden;
  std::string file = kEbml + el(0x18538067, segment);
  EXPECT_TRUE(contains(problem(tmp, "seek.mkv", file), "nested more than 16")) << problem(tmp, "seek.mkv", file);
  // Not Matroska: not for this check.
  EXPECT_EQ(problem(tmp, "ebml-less.mkv", std::string("\x1a\x45\xdf", 3)), "");
}

// --- FLV -------------------------------------------------------------------------------------------------

std::string amf_string(const std::string &s) {
  return be(s.size(), 2) + s;
}

// An FLV file whose onMetaData (an ECMA array) holds `levels` objects, each inside the one before.
std::string flv_with_metadata(int levels) {
  std::string items;
  for (int i = 0; i < levels; ++i)
    items += amf_string("o") + be(3, 1);
  items += amf_string("duration") + be(0, 1) + std::string(8, '\0');
  for (int i = 0; i < levels; ++i)
    items += amf_string("") + be(9, 1);
  std::string data = be(2, 1) + amf_string("onMetaData") + be(8, 1) + be(1, 4) + items + amf_string("") + be(9, 1);
  std::string tag = be(18, 1) + be(data.size(), 3) + be(0, 4) + be(0, 3) + data + be(11 + data.size(), 4);
  return "FLV" + be(1, 1) + be(5, 1) + be(9, 4) + be(0, 4) + tag;
}

TEST(Nesting, FlvMetadataNestsAtMost16Deep) {
  TempDir tmp;
  // The metadata array and 15 objects: 16 levels; one more is refused.
  EXPECT_EQ(problem(tmp, "ok.flv", flv_with_metadata(kMaxNesting - 1)), "");
  EXPECT_TRUE(contains(problem(tmp, "deep.flv", flv_with_metadata(kMaxNesting)), "metadata objects are nested"));
  // What crashed GStreamer's FLV demuxer: 200,000 levels, refused at once.
  std::string why, crash = flv_with_metadata(200000);
  double took = timed([&] { why = problem(tmp, "crash.flv", crash); });
  EXPECT_TRUE(contains(why, "nested more than 16")) << why;
  EXPECT_LT(took, 0.5);
}

} // namespace
