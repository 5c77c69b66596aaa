// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the sluicescale element (plugins/progress), driven through GstHarness: the sizes and formats it
// negotiates, what passes through, and what each filter does to pictures whose right answer is known.

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include "media.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

[[maybe_unused]] ::testing::Environment *const gst_environment =
    ::testing::AddGlobalTestEnvironment(new sluice::test::GstEnvironment);

struct HarnessFree {
  void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using Harness = std::unique_ptr<GstHarness, HarnessFree>;

std::string caps(const std::string &format, int width, int height, const std::string &extra = "") {
  return "video/x-raw,format=" + format + ",width=" + std::to_string(width) + ",height=" + std::to_string(height) +
         ",framerate=30/1" + extra;
}

Harness scaler(const std::string &method, const std::string &in, const std::string &out) {
  Harness h(gst_harness_new_parse(("sluicescale method=" + method).c_str()));
  gst_harness_set_caps_str(h.get(), in.c_str(), out.c_str());
  return h;
}

// A frame of `caps_str` whose every sample is value(component, x, y).
using Painter = std::function<guint8(guint component, int x, int y)>;
GstBuffer *paint(const std::string &caps_str, const Painter &value) {
  GstCaps *c = gst_caps_from_string(caps_str.c_str());
  GstVideoInfo info;
  EXPECT_TRUE(gst_video_info_from_caps(&info, c));
  gst_caps_unref(c);
  GstBuffer *buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstVideoFrame frame;
  EXPECT_TRUE(gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE));
  for (guint comp = 0; comp < GST_VIDEO_FRAME_N_COMPONENTS(&frame); comp++) {
    auto *data = static_cast<guint8 *>(GST_VIDEO_FRAME_COMP_DATA(&frame, comp));
    const int stride = GST_VIDEO_FRAME_COMP_STRIDE(&frame, comp);
    const int pstride = GST_VIDEO_FRAME_COMP_PSTRIDE(&frame, comp); // 2 for NV12's interleaved U and V
    for (int y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&frame, comp); y++)
      for (int x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH(&frame, comp); x++)
        data[y * stride + x * pstride] = value(comp, x, y);
  }
  gst_video_frame_unmap(&frame);
  GST_BUFFER_PTS(buf) = 0;
  GST_BUFFER_DURATION(buf) = GST_SECOND / 30;
  return buf;
}

// One component of a frame as rows of samples (NV12's U and V apart).
struct Plane {
  int width = 0, height = 0;
  std::vector<guint8> samples;
  guint8 at(int x, int y) const { return samples[static_cast<size_t>(y) * width + x]; }
};

std::vector<Plane> planes_of(GstHarness *h, GstBuffer *buf) {
  GstCaps *c = gst_pad_get_current_caps(h->sinkpad);
  GstVideoInfo info;
  EXPECT_TRUE(gst_video_info_from_caps(&info, c));
  gst_caps_unref(c);
  GstVideoFrame frame;
  std::vector<Plane> out;
  EXPECT_TRUE(gst_video_frame_map(&frame, &info, buf, GST_MAP_READ));
  for (guint comp = 0; comp < GST_VIDEO_FRAME_N_COMPONENTS(&frame); comp++) {
    Plane p;
    p.width = GST_VIDEO_FRAME_COMP_WIDTH(&frame, comp);
    p.height = GST_VIDEO_FRAME_COMP_HEIGHT(&frame, comp);
    const auto *data = static_cast<const guint8 *>(GST_VIDEO_FRAME_COMP_DATA(&frame, comp));
    const int stride = GST_VIDEO_FRAME_COMP_STRIDE(&frame, comp);
    const int pstride = GST_VIDEO_FRAME_COMP_PSTRIDE(&frame, comp);
    for (int y = 0; y < p.height; y++)
      for (int x = 0; x < p.width; x++)
        p.samples.push_back(data[y * stride + x * pstride]);
    out.push_back(std::move(p));
  }
  gst_video_frame_unmap(&frame);
  return out;
}

// Pushes one frame through and returns the scaled planes.
std::vector<Plane> scale(const std::string &method, const std::string &in, const std::string &out,
                         const Painter &value) {
  Harness h = scaler(method, in, out);
  EXPECT_EQ(gst_harness_push(h.get(), paint(in, value)), GST_FLOW_OK);
  GstBuffer *buf = gst_harness_pull(h.get());
  EXPECT_NE(buf, nullptr);
  if (!buf)
    return {};
  auto planes = planes_of(h.get(), buf);
  gst_buffer_unref(buf);
  return planes;
}

TEST(SluiceScale, AFlatPictureStaysFlatInEveryFormat) {
  const guint8 flat[3] = {100, 60, 200};
  for (const char *format : {"I420", "Y42B", "Y444", "NV12", "GRAY8"}) {
    // 1.5x down, to a width whose chroma is odd (427) and whose rows are not a multiple of 16.
    auto planes =
        scale("lanczos", caps(format, 1281, 720), caps(format, 854, 480), [&](guint p, int, int) { return flat[p]; });
    ASSERT_FALSE(planes.empty()) << format;
    EXPECT_EQ(planes[0].width, 854) << format;
    EXPECT_EQ(planes[0].height, 480) << format;
    for (size_t c = 0; c < planes.size(); c++)
      for (guint8 v : planes[c].samples)
        ASSERT_EQ(v, flat[c]) << format << " component " << c;
  }
}

TEST(SluiceScale, ALinearRampStaysLinearWithEveryInterpolatingFilter) {
  // Luma x across 256 columns, halved: every symmetric filter whose taps add up to one gives 2x + 0.5 away from the
  // edges (the edges repeat the last column, which bends the ramp there).
  for (const char *method : {"lanczos", "4-tap", "bilinear2", "spline", "catrom", "mitchell"}) {
    auto planes = scale(method, caps("I420", 256, 32), caps("I420", 128, 16),
                        [](guint p, int x, int) { return p == 0 ? static_cast<guint8>(x) : 128; });
    ASSERT_FALSE(planes.empty()) << method;
    for (int y = 0; y < 16; y++)
      for (int x = 8; x < 120; x++)
        ASSERT_NEAR(planes[0].at(x, y), 2 * x + 0.5, 1.0) << method << " at " << x << "," << y;
  }
}

TEST(SluiceScale, TheMethodChoosesTheFilter) {
  // A hard edge from 16 to 235, scaled 2.56x down: Lanczos-3 rings past both levels beside it, linear does not.
  auto edge = [](guint p, int x, int) -> guint8 { return p ? 128 : (x < 128 ? 16 : 235); };
  auto lanczos = scale("lanczos", caps("I420", 256, 16), caps("I420", 100, 16), edge);
  auto linear = scale("bilinear2", caps("I420", 256, 16), caps("I420", 100, 16), edge);
  ASSERT_FALSE(lanczos.empty());
  ASSERT_FALSE(linear.empty());
  auto [lmin, lmax] = std::minmax_element(lanczos[0].samples.begin(), lanczos[0].samples.end());
  auto [bmin, bmax] = std::minmax_element(linear[0].samples.begin(), linear[0].samples.end());
  EXPECT_LT(*lmin, 16);
  EXPECT_GT(*lmax, 235);
  EXPECT_EQ(*bmin, 16);
  EXPECT_EQ(*bmax, 235);

  // Nearest neighbour makes no new values: every output sample is one of the input's.
  auto noise = [](guint p, int x, int y) -> guint8 { return static_cast<guint8>(((x * 7 + y * 13 + p) % 5) * 50); };
  auto nearest = scale("nearest-neighbour", caps("I420", 96, 64), caps("I420", 40, 26), noise);
  auto smooth = scale("lanczos", caps("I420", 96, 64), caps("I420", 40, 26), noise);
  ASSERT_FALSE(nearest.empty());
  ASSERT_FALSE(smooth.empty());
  const std::set<guint8> inputs = {0, 50, 100, 150, 200};
  for (const Plane &p : nearest)
    for (guint8 v : p.samples)
      ASSERT_TRUE(inputs.count(v)) << int(v);
  EXPECT_TRUE(
      std::any_of(smooth[0].samples.begin(), smooth[0].samples.end(), [&](guint8 v) { return !inputs.count(v); }));
}

// libswscale's SIMD loads run up to 16 bytes past a row's end, so sluicescale reads a frame without room after its
// last row from a padded copy: the frames below end right before a page that cannot be read (SIGSEGV otherwise).
struct Mapping {
  void *at;
  size_t length;
};
void unmap(gpointer m) {
  auto *mapping = static_cast<Mapping *>(m);
  munmap(mapping->at, mapping->length);
  delete mapping;
}

// `format` at 1281x720 (odd chroma rows: where libswscale reads furthest) in a buffer whose last byte is the last
// readable one before a page that cannot be read.
GstBuffer *guarded_frame(const std::string &in) {
  GstBuffer *painted = paint(in, [](guint p, int, int) -> guint8 { return p ? 128 : 77; });
  GstMapInfo m;
  EXPECT_TRUE(gst_buffer_map(painted, &m, GST_MAP_READ));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t span = (m.size + page - 1) / page * page;
  auto *mapping =
      new Mapping{mmap(nullptr, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), span + page};
  EXPECT_NE(mapping->at, MAP_FAILED);
  auto *base = static_cast<guint8 *>(mapping->at);
  EXPECT_EQ(mprotect(base + span, page, PROT_NONE), 0);
  guint8 *data = base + span - m.size;
  memcpy(data, m.data, m.size);
  GstBuffer *guarded = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, data, m.size, 0, m.size, mapping, unmap);
  gst_buffer_unmap(painted, &m);
  gst_buffer_unref(painted);
  GST_BUFFER_PTS(guarded) = 0;
  return guarded;
}

TEST(SluiceScale, ReadsNothingPastTheEndOfAFrame) {
  for (const char *format : {"I420", "Y42B", "Y444", "NV12", "GRAY8"}) {
    SCOPED_TRACE(format);
    const std::string in = caps(format, 1281, 720);
    Harness h = scaler("lanczos", in, caps(format, 854, 480));
    ASSERT_EQ(gst_harness_push(h.get(), guarded_frame(in)), GST_FLOW_OK);
    GstBuffer *out = gst_harness_pull(h.get());
    ASSERT_NE(out, nullptr);
    auto planes = planes_of(h.get(), out);
    gst_buffer_unref(out);
    ASSERT_FALSE(planes.empty());
    for (size_t c = 0; c < planes.size(); c++)
      EXPECT_TRUE(std::all_of(planes[c].samples.begin(), planes[c].samples.end(),
                              [c](guint8 v) { return v == (c ? 128 : 77); }));
  }
}

TEST(SluiceScale, UpscalesToo) {
  auto planes = scale("lanczos", caps("I420", 64, 36), caps("I420", 1280, 720),
                      [](guint p, int, int) -> guint8 { return p ? 128 : 77; });
  ASSERT_FALSE(planes.empty());
  EXPECT_EQ(planes[0].width, 1280);
  EXPECT_EQ(planes[2].height, 360);
  EXPECT_TRUE(std::all_of(planes[0].samples.begin(), planes[0].samples.end(), [](guint8 v) { return v == 77; }));
}

TEST(SluiceScale, TheSameSizePassesTheBufferThrough) {
  const std::string c = caps("I420", 320, 180);
  Harness h = scaler("lanczos", c, c);
  GstBuffer *in = paint(c, [](guint, int x, int y) { return static_cast<guint8>(x ^ y); });
  gst_buffer_ref(in);
  ASSERT_EQ(gst_harness_push(h.get(), in), GST_FLOW_OK);
  GstBuffer *out = gst_harness_pull(h.get());
  EXPECT_EQ(out, in);
  gst_buffer_unref(out);
  gst_buffer_unref(in);
}

TEST(SluiceScale, KeepsColorimetryAndSitingAndChangesOnlyTheSize) {
  const std::string tags = ",colorimetry=bt709,chroma-site=mpeg2,interlace-mode=progressive,pixel-aspect-ratio=4/3";
  Harness h = scaler("lanczos", caps("I420", 1440, 1080, tags),
                     "video/x-raw,format=I420,width=1280,height=720,pixel-aspect-ratio=1/1");
  ASSERT_EQ(gst_harness_push(h.get(), paint(caps("I420", 1440, 1080, tags), [](guint, int, int) { return 90; })),
            GST_FLOW_OK);
  GstBuffer *out = gst_harness_pull(h.get());
  ASSERT_NE(out, nullptr);
  gst_buffer_unref(out);
  GstCaps *c = gst_pad_get_current_caps(h->sinkpad);
  GstStructure *s = gst_caps_get_structure(c, 0);
  int w = 0, hgt = 0, par_n = 0, par_d = 0;
  EXPECT_TRUE(gst_structure_get_int(s, "width", &w));
  EXPECT_TRUE(gst_structure_get_int(s, "height", &hgt));
  EXPECT_TRUE(gst_structure_get_fraction(s, "pixel-aspect-ratio", &par_n, &par_d));
  EXPECT_EQ(w, 1280);
  EXPECT_EQ(hgt, 720);
  EXPECT_EQ(par_n, 1);
  EXPECT_EQ(par_d, 1);
  EXPECT_STREQ(gst_structure_get_string(s, "colorimetry"), "bt709");
  EXPECT_STREQ(gst_structure_get_string(s, "chroma-site"), "mpeg2");
  EXPECT_STREQ(gst_structure_get_string(s, "format"), "I420");
  gst_caps_unref(c);
}

TEST(SluiceScale, DoesNotConvertFormats) {
  // I420 in, only Y444 accepted downstream: no caps fit, so the first buffer is refused.
  Harness h = scaler("lanczos", caps("I420", 320, 180), caps("Y444", 160, 90));
  EXPECT_EQ(gst_harness_push(h.get(), paint(caps("I420", 320, 180), [](guint, int, int) { return 0; })),
            GST_FLOW_NOT_NEGOTIATED);
}

} // namespace
