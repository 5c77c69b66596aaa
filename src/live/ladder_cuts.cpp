// SPDX-License-Identifier: LGPL-2.1-or-later
// A ladder's appsinks: each rung's muxer output cut into segments as it comes (live-hls: MPEG-TS, live-cmaf:
// fragmented MP4 into CMAF segments), written on the streaming threads and listed on the main loop at once.
#include "live/ladder.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "media/bmff.h"
#include "media/ts.h"
#include "pipeline/params.h"

#include <gst/app/gstappsink.h>

#include <atomic>
#include <cmath>
#include <deque>
#include <mutex>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

GstElement *appsink_after(GstElement *pipeline, const std::string &name) {
  GstElement *e = gst_bin_get_by_name(GST_BIN(pipeline), name.c_str());
  for (int hops = 0; e && hops < 8; hops++) {
    if (GST_IS_APP_SINK(e))
      return e;
    GstPad *src = gst_element_get_static_pad(e, "src");
    GstPad *peer = src ? gst_pad_get_peer(src) : nullptr;
    GstElement *next = peer ? gst_pad_get_parent_element(peer) : nullptr;
    if (peer)
      gst_object_unref(peer);
    if (src)
      gst_object_unref(src);
    gst_object_unref(e);
    e = next;
  }
  if (e)
    gst_object_unref(e);
  return nullptr;
}

std::string segment_name(const std::string &rendition, int session, int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%d-%05d.ts", session, index);
  return rendition + buf;
}

std::string cmaf_init_name(const std::string &track, int session) {
  return track + "/init-" + std::to_string(session) + ".mp4";
}

std::string cmaf_segment_name(const std::string &track, int session, int number) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "/%d-%05d.m4s", session, number);
  return track + buf;
}

// What the appsinks of a ladder share with the main loop: each track's cutter (CMAF, or MPEG-TS for live-hls), the
// files written, the segments ready to be listed (taken on the main loop by flush_cuts()).
struct Ladder::Cuts {
  struct Track {
    std::size_t index = 0;
    std::string name;
    media::Mp4Cutter cutter;
    std::unique_ptr<media::TsCutter> ts;    // live-hls: MPEG-TS, cut at the video's keyframes
    std::int64_t pts0 = -1;                 // MPEG-TS: the first video PTS (90 kHz)
    std::atomic<std::int64_t> first_rt{-1}; // running time (ns) of the first buffer into the muxer (MPEG-TS: video)
    std::string init;                       // this session's init segment, once written
    media::Mp4Track info;
    int next = 1;
    bool broken = false;
  };
  struct Sink {
    std::shared_ptr<Cuts> cuts;
    Track *track;
  };

  std::string dir;
  int session = 0;
  double frame_s = 1.0 / 30;             // the duration of a frame of the ladder's constant rate
  std::atomic<std::int64_t> wall0_us{0}; // the wall time of running time 0 (0: not known yet)
  std::vector<std::unique_ptr<Track>> tracks;
  std::function<void()> notify; // a segment is ready: flush_cuts() on the main loop
  std::mutex mutex;             // guards `ready`
  std::deque<std::pair<std::size_t, LiveSegment>> ready;

  // The wall time of running time 0, from the clock of the pipeline, once.
  void learn_wall0(GstElement *sink) {
    if (wall0_us.load() != 0)
      return;
    if (GstClock *clock = gst_element_get_clock(sink)) {
      const auto now = static_cast<std::int64_t>(gst_clock_get_time(clock));
      const auto base = static_cast<std::int64_t>(gst_element_get_base_time(sink));
      std::int64_t expected = 0;
      wall0_us.compare_exchange_strong(expected, g_get_real_time() - (now - base) / 1000);
      gst_object_unref(clock);
    }
  }

  void ready_segment(std::size_t index, LiveSegment seg) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ready.emplace_back(index, std::move(seg));
    }
    notify();
  }

  // A streaming thread: MPEG-TS segments of a rung, written and listed as soon as the next keyframe began.
  void take_ts(Track &t, GstElement *sink, std::vector<media::TsSegment> segments) {
    for (auto &s : segments) {
      if (s.first_pts < 0)
        continue;
      if (t.pts0 < 0)
        t.pts0 = s.first_pts;
      // Up to the next segment's first frame; the last one (at the end) up to its last frame's end.
      const std::int64_t end =
          s.next_pts >= 0 ? s.next_pts : s.last_pts + static_cast<std::int64_t>(std::llround(frame_s * 90000));
      LiveSegment seg;
      seg.number = t.next++;
      seg.uri = segment_name(t.name, session, seg.number);
      seg.duration = static_cast<double>(end - s.first_pts) / 90000;
      if (seg.duration <= 0)
        continue;
      learn_wall0(sink);
      // The wall time of its first frame: where the rung's first video buffer sat on the running time, moved on
      // by the PTS since.
      if (const std::int64_t w = wall0_us.load())
        seg.date_us = w + std::max<std::int64_t>(0, t.first_rt.load()) / 1000 +
                      static_cast<std::int64_t>(static_cast<double>(s.first_pts - t.pts0) * G_USEC_PER_SEC / 90000);
      seg.bytes = static_cast<std::int64_t>(s.bytes.size());
      seg.keyframe = s.keyframe;
      write_replace(fs::join(dir, seg.uri), s.bytes);
      ready_segment(t.index, std::move(seg));
    }
  }

  // A streaming thread: bytes of a track's muxer.
  void take(Track &t, GstElement *sink, const std::uint8_t *data, std::size_t size) {
    if (t.broken)
      return;
    if (t.ts) {
      take_ts(t, sink, t.ts->push(data, size));
      return;
    }
    for (auto &piece : t.cutter.push(data, size)) {
      if (piece.init) {
        t.info = t.cutter.track();
        t.init = cmaf_init_name(t.name, session);
        write_replace(fs::join(dir, t.init), piece.bytes);
        continue;
      }
      const std::uint32_t ts = t.info.timescale;
      if (t.init.empty() || !ts || !piece.fragment.duration)
        continue;
      // mp4mux starts every track's decode time at 0: moved to where the track began on the ladder's timeline,
      // so that the tracks of a session line up.
      const std::int64_t first = std::max<std::int64_t>(0, t.first_rt.load());
      std::uint64_t decode = piece.fragment.decode_time + static_cast<std::uint64_t>(std::llround(first / 1e9 * ts));
      try {
        media::set_decode_time(piece.bytes, piece.fragment, decode);
      } catch (const Error &e) {
        GST_WARNING("%s: %s", t.name.c_str(), e.what());
        decode = piece.fragment.decode_time;
      }
      learn_wall0(sink);
      LiveSegment seg;
      seg.number = t.next++;
      seg.uri = cmaf_segment_name(t.name, session, seg.number);
      seg.duration = static_cast<double>(piece.fragment.duration) / ts;
      if (const std::int64_t w = wall0_us.load())
        seg.date_us = w + static_cast<std::int64_t>(static_cast<double>(decode) * G_USEC_PER_SEC / ts);
      seg.map = t.init;
      seg.decode_time = decode;
      seg.ticks = piece.fragment.duration;
      seg.timescale = ts;
      seg.bytes = static_cast<std::int64_t>(piece.bytes.size());
      seg.keyframe = piece.fragment.starts_with_sync;
      seg.track = t.info;
      write_replace(fs::join(dir, seg.uri), piece.bytes);
      ready_segment(t.index, std::move(seg));
    }
  }

  static GstFlowReturn on_sample(GstAppSink *sink, gpointer data) {
    auto *s = static_cast<Sink *>(data);
    GstSample *sample = gst_app_sink_pull_sample(sink);
    if (!sample)
      return GST_FLOW_EOS;
    GstBuffer *buf = gst_sample_get_buffer(sample);
    GstMapInfo map;
    if (buf && gst_buffer_map(buf, &map, GST_MAP_READ)) {
      try { // a streaming thread: nothing crosses it
        s->cuts->take(*s->track, GST_ELEMENT(sink), map.data, map.size);
      } catch (const std::exception &e) {
        GST_WARNING("live track %s: %s", s->track->name.c_str(), e.what());
        s->track->broken = true;
      }
      gst_buffer_unmap(buf, &map);
    }
    gst_sample_unref(sample);
    return GST_FLOW_OK;
  }

  // The end of a rung's MPEG-TS: its last segment (mp4mux closes its last fragment itself).
  static void on_eos(GstAppSink *sink, gpointer data) {
    auto *s = static_cast<Sink *>(data);
    if (!s->track->ts || s->track->broken)
      return;
    try { // a streaming thread: nothing crosses it
      s->cuts->take_ts(*s->track, GST_ELEMENT(sink), s->track->ts->finish());
    } catch (const std::exception &e) {
      GST_WARNING("live track %s: %s", s->track->name.c_str(), e.what());
      s->track->broken = true;
    }
  }

  // Where the first buffer into a muxer's sink pad (MPEG-TS: its video pad) sits on the ladder's timeline.
  static GstPadProbeReturn on_first_buffer(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
    auto *t = static_cast<Track *>(data);
    if (t->ts) {
      GstCaps *caps = gst_pad_get_current_caps(pad);
      const bool video = caps && gst_caps_get_size(caps) > 0 &&
                         g_str_has_prefix(gst_structure_get_name(gst_caps_get_structure(caps, 0)), "video/");
      if (caps)
        gst_caps_unref(caps);
      if (!video)
        return GST_PAD_PROBE_REMOVE;
    }
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    GstClockTime ts = GST_BUFFER_DTS_OR_PTS(buf);
    GstEvent *ev = gst_pad_get_sticky_event(pad, GST_EVENT_SEGMENT, 0);
    if (ev && GST_CLOCK_TIME_IS_VALID(ts)) {
      const GstSegment *seg = nullptr;
      gst_event_parse_segment(ev, &seg);
      const guint64 rt = gst_segment_to_running_time(seg, GST_FORMAT_TIME, ts);
      if (GST_CLOCK_TIME_IS_VALID(rt)) {
        std::int64_t expected = -1;
        t->first_rt.compare_exchange_strong(expected, static_cast<std::int64_t>(rt));
      }
    }
    if (ev)
      gst_event_unref(ev);
    return GST_PAD_PROBE_REMOVE;
  }
};

void Ladder::watch_cuts() {
  cuts_ = std::make_shared<Cuts>();
  cuts_->dir = plan_.dir;
  cuts_->session = plan_.session;
  cuts_->frame_s = 1.0 / plan_.frame_rate();
  cuts_->notify = [alive = alive_, self = this] {
    post([alive, self] {
      if (*alive)
        self->flush_cuts();
    });
  };
  GstElement *p = pipeline_.get();
  for (std::size_t i = 0; i < plan_.tracks(); i++) {
    auto t = std::make_unique<Cuts::Track>();
    t->index = i;
    t->name = plan_.track_name(i);
    if (plan_.cmaf) {
      fs::make_dirs(fs::join(plan_.dir, t->name));
    } else {
      t->ts = std::make_unique<media::TsCutter>();
      t->next = 0; // NAME-SESSION-00000.ts first
    }
    const std::string sink = pipeline::sink_name(t->name);
    GstPtr<GstElement> mux(gst_bin_get_by_name(GST_BIN(p), sink.c_str()));
    GstPtr<GstElement> app(appsink_after(p, sink));
    if (!mux || !app)
      throw Error(ErrorCode::Pipeline, "the live ladder has no appsink after '" + sink + "'");
    g_autoptr(GstIterator) pads = gst_element_iterate_sink_pads(mux.get());
    g_auto(GValue) item = G_VALUE_INIT;
    while (gst_iterator_next(pads, &item) == GST_ITERATOR_OK) {
      gst_pad_add_probe(GST_PAD(g_value_get_object(&item)), GST_PAD_PROBE_TYPE_BUFFER, &Cuts::on_first_buffer, t.get(),
                        nullptr);
      g_value_reset(&item);
    }
    g_object_set(app.get(), "sync", FALSE, "async", FALSE, "max-buffers", 0u, "drop", FALSE, nullptr);
    GstAppSinkCallbacks cb = {};
    cb.new_sample = &Cuts::on_sample;
    cb.eos = &Cuts::on_eos;
    gst_app_sink_set_callbacks(GST_APP_SINK(app.get()), &cb, new Cuts::Sink{cuts_, t.get()},
                               [](gpointer d) { delete static_cast<Cuts::Sink *>(d); });
    cuts_->tracks.push_back(std::move(t));
  }
}

void Ladder::flush_cuts() {
  if (!cuts_)
    return;
  std::deque<std::pair<std::size_t, LiveSegment>> ready;
  {
    std::lock_guard<std::mutex> lock(cuts_->mutex);
    ready.swap(cuts_->ready);
  }
  for (auto &[i, seg] : ready)
    if (on_segment_)
      on_segment_(i, seg);
}

} // namespace sluice::live
