// SPDX-License-Identifier: LGPL-2.1-or-later
// The ladder pipeline of a live stream: planned from the input's caps, run, drained, stopped off the main loop.
#include "live/ladder.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "media/ladder.h"

#include <gio/gio.h>
#include <gst/app/gstappsrc.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

// How long a ladder may take to drain after EOS before it is stopped anyway.
constexpr guint kFinishTimeoutS = 5;

std::string error_text(GstMessage *msg) {
  g_autoptr(GError) err = nullptr;
  g_autofree gchar *debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  GST_WARNING("ladder error from %s: %s (%s)", GST_MESSAGE_SRC_NAME(msg), err ? err->message : "?", debug ? debug : "");
  return std::string(GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "pipeline") + ": " +
         (err ? err->message : "unknown error");
}

// hlssink2's location is a printf pattern: a '%' of the folder must not be read as one.
std::string escape_percent(const std::string &s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '%')
      out += '%';
  }
  return out;
}

GOutputStream *discard_playlist(GstElement *, const gchar *, gpointer) {
  // The engine writes the playlists (sliding window, discontinuities, ENDLIST after the idle timeout):
  // hlssink2's own go nowhere.
  return g_memory_output_stream_new_resizable();
}

} // namespace

LadderPlan plan_ladder(const std::string &ladder, const std::string &dir, int session, const GstCaps *video,
                       const GstCaps *audio) {
  LadderPlan p;
  p.dir = dir;
  p.session = session;
  const GstStructure *s = video && gst_caps_get_size(video) > 0 ? gst_caps_get_structure(video, 0) : nullptr;
  int w = 0, h = 0;
  if (!s || !gst_structure_get_int(s, "width", &w) || !gst_structure_get_int(s, "height", &h) || w <= 0 || h <= 0)
    throw Error(ErrorCode::NotMedia, "the input's video has no picture size");
  int par_n = 1, par_d = 1;
  if (!gst_structure_get_fraction(s, "pixel-aspect-ratio", &par_n, &par_d) || par_n <= 0 || par_d <= 0)
    par_n = par_d = 1;
  const int display_w = static_cast<int>(static_cast<gint64>(w) * par_n / par_d);
  int fn = 0, fd = 1;
  if (gst_structure_get_fraction(s, "framerate", &fn, &fd) && fn > 0 && fd > 0 && static_cast<double>(fn) / fd >= 1.0 &&
      static_cast<double>(fn) / fd <= 120.0) {
    p.fps_n = fn;
    p.fps_d = fd;
  }
  p.gop = pipeline::gop_frames(p.frame_rate(), kSegmentSeconds);
  p.renditions =
      media::plan_ladder(ladder.empty() ? media::default_ladder() : media::parse_ladder(ladder), display_w, h);
  p.threads = pipeline::encoder_threads(0, static_cast<int>(p.renditions.size()));
  if (audio && gst_caps_get_size(audio) > 0) {
    p.audio = true;
    const GstStructure *a = gst_caps_get_structure(audio, 0);
    int version = 0;
    p.audio_is_aac = gst_structure_has_name(a, "audio/mpeg") && gst_structure_get_int(a, "mpegversion", &version) &&
                     (version == 2 || version == 4);
  }
  return p;
}

std::string describe_ladder(const LadderPlan &p) {
  std::ostringstream o;
  o.imbue(std::locale::classic());
  // The appsrcs queue at most 3 s; beyond that (a ladder that cannot keep up) new input is dropped.
  const char *src = "is-live=true format=time do-timestamp=false max-bytes=0 max-time=3000000000 leaky-type=upstream";
  // Decoded once; the frame rate made constant, so that every rung's GOP of fps x 2 frames is 2 s.
  o << "appsrc name=v " << src << " ! decodebin name=vdec  vdec. ! video/x-raw ! videorate name=rate skip-to-first=true"
    << " ! video/x-raw,framerate=" << p.fps_n << "/" << p.fps_d << " ! tee name=vt";
  if (p.audio) {
    o << "  appsrc name=a " << src;
    if (p.audio_is_aac)
      o << " ! aacparse ! tee name=at";
    else
      o << " ! decodebin name=adec  adec. ! audio/x-raw ! audioconvert ! audioresample"
           " ! audio/x-raw,rate=48000,channels=2 ! avenc_aac bitrate="
        << media::kDefaultAudioKbps * 1000 << " ! aacparse ! tee name=at";
  }
  for (std::size_t i = 0; i < p.renditions.size(); i++) {
    const auto &r = p.renditions[i];
    o << "  vt. ! queue max-size-buffers=8 max-size-bytes=0 max-size-time=0 leaky=downstream ! videoconvertscale"
      << " ! video/x-raw,format=I420,width=" << r.width << ",height=" << r.height << ",pixel-aspect-ratio=1/1"
      << " ! x264enc tune=zerolatency speed-preset=veryfast bitrate=" << r.bitrate_kbps << " key-int-max=" << p.gop
      << " threads=" << p.threads << " option-string=\"scenecut=0\" ! h264parse ! h" << i << ".video";
    if (p.audio)
      o << "  at. ! queue max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0 ! h" << i << ".audio";
    // The encoder makes a keyframe every segment: hlssink2 must not ask for more (a forced keyframe one frame
    // from the encoder's own gives a segment of one frame).
    o << "  hlssink2 name=h" << i << " target-duration=" << kSegmentSeconds
      << " max-files=0 playlist-length=3 send-keyframe-requests=false";
  }
  return o.str();
}

std::string segment_name(const std::string &rendition, int session, int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%d-%05d.ts", session, index);
  return rendition + buf;
}

void stop_off_loop(GstPtr<GstElement> pipeline, std::function<void()> then) {
  if (!pipeline) {
    if (then)
      post(std::move(then));
    return;
  }
  std::thread([pipeline = std::move(pipeline), then = std::move(then)]() mutable {
    gst_element_set_state(pipeline.get(), GST_STATE_NULL);
    pipeline.reset();
    if (then)
      post(std::move(then));
  }).detach();
}

bool stop_waiting(GstPtr<GstElement> pipeline, int timeout_ms) {
  if (!pipeline)
    return true;
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    bool stopped = false;
  };
  auto state = std::make_shared<State>();
  std::thread([pipeline = std::move(pipeline), state]() mutable {
    gst_element_set_state(pipeline.get(), GST_STATE_NULL);
    pipeline.reset();
    std::lock_guard<std::mutex> lock(state->mutex);
    state->stopped = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mutex);
  return state->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return state->stopped; });
}

Ladder::Ladder(LadderPlan plan, std::uint64_t claim) : plan_(std::move(plan)), claim_(claim) {}

Ladder::~Ladder() {
  *alive_ = false;
  abort();
}

void Ladder::start(SegmentFn on_segment, DoneFn on_done) {
  on_segment_ = std::move(on_segment);
  on_done_ = std::move(on_done);
  const std::string description = describe_ladder(plan_);
  GST_INFO("ladder of %s, session %d: %s", plan_.dir.c_str(), plan_.session, description.c_str());
  g_autoptr(GError) err = nullptr;
  GstElement *p = gst_parse_launch(description.c_str(), &err);
  if (!p || err) {
    if (p)
      gst_object_unref(p);
    throw Error(ErrorCode::Pipeline, std::string("the live ladder does not build: ") + (err ? err->message : "?"));
  }
  pipeline_ = adopt_floating(p);
  video_.reset(gst_bin_get_by_name(GST_BIN(p), "v"));
  audio_.reset(gst_bin_get_by_name(GST_BIN(p), "a"));
  rate_.reset(gst_bin_get_by_name(GST_BIN(p), "rate"));
  fs::make_dirs(plan_.dir);
  const std::string dir = escape_percent(plan_.dir);
  for (std::size_t i = 0; i < plan_.renditions.size(); i++) {
    const std::string name = plan_.renditions[i].name;
    GstPtr<GstElement> sink(gst_bin_get_by_name(GST_BIN(p), ("h" + std::to_string(i)).c_str()));
    const std::string pattern = fs::join(dir, name + "-" + std::to_string(plan_.session) + "-%05d.ts");
    g_object_set(sink.get(), "location", pattern.c_str(), "playlist-location",
                 fs::join(plan_.dir, "." + name + ".hlssink.m3u8").c_str(), nullptr);
    g_signal_connect(sink.get(), "get-playlist-stream", G_CALLBACK(discard_playlist), nullptr);
    open_.push_back(Open{});
  }
  GstPtr<GstBus> bus(gst_pipeline_get_bus(GST_PIPELINE(p)));
  watch_ = gst_bus_create_watch(bus.get());
  g_source_set_callback(watch_, reinterpret_cast<GSourceFunc>(reinterpret_cast<void (*)()>(&Ladder::on_bus)), this,
                        nullptr);
  // The main loop's context, whatever thread-default context the caller has.
  g_source_attach(watch_, nullptr);
  if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    unwatch();
    stop_off_loop(std::move(pipeline_));
    throw Error(ErrorCode::Pipeline, "the live ladder does not start");
  }
}

void Ladder::unwatch() {
  if (watch_) {
    g_source_destroy(watch_);
    g_source_unref(watch_);
    watch_ = nullptr;
  }
  if (finish_timer_) {
    g_source_remove(finish_timer_);
    finish_timer_ = 0;
  }
}

gboolean Ladder::on_bus(GstBus *, GstMessage *msg, gpointer self) {
  auto *l = static_cast<Ladder *>(self);
  try { // a GLib callback: nothing crosses it
    return l->handle(msg) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
  } catch (const std::exception &e) {
    GST_ERROR("live ladder: %s", e.what());
  }
  return G_SOURCE_CONTINUE;
}

bool Ladder::handle(GstMessage *msg) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(msg);
    const bool opened = gst_structure_has_name(s, "splitmuxsink-fragment-opened");
    if (!opened && !gst_structure_has_name(s, "splitmuxsink-fragment-closed"))
      break;
    // From the splitmuxsink inside hlssink2 "hN".
    GstObject *parent = GST_OBJECT_PARENT(GST_MESSAGE_SRC(msg));
    const gchar *name = parent ? GST_OBJECT_NAME(parent) : nullptr;
    if (!name || name[0] != 'h')
      break;
    const std::size_t i = static_cast<std::size_t>(g_ascii_strtoull(name + 1, nullptr, 10));
    if (i >= open_.size())
      break;
    GstClockTime rt = GST_CLOCK_TIME_NONE;
    gst_structure_get_clock_time(s, "running-time", &rt);
    Open &o = open_[i];
    if (opened) {
      o.uri = segment_name(plan_.renditions[i].name, plan_.session, o.next_index++);
      o.start = rt;
      o.date_us = 0;
      // The wall time of the segment's first frame, from the running time on the pipeline's clock.
      if (GstClock *clock = gst_element_get_clock(pipeline_.get()); clock && GST_CLOCK_TIME_IS_VALID(rt)) {
        const auto now = static_cast<std::int64_t>(gst_clock_get_time(clock));
        const auto at = static_cast<std::int64_t>(rt + gst_element_get_base_time(pipeline_.get()));
        o.date_us = g_get_real_time() - (now - at) / 1000;
        gst_object_unref(clock);
      }
    } else if (!o.uri.empty()) {
      LiveSegment seg;
      seg.uri = o.uri;
      seg.duration = GST_CLOCK_TIME_IS_VALID(rt) && GST_CLOCK_TIME_IS_VALID(o.start) && rt > o.start
                         ? static_cast<double>(rt - o.start) / GST_SECOND
                         : 0.0;
      seg.date_us = o.date_us;
      o.uri.clear();
      if (seg.duration > 0 && on_segment_)
        on_segment_(i, seg);
    }
    break;
  }
  case GST_MESSAGE_EOS: done(""); return false;
  case GST_MESSAGE_ERROR: {
    std::string e = error_text(msg);
    // An input that ends before it gave any data (decodebin found nothing to type) is not a failure.
    done(finishing_ ? "" : e);
    return false;
  }
  default: break;
  }
  return true;
}

void Ladder::finish() {
  if (done_ || finishing_)
    return;
  finishing_ = true;
  if (video_)
    gst_app_src_end_of_stream(GST_APP_SRC(video_.get()));
  if (audio_)
    gst_app_src_end_of_stream(GST_APP_SRC(audio_.get()));
  finish_timer_ = g_timeout_add_seconds(
      kFinishTimeoutS,
      [](gpointer self) -> gboolean {
        auto *l = static_cast<Ladder *>(self);
        l->finish_timer_ = 0;
        GST_WARNING("a live ladder did not drain within %u s: stopped", kFinishTimeoutS);
        l->done("");
        return G_SOURCE_REMOVE;
      },
      this);
}

void Ladder::done(const std::string &error) {
  if (done_)
    return;
  done_ = true;
  // Called from the bus watch: it is removed by returning G_SOURCE_REMOVE, or here.
  if (finish_timer_) {
    g_source_remove(finish_timer_);
    finish_timer_ = 0;
  }
  if (watch_) {
    GSource *w = watch_;
    watch_ = nullptr;
    if (g_main_current_source() != w)
      g_source_destroy(w);
    g_source_unref(w);
  }
  video_.reset();
  audio_.reset();
  rate_.reset();
  stop_off_loop(std::move(pipeline_));
  if (on_done_)
    post([alive = alive_, fn = std::move(on_done_), error] {
      if (*alive)
        fn(error);
    });
}

void Ladder::abort() {
  if (done_)
    return;
  done_ = true;
  unwatch();
  video_.reset();
  audio_.reset();
  rate_.reset();
  stop_off_loop(std::move(pipeline_));
}

void Ladder::drain_blocking(int timeout_ms) {
  if (done_)
    return;
  done_ = true;
  unwatch();
  if (video_)
    gst_app_src_end_of_stream(GST_APP_SRC(video_.get()));
  if (audio_)
    gst_app_src_end_of_stream(GST_APP_SRC(audio_.get()));
  finishing_ = true;
  const gint64 deadline = g_get_monotonic_time() + static_cast<gint64>(timeout_ms) * 1000;
  GstPtr<GstBus> bus(gst_pipeline_get_bus(GST_PIPELINE(pipeline_.get())));
  done_ = false; // handle() may list the last segments; its done() is not wanted here
  for (;;) {
    const gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0)
      break;
    GstMessage *msg = gst_bus_timed_pop(bus.get(), static_cast<GstClockTime>(left) * 1000);
    if (!msg)
      break;
    const GstMessageType type = GST_MESSAGE_TYPE(msg);
    if (type == GST_MESSAGE_ELEMENT) {
      try {
        handle(msg);
      } catch (const std::exception &e) {
        GST_WARNING("live ladder: %s", e.what());
      }
    }
    gst_message_unref(msg);
    if (type == GST_MESSAGE_EOS || type == GST_MESSAGE_ERROR)
      break;
  }
  done_ = true;
  video_.reset();
  audio_.reset();
  rate_.reset();
  if (!stop_waiting(std::move(pipeline_), timeout_ms))
    GST_WARNING("a live ladder did not stop within %d ms at shutdown", timeout_ms);
}

std::int64_t Ladder::dropped() const {
  guint64 drop = 0;
  if (rate_)
    g_object_get(rate_.get(), "drop", &drop, nullptr);
  return static_cast<std::int64_t>(drop);
}

} // namespace sluice::live
