// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of media::probe_from_json: a stored probe reads back into the ProbeResult it was written from.

#include "core/error.h"
#include "core/json.h"
#include "media/probe.h"
#include "media/probe_json.h"

#include <gtest/gtest.h>

#include "check.h"

#include <string>

namespace {

using namespace sluice;
using sluice::test::contains;
using sluice::test::expect_error;

media::ProbeResult phone_video() {
  media::ProbeResult r;
  r.path = "/data/uploads/upload-1234.tmp";
  r.container = "Quicktime";
  r.duration_ns = 12'345'678'901;
  r.size = 5'000'000'123;
  r.video_streams = 1;
  r.audio_streams = 2;
  r.subtitle_streams = 1;
  media::VideoInfo v;
  v.codec = "H.264 (High Profile)";
  v.caps = "video/x-h264";
  v.width = 1920;
  v.height = 1080;
  v.par_n = 1;
  v.par_d = 1;
  v.display_width = 1080; // rotated
  v.display_height = 1920;
  v.fps_n = 30000;
  v.fps_d = 1001;
  v.fps = 30000.0 / 1001.0;
  v.bitrate = 17'000'001;
  v.rotation = 90;
  v.interlaced = true;
  r.video = v;
  media::AudioInfo a;
  a.codec = "MPEG-4 AAC";
  a.caps = "audio/mpeg";
  a.channels = 6;
  a.sample_rate = 44100;
  a.bitrate = 256'000;
  r.audio = a;
  return r;
}

std::string to_json(const media::ProbeResult &r) {
  json::Node n(media::probe_to_json(r));
  return json::to_string(n.get(), false);
}

void expect_same(const media::ProbeResult &a, const media::ProbeResult &b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.container, b.container);
  EXPECT_EQ(a.duration_ns, b.duration_ns);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.video_streams, b.video_streams);
  EXPECT_EQ(a.audio_streams, b.audio_streams);
  EXPECT_EQ(a.subtitle_streams, b.subtitle_streams);
  ASSERT_EQ(a.video.has_value(), b.video.has_value());
  if (a.video) {
    const auto &x = *a.video, &y = *b.video;
    EXPECT_EQ(x.codec, y.codec);
    EXPECT_EQ(x.caps, y.caps);
    EXPECT_EQ(x.width, y.width);
    EXPECT_EQ(x.height, y.height);
    EXPECT_EQ(x.par_n, y.par_n);
    EXPECT_EQ(x.par_d, y.par_d);
    EXPECT_EQ(x.display_width, y.display_width);
    EXPECT_EQ(x.display_height, y.display_height);
    EXPECT_EQ(x.fps_n, y.fps_n);
    EXPECT_EQ(x.fps_d, y.fps_d);
    EXPECT_EQ(x.fps, y.fps); // exactly: the JSON keeps every digit
    EXPECT_EQ(x.bitrate, y.bitrate);
    EXPECT_EQ(x.rotation, y.rotation);
    EXPECT_EQ(x.interlaced, y.interlaced);
  }
  ASSERT_EQ(a.audio.has_value(), b.audio.has_value());
  if (a.audio) {
    EXPECT_EQ(a.audio->codec, b.audio->codec);
    EXPECT_EQ(a.audio->caps, b.audio->caps);
    EXPECT_EQ(a.audio->channels, b.audio->channels);
    EXPECT_EQ(a.audio->sample_rate, b.audio->sample_rate);
    EXPECT_EQ(a.audio->bitrate, b.audio->bitrate);
  }
}

TEST(ProbeJson, RoundTripsEveryMember) {
  media::ProbeResult r = phone_video();
  std::string text = to_json(r);
  media::ProbeResult back = media::probe_from_json(text);
  expect_same(r, back);
  // ... and writes the same document again.
  EXPECT_EQ(to_json(back), text);
}

TEST(ProbeJson, RoundTripsWhatAFileMayLack) {
  // Audio only, of unknown duration, in no container.
  media::ProbeResult r;
  r.path = "/x/song.aac";
  r.size = 1;
  r.audio_streams = 1;
  r.audio = media::AudioInfo{"MPEG-4 AAC", "audio/mpeg", 2, 48000, 0};
  std::string text = to_json(r);
  EXPECT_TRUE(contains(text, "\"video\":null")) << text;
  EXPECT_TRUE(contains(text, "\"duration\":null")) << text;
  expect_same(r, media::probe_from_json(text));
  // Video only, anamorphic, at a whole frame rate (the JSON writes 25.0 as 25).
  media::ProbeResult v;
  v.path = "/x/dv.avi";
  v.container = "AVI";
  v.duration_ns = 0;
  v.size = 42;
  v.video_streams = 1;
  media::VideoInfo vi;
  vi.width = 720;
  vi.height = 576;
  vi.par_n = 16;
  vi.par_d = 15;
  vi.display_width = 768;
  vi.display_height = 576;
  vi.fps_n = 25;
  vi.fps = 25.0;
  v.video = vi;
  expect_same(v, media::probe_from_json(to_json(v)));
}

TEST(ProbeJson, RefusesWhatProbeToJsonDoesNotWrite) {
  std::string good = to_json(phone_video());
  auto without = [&](const std::string &member) {
    std::string t = good;
    auto at = t.find("\"" + member + "\":");
    EXPECT_NE(at, std::string::npos) << member;
    t.replace(at + 1, member.size(), "x" + member);
    return t;
  };
  for (const char *m : {"path", "duration_ns", "size", "video_streams", "video", "audio", "codec", "framerate",
                        "pixel_aspect_ratio", "interlaced", "sample_rate"}) {
    Error e = expect_error([&] { media::probe_from_json(without(m)); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << m;
    EXPECT_TRUE(contains(e.what(), m)) << e.what();
  }
  auto replaced = [&](const std::string &from, const std::string &to) {
    std::string t = good;
    auto at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    t.replace(at, from.size(), to);
    return t;
  };
  for (const auto &[from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"size\":5000000123", "\"size\":\"big\""},
           {"\"width\":1920", "\"width\":1920.5"},
           {"\"width\":1920", "\"width\":99999999999"},
           {"\"framerate\":\"30000/1001\"", "\"framerate\":\"30000:1001\""},
           {"\"framerate\":\"30000/1001\"", "\"framerate\":\"30000/1001x\""},
           {"\"interlaced\":true", "\"interlaced\":1"},
           {"\"audio\":{", "\"audio\":7,\"was_audio\":{"}}) {
    std::string bad = replaced(from, to);
    EXPECT_EQ(expect_error([&] { media::probe_from_json(bad); }).code(), ErrorCode::Invalid) << bad;
  }
  for (const char *text : {"", "[]", "null", "{\"path\": 1}", "{not json"})
    EXPECT_EQ(expect_error([&] { media::probe_from_json(std::string(text)); }).code(), ErrorCode::Invalid) << text;
}

} // namespace
