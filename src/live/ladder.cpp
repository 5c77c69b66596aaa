// SPDX-License-Identifier: LGPL-2.1-or-later
// The ladder pipeline of a live stream: planned from the input's caps and rendered from its description, run,
// drained, stopped off the main loop (its muxers' output cut into segments in ladder_cuts.cpp).
#include "live/ladder.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "media/ladder.h"
#include "pipeline/params.h"

#include <gst/app/gstappsrc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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

} // namespace

LiveDescription load_live_description(const std::string &name) {
  LiveDescription d;
  d.description = pipeline::find_description(name);
  if (!pipeline::output_info(d.description.output).live)
    throw Error(ErrorCode::Invalid, "pipeline '" + name + "' is not a live one (its output is " +
                                        pipeline::output_name(d.description.output) + ")");
  d.values = pipeline::resolve(d.description.params, {});
  d.segment_seconds = pipeline::int_value(d.values, "segment_seconds", kSegmentSeconds);
  return d;
}

LadderPlan plan_ladder(const LiveDescription &d, const std::string &ladder, const std::string &dir, int session,
                       const GstCaps *video, const GstCaps *audio) {
  LadderPlan p;
  p.dir = dir;
  p.session = session;
  p.description = d.description.name;
  p.cmaf = d.description.output == pipeline::OutputKind::LiveCmaf;
  p.segment_seconds = d.segment_seconds;
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
  p.gop = pipeline::gop_frames(p.frame_rate(), p.segment_seconds);
  p.renditions =
      media::plan_ladder(ladder.empty() ? media::default_ladder() : media::parse_ladder(ladder), display_w, h);
  p.audio = audio && gst_caps_get_size(audio) > 0;

  pipeline::RenderInput in;
  // The live descriptions name no file; {out} is the stream's folder where it can be placed.
  in.out = dir.find_first_of("%\"'\\") == std::string::npos ? dir : "";
  in.has_video = true;
  in.has_audio = p.audio;
  in.audio_channels = 2;
  in.framerate = p.frame_rate();
  in.fps = std::to_string(p.fps_n) + "/" + std::to_string(p.fps_d);
  in.display_width = display_w;
  in.display_height = h;
  in.renditions = p.renditions;
  p.launch = pipeline::render(d.description, d.values, in, pipeline::EncoderTable{});
  return p;
}

std::string check_ladder_elements(GstElement *pipeline, const LadderPlan &plan) {
  auto has = [&](const std::string &name, const char *factory) {
    GstPtr<GstElement> e(gst_bin_get_by_name(GST_BIN(pipeline), name.c_str()));
    if (!e)
      return false;
    GstElementFactory *f = gst_element_get_factory(e.get());
    return !factory || (f && g_str_equal(GST_OBJECT_NAME(f), factory));
  };
  if (!has("v", "appsrc"))
    return "it has no appsrc named 'v' (the video input)";
  if (plan.audio && !has("a", "appsrc"))
    return "it has no appsrc named 'a' (the audio input)";
  for (std::size_t i = 0; i < plan.tracks(); i++) {
    const std::string sink = pipeline::sink_name(plan.track_name(i));
    if (!plan.cmaf && !has(sink, "mpegtsmux"))
      return "it has no mpegtsmux named '" + sink + "'";
    GstElement *app = appsink_after(pipeline, sink);
    if (!app)
      return "no appsink takes what '" + sink + "' makes";
    gst_object_unref(app);
  }
  return "";
}

namespace {

// The stop_off_loop threads still running.
std::mutex stops_mutex;
std::condition_variable stops_done;
int stops_running = 0;

void stop_ended() {
  {
    std::lock_guard lock(stops_mutex);
    stops_running--;
  }
  stops_done.notify_all();
}

} // namespace

void stop_off_loop(GstPtr<GstElement> pipeline, std::function<void()> then) {
  if (!pipeline) {
    if (then)
      post(std::move(then));
    return;
  }
  {
    std::lock_guard lock(stops_mutex);
    stops_running++;
  }
  try {
    std::thread([pipeline = std::move(pipeline), then = std::move(then)]() mutable {
      gst_element_set_state(pipeline.get(), GST_STATE_NULL);
      pipeline.reset();
      if (then)
        post(std::move(then));
      stop_ended();
    }).detach();
  } catch (...) {
    stop_ended();
    throw;
  }
}

bool wait_for_stops(int timeout_ms) {
  std::unique_lock lock(stops_mutex);
  return stops_done.wait_for(lock, std::chrono::milliseconds(timeout_ms), [] { return stops_running == 0; });
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
  const std::string &description = plan_.launch;
  GST_INFO("ladder of %s, session %d (%s): %s", plan_.dir.c_str(), plan_.session, plan_.description.c_str(),
           description.c_str());
  g_autoptr(GError) err = nullptr;
  GstElement *p = gst_parse_launch(description.c_str(), &err);
  if (!p || err) {
    if (p)
      gst_object_unref(p);
    throw Error(ErrorCode::Pipeline, std::string("the live ladder does not build: ") + (err ? err->message : "?"));
  }
  pipeline_ = adopt_floating(p);
  if (const std::string why = check_ladder_elements(p, plan_); !why.empty())
    throw Error(ErrorCode::Pipeline, "the live ladder of pipeline '" + plan_.description + "' cannot run: " + why);
  video_.reset(gst_bin_get_by_name(GST_BIN(p), "v"));
  audio_.reset(gst_bin_get_by_name(GST_BIN(p), "a"));
  rate_.reset(gst_bin_get_by_name(GST_BIN(p), "rate"));
  fs::make_dirs(plan_.dir);
  watch_cuts();
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
  case GST_MESSAGE_EOS:
    flush_cuts(); // the last segments, cut when the EOS reached the appsinks
    done("");
    return false;
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
  for (;;) {
    const gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0)
      break;
    GstMessage *msg = gst_bus_timed_pop(bus.get(), static_cast<GstClockTime>(left) * 1000);
    if (!msg)
      break;
    const GstMessageType type = GST_MESSAGE_TYPE(msg);
    gst_message_unref(msg);
    if (type == GST_MESSAGE_EOS || type == GST_MESSAGE_ERROR)
      break;
  }
  flush_cuts(); // the last segments, cut on the streaming threads
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
