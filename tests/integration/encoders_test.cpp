// SPDX-License-Identifier: LGPL-2.1-or-later
// Encoder selection on this machine: runtime checks, `auto` fallback, and errors that list what can run.
#include "core/error.h"
#include "core/fs.h"
#include "media.h"
#include "pipeline/encoders.h"

#include <gtest/gtest.h>

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
               "fragment": "x264enc bitrate={bitrate} ! video/x-h264,profile=high-4:4:4,width=7", )" + presets + R"(},
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
