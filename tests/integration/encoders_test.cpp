// SPDX-License-Identifier: LGPL-2.1-or-later
// Encoder selection on this machine: runtime checks, `auto` fallback, and errors that list what can run.
#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "media.h"
#include "pipeline/encoders.h"

#include <glib/gstdio.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

using namespace sluice;

class Encoders : public ::testing::Test {
protected:
  void SetUp() override { test::init_gst(); }
  test::TempDir tmp;
};

TEST_F(Encoders, SoftwareEncodersRun) {
  auto t = pipeline::EncoderTable::load_default();
  auto x = t.check("x264");
  EXPECT_TRUE(x.exists);
  EXPECT_TRUE(x.runs) << x.reason;
  EXPECT_EQ(t.resolve("x264"), "x264");
}

TEST_F(Encoders, AutoFallsBackToWhatRuns) {
  auto t = pipeline::EncoderTable::load_default();
  std::string picked = t.resolve("auto");
  EXPECT_TRUE(t.check(picked).runs);
  // Everything before it in the order cannot run here.
  for (const auto &name : t.order()) {
    if (name == picked)
      break;
    EXPECT_FALSE(t.check(name).runs) << name;
  }
  // A configured order is honoured.
  EXPECT_EQ(t.resolve("auto", {"nvenc", "x264"}), t.check("nvenc").runs ? "nvenc" : "x264");
}

TEST_F(Encoders, MissingHardwareEncoderListsTheRunnableOnes) {
  auto t = pipeline::EncoderTable::load_default();
  for (const char *hw : {"nvenc", "vaapi", "va"}) {
    if (t.check(hw).runs)
      continue; // this machine has that hardware
    try {
      t.resolve(hw);
      FAIL() << hw;
    } catch (const Error &e) {
      EXPECT_EQ(e.code(), ErrorCode::Unavailable);
      EXPECT_NE(std::string(e.what()).find("x264"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(hw), std::string::npos) << e.what();
    }
  }
}

TEST_F(Encoders, AnElementThatExistsButCannotStartIsSkipped) {
  // Like a hardware encoder installed without its hardware: the element exists, encoding fails.
  const std::string path = tmp.file("encoders.json");
  std::string presets = R"("presets": {"ultrafast": "ultrafast", "superfast": "superfast", "veryfast": "veryfast",
      "faster": "faster", "fast": "fast", "medium": "medium", "slow": "slow", "slower": "slower", "veryslow": "veryslow"})";
  fs::write_atomic(path, R"({"order": ["broken", "x264"], "encoders": {
    "broken": {"element": "x264enc", "hardware": true,
               "fragment": "x264enc bitrate={bitrate} ! video/x-h264,profile=high-4:4:4,width=7", )" +
                             presets + R"(},
    "x264": {"element": "x264enc", "fragment": "x264enc bitrate={bitrate} key-int-max={gop} speed-preset={preset}", )" +
                             presets + "}}}");
  auto t = pipeline::EncoderTable::load(path);
  auto st = t.check("broken");
  EXPECT_TRUE(st.exists);
  EXPECT_FALSE(st.runs);
  EXPECT_FALSE(st.reason.empty());
  EXPECT_EQ(t.resolve("auto"), "x264");
  EXPECT_THROW(t.resolve("broken"), Error);
}

namespace {

// Bytes x264 makes of `frames` frames of videotestsrc's `pattern` (320x240, 30 fps) with the shipped fragment.
std::int64_t encoded_bytes(const pipeline::EncoderTable &t, const pipeline::EncoderSettings &s, const char *pattern,
                           int frames, const std::string &out) {
  const std::string launch = std::string("videotestsrc pattern=") + pattern + " num-buffers=" + std::to_string(frames) +
                             " ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! " +
                             t.render(*t.find("x264"), s) + " ! h264parse ! filesink location=\"" + out + "\"";
  GError *err = nullptr;
  GstElement *p = gst_parse_launch(launch.c_str(), &err);
  EXPECT_NE(p, nullptr) << (err ? err->message : "") << " " << launch;
  g_clear_error(&err);
  if (!p)
    return -1;
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  EXPECT_NE(m, nullptr);
  if (m) {
    EXPECT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_EOS) << launch;
    gst_message_unref(m);
  }
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  GStatBuf st;
  return g_stat(out.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_size) : -1;
}

} // namespace

TEST_F(Encoders, CappedCrfTakesFewerBitsForSimplePicturesAndNeverMoreThanTheCap) {
  auto t = pipeline::EncoderTable::load_default();
  EXPECT_EQ(t.resolve("auto", {}, "capped-crf"), "x264");
  Error e = test::expect_error([&] { t.resolve("openh264", {}, "capped-crf"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_NE(std::string(e.what()).find("x264"), std::string::npos) << e.what();

  // 4 s at 30 fps, a keyframe every second, 1000 kbit/s (maxrate 1070, VBV 1500 kbit; x264 caps at the bitrate).
  pipeline::EncoderSettings cbr{1000, 1070, 1500, 30, "veryfast", 1};
  pipeline::EncoderSettings crf = cbr;
  crf.rate_control = "capped-crf";
  crf.crf = 21;
  // A still picture: cbr refines it with every frame it can; constant quality stops once it looks right.
  const std::int64_t still_cbr = encoded_bytes(t, cbr, "pinwheel", 120, tmp.file("still-cbr.h264"));
  const std::int64_t still_crf = encoded_bytes(t, crf, "pinwheel", 120, tmp.file("still-crf.h264"));
  EXPECT_GT(still_crf, 0);
  EXPECT_LT(still_crf * 2, still_cbr) << "capped-crf " << still_crf << " bytes, cbr " << still_cbr;
  // Noise at the best quality: the cap holds (crf 1 alone would take a multiple of it).
  crf.crf = 1;
  const std::int64_t snow_crf = encoded_bytes(t, crf, "snow", 120, tmp.file("snow-crf.h264"));
  const std::int64_t cap_bytes = 1000 * 1000 / 8 * 4 + 1500 * 1000 / 8; // 4 s at the cap + one full VBV
  EXPECT_GT(snow_crf, 0);
  EXPECT_LE(snow_crf, cap_bytes) << "capped-crf of noise: " << snow_crf << " bytes";
}
