// SPDX-License-Identifier: LGPL-2.1-or-later
// Probing generated files of many kinds, and refusing what is not media with a clear reason.
#include "core/error.h"
#include "core/fs.h"
#include "media.h"
#include "media/probe.h"

#include <gtest/gtest.h>

#include <chrono>

using namespace sluice;
using sluice::test::ClipSpec;

class Probe : public ::testing::Test {
protected:
  void SetUp() override { test::init_gst(); }
  test::TempDir tmp;
};

TEST_F(Probe, H264AacMp4) {
  ClipSpec c{640, 360, 30, 1, 2.0, 2, true, "mp4"};
  ASSERT_TRUE(test::make_clip(tmp.file("a.mp4"), c));
  auto r = media::probe(tmp.file("a.mp4"));
  EXPECT_NEAR(r.duration_ns / 1e9, 2.0, 0.05);
  ASSERT_TRUE(r.video);
  EXPECT_EQ(r.video->caps, "video/x-h264");
  EXPECT_EQ(r.video->width, 640);
  EXPECT_EQ(r.video->height, 360);
  EXPECT_EQ(r.video->display_width, 640);
  EXPECT_NEAR(r.video->fps, 30.0, 0.01);
  ASSERT_TRUE(r.audio);
  EXPECT_EQ(r.audio->caps, "audio/mpeg");
  EXPECT_EQ(r.audio->channels, 2);
  EXPECT_EQ(r.audio->sample_rate, 48000);
  EXPECT_EQ(r.video_streams, 1);
  EXPECT_EQ(r.audio_streams, 1);
  EXPECT_FALSE(r.container.empty());
}

TEST_F(Probe, Vp9OpusWebmOddSize) {
  ClipSpec c{321, 241, 30, 1, 1.0, 2, true, "webm", "vp9", "opus"};
  ASSERT_TRUE(test::make_clip(tmp.file("a.webm"), c));
  auto r = media::probe(tmp.file("a.webm"));
  ASSERT_TRUE(r.video);
  EXPECT_EQ(r.video->caps, "video/x-vp9");
  EXPECT_EQ(r.video->width, 321);
  EXPECT_EQ(r.video->height, 241);
  ASSERT_TRUE(r.audio);
  EXPECT_EQ(r.audio->caps, "audio/x-opus");
}

TEST_F(Probe, VideoOnlyAndAudioOnly) {
  ASSERT_TRUE(test::make_clip(tmp.file("v.mkv"), ClipSpec{320, 240, 60, 1, 1.0, 0, true, "mkv"}));
  auto v = media::probe(tmp.file("v.mkv"));
  EXPECT_TRUE(v.video);
  EXPECT_FALSE(v.audio);
  EXPECT_NEAR(v.video->fps, 60.0, 0.01);
  ClipSpec a;
  a.video = false;
  a.audio_channels = 6;
  a.container = "mkv";
  ASSERT_TRUE(test::make_clip(tmp.file("a.mkv"), a));
  auto r = media::probe(tmp.file("a.mkv"));
  EXPECT_FALSE(r.video);
  ASSERT_TRUE(r.audio);
  EXPECT_EQ(r.audio->channels, 6);
}

TEST_F(Probe, AnamorphicDisplaySize) {
  ASSERT_TRUE(test::make_clip(tmp.file("a.mkv"), ClipSpec{720, 576, 25, 1, 0.5, 0, true, "mkv", "h264", "aac", "16/15"}));
  auto r = media::probe(tmp.file("a.mkv"));
  ASSERT_TRUE(r.video);
  EXPECT_EQ(r.video->par_n * 15, r.video->par_d * 16);
  EXPECT_EQ(r.video->display_width, 768);
  EXPECT_EQ(r.video->display_height, 576);
}

TEST_F(Probe, JsonOutput) {
  ASSERT_TRUE(test::make_clip(tmp.file("a.mp4"), ClipSpec{320, 240, 30, 1, 0.5, 1, true, "mp4"}));
  JsonNode *n = media::probe_to_json(media::probe(tmp.file("a.mp4")));
  JsonObject *o = json_node_get_object(n);
  EXPECT_EQ(json_object_get_int_member(json_object_get_object_member(o, "video"), "width"), 320);
  EXPECT_EQ(json_object_get_int_member(json_object_get_object_member(o, "audio"), "channels"), 1);
  EXPECT_GT(json_object_get_double_member(o, "duration"), 0.4);
  json_node_unref(n);
}

TEST_F(Probe, NotMediaGivesAClearErrorQuickly) {
  fs::write_atomic(tmp.file("empty.mp4"), "");
  fs::write_atomic(tmp.file("text.mp4"), "hello, this is text\n");
  std::string noise(64 * 1024, '\0');
  for (size_t i = 0; i < noise.size(); i++)
    noise[i] = static_cast<char>((i * 2654435761u) >> 13);
  fs::write_atomic(tmp.file("noise.mp4"), noise);
  for (const char *name : {"empty.mp4", "text.mp4", "noise.mp4"}) {
    SCOPED_TRACE(name);
    auto t0 = std::chrono::steady_clock::now();
    try {
      media::probe(tmp.file(name));
      FAIL() << "expected an error";
    } catch (const Error &e) {
      EXPECT_EQ(e.code(), ErrorCode::NotMedia) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(25));
  }
  try {
    media::probe(tmp.file("missing.mp4"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
  try {
    media::probe(tmp.path());
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotMedia);
  }
}
