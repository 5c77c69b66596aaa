// SPDX-License-Identifier: LGPL-2.1-or-later
// sluicescale against ffmpeg's scale filter: the same frames scaled by both, with each method's libswscale flag as
// the bench gives ffmpeg (tools/bench SWS_FOR_SCALER), must come out byte for byte the same. This is what lets
// tools/bench transcode compare encoders and not scalers, and what makes `scaler` mean what ffmpeg users know.

#include "media.h"

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace test = sluice::test;
using sluice::test::TempDir;

namespace {

[[maybe_unused]] ::testing::Environment *const gst_environment =
    ::testing::AddGlobalTestEnvironment(new sluice::test::GstEnvironment);

std::vector<guint8> read_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The frames of `raw` (packed I420 of in_w x in_h) scaled by sluicescale to out_w x out_h, packed as ffmpeg writes
// rawvideo (no row padding).
std::vector<guint8> scale_with_sluicescale(const std::string &raw, int in_w, int in_h, int out_w, int out_h,
                                           const std::string &method) {
  const std::string launch = "filesrc location=\"" + raw +
                             "\" ! rawvideoparse format=i420 width=" + std::to_string(in_w) +
                             " height=" + std::to_string(in_h) + " framerate=30/1 ! sluicescale method=" + method +
                             " ! video/x-raw,width=" + std::to_string(out_w) + ",height=" + std::to_string(out_h) +
                             " ! appsink name=out sync=false";
  GError *err = nullptr;
  GstElement *p = gst_parse_launch(launch.c_str(), &err);
  EXPECT_EQ(err, nullptr) << launch << ": " << (err ? err->message : "");
  if (!p)
    return {};
  gst_object_ref_sink(p);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "out");
  gst_element_set_state(p, GST_STATE_PLAYING);
  std::vector<guint8> packed;
  for (;;) {
    GstSample *sample = nullptr;
    // NULL at EOS, or after 10 s without a frame (a failed pipeline posts its error and sends no EOS).
    g_signal_emit_by_name(sink, "try-pull-sample", static_cast<GstClockTime>(10 * GST_SECOND), &sample);
    if (!sample)
      break;
    GstVideoInfo info;
    EXPECT_TRUE(gst_video_info_from_caps(&info, gst_sample_get_caps(sample)));
    GstVideoFrame frame;
    EXPECT_TRUE(gst_video_frame_map(&frame, &info, gst_sample_get_buffer(sample), GST_MAP_READ));
    for (guint c = 0; c < 3; c++) {
      const auto *data = static_cast<const guint8 *>(GST_VIDEO_FRAME_COMP_DATA(&frame, c));
      const int stride = GST_VIDEO_FRAME_COMP_STRIDE(&frame, c);
      for (int y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&frame, c); y++)
        packed.insert(packed.end(), data + y * stride, data + y * stride + GST_VIDEO_FRAME_COMP_WIDTH(&frame, c));
    }
    gst_video_frame_unmap(&frame);
    gst_sample_unref(sample);
  }
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  EXPECT_EQ(m, nullptr) << "the pipeline failed";
  if (m)
    gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(p);
  return packed;
}

TEST(SluiceScaleAgainstFfmpeg, EveryMethodGivesFfmpegsBytes) {
  if (!test::have_program("ffmpeg"))
    GTEST_SKIP() << "ffmpeg is not installed (tools/setup installs it)";
  TempDir tmp;
  const std::string src = tmp.file("src.yuv");
  // 6 frames of a busy test picture, 1280x720: 1.5x down to 854x480 (an odd chroma width, rows not a multiple of
  // 16) and 2x down to 640x360, as a ladder's rungs are.
  auto made = test::run_command({"ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                                 "testsrc2=s=1280x720:r=30:d=0.2,format=yuv420p", "-f", "rawvideo", "-y", src});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  struct Case {
    const char *method, *sws;
  };
  const Case cases[] = {{"lanczos", "lanczos"},
                        {"4-tap", "bicubic"},
                        {"bilinear2", "bilinear"},
                        {"bilinear", "fast_bilinear"},
                        {"nearest-neighbour", "neighbor"},
                        {"spline", "spline"}};
  for (auto [w, h] : {std::pair{854, 480}, std::pair{640, 360}}) {
    for (const Case &c : cases) {
      SCOPED_TRACE(std::string(c.method) + " to " + std::to_string(w) + "x" + std::to_string(h));
      const std::string out = tmp.file("ffmpeg.yuv");
      auto r = test::run_command({"ffmpeg", "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s",
                                  "1280x720", "-i", src, "-vf",
                                  "scale=" + std::to_string(w) + ":" + std::to_string(h) + ":flags=" + c.sws, "-f",
                                  "rawvideo", "-y", out});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const std::vector<guint8> expected = read_bytes(out);
      const size_t frame = static_cast<size_t>(w) * h + 2 * static_cast<size_t>((w + 1) / 2) * ((h + 1) / 2);
      ASSERT_EQ(expected.size(), 6 * frame);
      const std::vector<guint8> got = scale_with_sluicescale(src, 1280, 720, w, h, c.method);
      ASSERT_EQ(got.size(), expected.size());
      size_t differ = 0;
      for (size_t i = 0; i < got.size(); i++)
        differ += got[i] != expected[i];
      EXPECT_EQ(differ, 0u) << "samples that differ from ffmpeg's";
    }
  }
}

} // namespace
