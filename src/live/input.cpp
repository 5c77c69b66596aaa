// SPDX-License-Identifier: LGPL-2.1-or-later
// A live stream's input as the ingest threads touch it: the publisher's claim, the caps, the figures, and the
// samples fed into the running ladder's appsrcs.
#include "live/engine_internal.h"

#include <gst/app/gstappsrc.h>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

// Audio that has not begun this long after the video is not waited for: the ladder is planned without it.
constexpr GstClockTime kAudioWait = 2 * GST_SECOND;

} // namespace

void Feed::clear() {
  for (GstElement **e : {&pipeline, &video, &audio})
    if (*e) {
      gst_object_unref(*e);
      *e = nullptr;
    }
  gst_caps_replace(&vcaps, nullptr);
  gst_caps_replace(&acaps, nullptr);
  claim = 0;
  started = false;
  offset = 0;
}

Input::Input(std::weak_ptr<Core> c, std::string i, std::string h)
    : core(std::move(c)), id(std::move(i)), key_hash(std::move(h)) {}

Input::~Input() {
  feed.clear();
  gst_caps_replace(&vcaps, nullptr);
  gst_caps_replace(&acaps, nullptr);
  if (client)
    g_object_unref(client);
  if (factory)
    g_object_unref(factory);
}

std::uint64_t Input::take_locked(Via v) {
  via = v;
  claim++;
  media = nullptr;
  streams_known = false;
  expects_audio = false;
  gst_caps_replace(&vcaps, nullptr);
  gst_caps_replace(&acaps, nullptr);
  first_video = GST_CLOCK_TIME_NONE;
  last_video = GST_CLOCK_TIME_NONE;
  ready_posted = false;
  last_data_us = g_get_monotonic_time();
  taken_us = last_data_us;
  return claim;
}

void Input::release(std::uint64_t c, const std::string &why) {
  GstRTSPClient *old = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (via == Via::None || claim != c)
      return;
    via = Via::None;
    old = client;
    client = nullptr;
    media = nullptr;
    ready_posted = false;
    end_viewers_locked();
    // The feed stays until the main loop drains the ladder; samples of this claim are refused from now on.
  }
  if (old)
    g_object_unref(old);
  GST_INFO("stream %s: publisher %" G_GUINT64_FORMAT " gone (%s)", id.c_str(), c, why.c_str());
  if (auto k = core.lock())
    k->post_left(id, c, why);
}

void Input::touch(std::uint64_t c) {
  std::lock_guard<std::mutex> lock(mutex);
  if (via != Via::None && c == claim)
    last_data_us = g_get_monotonic_time();
}

void Input::check_ready_locked() {
  if (ready_posted || via == Via::None || !vcaps || !streams_known)
    return;
  if (expects_audio && !acaps) {
    // Wait a little for the audio's first sample, not forever.
    if (!GST_CLOCK_TIME_IS_VALID(first_video) || !GST_CLOCK_TIME_IS_VALID(last_video) ||
        last_video < first_video + kAudioWait)
      return;
  }
  ready_posted = true;
  if (auto k = core.lock())
    k->post_ready(id, claim);
}

void Input::on_sample(std::uint64_t c, GstSample *sample, bool video) {
  GstBuffer *buf = gst_sample_get_buffer(sample);
  if (!buf)
    return;
  GstCaps *caps = gst_sample_get_caps(sample);
  const GstSegment *seg = gst_sample_get_segment(sample);
  auto running = [seg](GstClockTime t) {
    if (!GST_CLOCK_TIME_IS_VALID(t) || !seg || seg->format != GST_FORMAT_TIME)
      return GST_CLOCK_TIME_NONE;
    return gst_segment_to_running_time(seg, GST_FORMAT_TIME, t);
  };
  const GstClockTime pts = running(GST_BUFFER_PTS(buf));
  const GstClockTime dts = running(GST_BUFFER_DTS(buf));

  std::lock_guard<std::mutex> lock(mutex);
  if (via == Via::None || c != claim)
    return;
  bytes += gst_buffer_get_size(buf);
  last_data_us = g_get_monotonic_time();
  if (video) {
    frames++;
    if (caps && (!vcaps || !gst_caps_is_equal(vcaps, caps)))
      gst_caps_replace(&vcaps, caps);
    const GstClockTime t = GST_CLOCK_TIME_IS_VALID(dts) ? dts : pts;
    if (GST_CLOCK_TIME_IS_VALID(t)) {
      if (!GST_CLOCK_TIME_IS_VALID(first_video))
        first_video = t;
      last_video = t;
    }
  } else if (caps && (!acaps || !gst_caps_is_equal(acaps, caps))) {
    gst_caps_replace(&acaps, caps);
  }
  check_ready_locked();
  feed_viewers_locked(buf, caps, pts, dts, video);

  Feed &f = feed;
  GstElement *src = video ? f.video : f.audio;
  if (f.claim != c || !f.pipeline || !src)
    return;
  if (!f.started) {
    // The ladder begins with a keyframe; its timeline starts where its clock is now.
    if (!video || GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT))
      return;
    GstClockTime first = GST_CLOCK_TIME_IS_VALID(dts) ? dts : pts;
    if (GST_CLOCK_TIME_IS_VALID(pts) && GST_CLOCK_TIME_IS_VALID(dts))
      first = std::min(pts, dts);
    if (!GST_CLOCK_TIME_IS_VALID(first))
      return;
    GstClockTime now = 0;
    if (GstClock *clock = gst_element_get_clock(f.pipeline)) {
      const GstClockTime abs = gst_clock_get_time(clock);
      const GstClockTime base = gst_element_get_base_time(f.pipeline);
      now = abs > base ? abs - base : 0;
      gst_object_unref(clock);
    }
    f.offset = static_cast<std::int64_t>(now) - static_cast<std::int64_t>(first);
    f.started = true;
  }
  auto moved = [&f](GstClockTime t) {
    if (!GST_CLOCK_TIME_IS_VALID(t))
      return GST_CLOCK_TIME_NONE;
    const std::int64_t v = static_cast<std::int64_t>(t) + f.offset;
    return v < 0 ? GST_CLOCK_TIME_NONE : static_cast<GstClockTime>(v);
  };
  const GstClockTime out_pts = moved(pts), out_dts = moved(dts);
  if (!GST_CLOCK_TIME_IS_VALID(out_pts) && !GST_CLOCK_TIME_IS_VALID(out_dts))
    return;
  if (!video && !GST_CLOCK_TIME_IS_VALID(out_pts))
    return; // audio from before the ladder's first keyframe
  GstCaps *&told = video ? f.vcaps : f.acaps;
  if (caps && (!told || !gst_caps_is_equal(told, caps))) {
    gst_caps_replace(&told, caps);
    gst_app_src_set_caps(GST_APP_SRC(src), caps);
  }
  GstBuffer *out = gst_buffer_copy(buf); // the memory is shared, not copied
  GST_BUFFER_PTS(out) = out_pts;
  GST_BUFFER_DTS(out) = out_dts;
  gst_app_src_push_buffer(GST_APP_SRC(src), out);
}

} // namespace sluice::live
