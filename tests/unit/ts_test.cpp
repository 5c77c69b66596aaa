// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the MPEG-TS cutter of live HLS, on real mpegtsmux output made here by a tiny GStreamer pipeline.

#include "core/error.h"
#include "media/ts.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include "media.h"

#include <cstdint>
#include <string>
#include <vector>

namespace {

using sluice::media::kTsPacket;
using sluice::media::TsCutter;
using sluice::media::TsSegment;

// 25 fps, a keyframe every `gop` frames, `frames` frames, with or without AAC audio: mpegtsmux's whole output.
std::string mux(int frames, int gop, bool audio) {
  sluice::test::init_gst();
  std::string desc = "videotestsrc num-buffers=" + std::to_string(frames) +
                     " ! video/x-raw,width=160,height=90,framerate=25/1 ! x264enc key-int-max=" + std::to_string(gop) +
                     " tune=zerolatency speed-preset=ultrafast option-string=scenecut=0 ! h264parse ! mpegtsmux name=m "
                     "! appsink name=out sync=false";
  if (audio)
    desc += " audiotestsrc num-buffers=" + std::to_string(frames * 48000 / 25 / 1024) +
            " ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! m.";
  GError *err = nullptr;
  GstElement *p = gst_parse_launch(desc.c_str(), &err);
  EXPECT_TRUE(p && !err) << (err ? err->message : "");
  g_clear_error(&err);
  if (!p)
    return "";
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "out");
  gst_element_set_state(p, GST_STATE_PLAYING);
  std::string bytes;
  while (GstSample *s = gst_app_sink_pull_sample(GST_APP_SINK(sink))) {
    GstMapInfo map;
    GstBuffer *b = gst_sample_get_buffer(s);
    if (gst_buffer_map(b, &map, GST_MAP_READ)) {
      bytes.append(reinterpret_cast<const char *>(map.data), map.size);
      gst_buffer_unmap(b, &map);
    }
    gst_sample_unref(s);
  }
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(p);
  return bytes;
}

int pid(const std::string &s, std::size_t packet) {
  const auto *p = reinterpret_cast<const std::uint8_t *>(s.data()) + packet * kTsPacket;
  return ((p[1] & 0x1f) << 8) | p[2];
}

std::vector<TsSegment> cut(const std::string &bytes, std::size_t chunk) {
  TsCutter c;
  std::vector<TsSegment> out;
  for (std::size_t at = 0; at < bytes.size(); at += chunk)
    for (auto &s : c.push(bytes.data() + at, std::min(chunk, bytes.size() - at)))
      out.push_back(std::move(s));
  for (auto &s : c.finish())
    out.push_back(std::move(s));
  return out;
}

// What a demuxer makes of a segment alone: the number of H.264 frames tsdemux + h264parse + avdec_h264 decode.
int decoded_frames(const std::string &segment) {
  GError *err = nullptr;
  GstElement *p = gst_parse_launch("appsrc name=in caps=video/mpegts,systemstream=true ! tsdemux ! h264parse ! "
                                   "avdec_h264 ! appsink name=out sync=false",
                                   &err);
  EXPECT_TRUE(p && !err) << (err ? err->message : "");
  g_clear_error(&err);
  if (!p)
    return -1;
  GstElement *in = gst_bin_get_by_name(GST_BIN(p), "in");
  GstElement *out = gst_bin_get_by_name(GST_BIN(p), "out");
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBuffer *b = gst_buffer_new_memdup(segment.data(), segment.size());
  gst_app_src_push_buffer(GST_APP_SRC(in), b);
  gst_app_src_end_of_stream(GST_APP_SRC(in));
  int frames = 0;
  while (GstSample *s = gst_app_sink_pull_sample(GST_APP_SINK(out))) {
    frames++;
    gst_sample_unref(s);
  }
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  EXPECT_EQ(error, nullptr) << "a segment does not decode on its own";
  if (error)
    gst_message_unref(error);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(in);
  gst_object_unref(out);
  gst_object_unref(p);
  return frames;
}

TEST(TsCutter, CutsAtEveryKeyframeWhateverTheChunks) {
  // 5 GOPs of 10 frames (0.4 s at 25 fps) and a last one of 3.
  const std::string ts = mux(53, 10, true);
  ASSERT_FALSE(ts.empty());
  ASSERT_EQ(ts.size() % kTsPacket, 0u);
  const auto whole = cut(ts, ts.size());
  ASSERT_EQ(whole.size(), 6u);
  for (std::size_t chunk : {std::size_t{1}, kTsPacket, std::size_t{1000}, std::size_t{4096}}) {
    SCOPED_TRACE(chunk);
    const auto segs = cut(ts, chunk);
    ASSERT_EQ(segs.size(), whole.size());
    for (std::size_t i = 0; i < segs.size(); i++) {
      EXPECT_EQ(segs[i].bytes, whole[i].bytes) << i;
      EXPECT_EQ(segs[i].first_pts, whole[i].first_pts) << i;
      EXPECT_EQ(segs[i].next_pts, whole[i].next_pts) << i;
    }
  }
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < whole.size(); i++) {
    const TsSegment &s = whole[i];
    SCOPED_TRACE(i);
    EXPECT_TRUE(s.keyframe);
    ASSERT_GT(s.video_pid, 0);
    ASSERT_EQ(s.bytes.size() % kTsPacket, 0u);
    // It begins with the PAT and the PMT, then its keyframe.
    EXPECT_EQ(pid(s.bytes, 0), 0);
    EXPECT_NE(pid(s.bytes, 1), 0);
    EXPECT_NE(pid(s.bytes, 1), s.video_pid);
    // 10 frames at 25 fps = 0.4 s = 36000 ticks of 90 kHz apart.
    if (i + 1 < whole.size()) {
      EXPECT_EQ(s.next_pts, whole[i + 1].first_pts);
      EXPECT_NEAR(static_cast<double>(s.next_pts - s.first_pts), 36000.0, 2.0);
      EXPECT_NEAR(static_cast<double>(s.last_pts - s.first_pts), 9 * 3600.0, 2.0);
    } else {
      EXPECT_EQ(s.next_pts, -1);
      EXPECT_NEAR(static_cast<double>(s.last_pts - s.first_pts), 2 * 3600.0, 2.0);
    }
    bytes += s.bytes.size();
  }
  // Nothing lost: every packet is in a segment; only tables were added.
  EXPECT_GE(bytes, ts.size());
  EXPECT_LE(bytes, ts.size() + whole.size() * 2 * kTsPacket);
  // Every segment decodes on its own, all its frames.
  for (std::size_t i = 0; i < whole.size(); i++)
    EXPECT_EQ(decoded_frames(whole[i].bytes), i + 1 < whole.size() ? 10 : 3) << i;
}

// With a minimum duration, a keyframe too close to the segment's start stays inside it (an encoder's extra keyframe):
// GOPs of 0.4 s with 0.6 s at least make segments of 2 GOPs, each still starting with its tables and a keyframe.
TEST(TsCutter, KeyframesInsideTheMinimumDurationDoNotCut) {
  const std::string ts = mux(53, 10, true);
  TsCutter c;
  c.set_min_duration(54000); // 0.6 s
  std::vector<TsSegment> segs;
  for (std::size_t at = 0; at < ts.size(); at += 4096)
    for (auto &s : c.push(ts.data() + at, std::min<std::size_t>(4096, ts.size() - at)))
      segs.push_back(std::move(s));
  for (auto &s : c.finish())
    segs.push_back(std::move(s));
  ASSERT_EQ(segs.size(), 3u); // 20 + 20 + 13 frames
  for (std::size_t i = 0; i < segs.size(); i++) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(segs[i].keyframe);
    EXPECT_EQ(pid(segs[i].bytes, 0), 0);
    if (i + 1 < segs.size()) {
      EXPECT_NEAR(static_cast<double>(segs[i].next_pts - segs[i].first_pts), 72000.0, 2.0);
    }
    EXPECT_EQ(decoded_frames(segs[i].bytes), i + 1 < segs.size() ? 20 : 13);
  }
}

TEST(TsCutter, VideoOnlyAndTheEnd) {
  const std::string ts = mux(20, 10, false);
  const auto segs = cut(ts, 1000);
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(decoded_frames(segs[1].bytes), 10);
  // Bytes without video make no segment; what is left of a packet at the end is dropped.
  TsCutter c;
  EXPECT_TRUE(c.push(ts.data(), 2 * kTsPacket + 5).empty()); // PAT, PMT and a bit
  EXPECT_TRUE(c.finish().empty());
}

TEST(TsCutter, RefusesBytesThatAreNotTransportStream) {
  TsCutter c;
  const std::string junk(3 * kTsPacket, 'x');
  EXPECT_THROW(c.push(junk.data(), junk.size()), sluice::Error);
}

} // namespace
