// SPDX-License-Identifier: LGPL-2.1-or-later
// The pipeline runner: gst_parse_launch_full, a bus watch on the caller's main context, progress relay.
#include "jobs/runner.h"

#include "core/mainloop.h"

#include <functional>
#include <memory>
#include <mutex>
#include <thread>

GST_DEBUG_CATEGORY_STATIC(sluice_runner_debug);
#define GST_CAT_DEFAULT sluice_runner_debug

namespace sluice::jobs {

bool parse_progress(GstMessage *msg, Progress &p) {
  if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT)
    return false;
  const GstStructure *s = gst_message_get_structure(msg);
  if (!s || !gst_structure_has_name(s, "sluice-progress"))
    return false;
  guint64 u = 0;
  gint64 i = 0;
  gint pct = -1;
  gdouble d = 0;
  gboolean b = FALSE;
  if (gst_structure_get_int(s, "percent", &pct))
    p.percent = pct;
  if (gst_structure_get_double(s, "percent-double", &d))
    p.percent_double = d;
  if (gst_structure_get_uint64(s, "position", &u))
    p.position_ns = static_cast<std::int64_t>(u);
  if (gst_structure_get_int64(s, "duration", &i))
    p.duration_ns = i;
  if (gst_structure_get_uint64(s, "frames", &u))
    p.frames = u;
  if (gst_structure_get_double(s, "fps", &d))
    p.fps = d;
  if (gst_structure_get_double(s, "speed", &d))
    p.speed = d;
  if (gst_structure_get_int64(s, "eta", &i))
    p.eta_ns = i;
  if (gst_structure_get_boolean(s, "final", &b))
    p.final = b;
  return true;
}

std::string describe_error(GstMessage *msg) {
  GError *err = nullptr;
  gchar *debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  std::string out = GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "pipeline";
  out += ": ";
  out += err ? err->message : "unknown error";
  if (debug && *debug) {
    out += " (";
    out += debug;
    out += ")";
  }
  g_clear_error(&err);
  g_free(debug);
  return out;
}

Runner::Runner(std::string description) : description_(std::move(description)) {
  static std::once_flag once;
  std::call_once(once,
                 [] { GST_DEBUG_CATEGORY_INIT(sluice_runner_debug, "sluice-runner", 0, "sluice pipeline runner"); });
}

Runner::~Runner() {
  *alive_ = false;
  stop_pipeline();
}

void Runner::start(ProgressFn on_progress, DoneFn on_done) {
  on_progress_ = std::move(on_progress);
  on_done_ = std::move(on_done);
  GError *err = nullptr;
  GstElement *p = gst_parse_launch_full(description_.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p)
    throw Error::from_gerror(ErrorCode::Pipeline, "cannot build the pipeline", err);
  g_clear_error(&err);
  gst_object_ref_sink(p);
  pipeline_ = p;
  watch_track_starts();
  GstBus *bus = gst_element_get_bus(pipeline_);
  watch_id_ = gst_bus_add_watch(bus, &Runner::on_bus_message, this);
  gst_object_unref(bus);
  GST_INFO_OBJECT(pipeline_, "starting: %s", description_.c_str());
  if (gst_element_set_state(pipeline_, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The error message itself arrives on the bus and finishes the run.
    GST_WARNING_OBJECT(pipeline_, "state change to PLAYING failed");
  }
}

namespace {

// The file a muxer's output ends in: its downstream filesink's location, through elements with one
// source pad (queues).
std::string sink_file_of(GstElement *mux) {
  GstElement *e = GST_ELEMENT(gst_object_ref(mux));
  for (int hops = 0; hops < 8; ++hops) {
    GstPad *src = gst_element_get_static_pad(e, "src");
    GstPad *peer = src ? gst_pad_get_peer(src) : nullptr;
    if (src)
      gst_object_unref(src);
    gst_object_unref(e);
    if (!peer)
      return "";
    e = gst_pad_get_parent_element(peer);
    gst_object_unref(peer);
    if (!e)
      return "";
    GstElementFactory *f = gst_element_get_factory(e);
    if (f && g_str_equal(GST_OBJECT_NAME(f), "filesink")) {
      gchar *location = nullptr;
      g_object_get(e, "location", &location, nullptr);
      gst_object_unref(e);
      std::string name = location ? location : "";
      g_free(location);
      auto slash = name.rfind('/');
      return slash == std::string::npos ? name : name.substr(slash + 1);
    }
  }
  gst_object_unref(e);
  return "";
}

} // namespace

void Runner::watch_track_starts() {
  GstIterator *it = gst_bin_iterate_recurse(GST_BIN(pipeline_));
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto *el = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory *f = gst_element_get_factory(el);
    const char *factory = f ? GST_OBJECT_NAME(f) : "";
    if (g_str_equal(factory, "mp4mux") || g_str_equal(factory, "qtmux")) {
      std::string file = sink_file_of(el);
      if (!file.empty()) {
        GstIterator *pads = gst_element_iterate_sink_pads(el);
        GValue pv = G_VALUE_INIT;
        while (gst_iterator_next(pads, &pv) == GST_ITERATOR_OK) {
          auto *pad = GST_PAD(g_value_get_object(&pv));
          struct Ctx {
            std::shared_ptr<TrackStarts> starts;
            std::string file;
          };
          gst_pad_add_probe(
              pad, GST_PAD_PROBE_TYPE_BUFFER,
              [](GstPad *pd, GstPadProbeInfo *info, gpointer data) -> GstPadProbeReturn {
                auto *ctx = static_cast<Ctx *>(data);
                GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
                GstClockTime ts = GST_BUFFER_DTS_IS_VALID(buf) ? GST_BUFFER_DTS(buf) : GST_BUFFER_PTS(buf);
                GstEvent *seg_ev = gst_pad_get_sticky_event(pd, GST_EVENT_SEGMENT, 0);
                if (!seg_ev || !GST_CLOCK_TIME_IS_VALID(ts)) {
                  if (seg_ev)
                    gst_event_unref(seg_ev);
                  return GST_PAD_PROBE_OK;
                }
                const GstSegment *seg = nullptr;
                gst_event_parse_segment(seg_ev, &seg);
                gint64 rt = 0;
                if (gst_segment_to_running_time_full(seg, GST_FORMAT_TIME, ts, reinterpret_cast<guint64 *>(&rt)) < 0)
                  rt = -rt;
                gst_event_unref(seg_ev);
                std::lock_guard<std::mutex> lock(ctx->starts->mutex);
                auto [at, inserted] = ctx->starts->by_file.emplace(ctx->file, rt);
                if (!inserted)
                  at->second = std::min(at->second, static_cast<std::int64_t>(rt));
                return GST_PAD_PROBE_REMOVE;
              },
              new Ctx{starts_, file}, [](gpointer data) { delete static_cast<Ctx *>(data); });
          g_value_reset(&pv);
        }
        g_value_unset(&pv);
        gst_iterator_free(pads);
      }
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
}

std::map<std::string, std::int64_t> Runner::track_starts() const {
  std::lock_guard<std::mutex> lock(starts_->mutex);
  return starts_->by_file;
}

ErrorCode classify_error(GstMessage *msg) {
  GError *err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  ErrorCode code = ErrorCode::Pipeline;
  // Data the demuxers and decoders cannot read will not read better next time.
  if (err && err->domain == GST_STREAM_ERROR) {
    switch (err->code) {
    case GST_STREAM_ERROR_DECODE:
    case GST_STREAM_ERROR_DEMUX:
    case GST_STREAM_ERROR_FORMAT:
    case GST_STREAM_ERROR_TYPE_NOT_FOUND:
    case GST_STREAM_ERROR_WRONG_TYPE:
    case GST_STREAM_ERROR_CODEC_NOT_FOUND: code = ErrorCode::BadInput; break;
    default: break;
    }
  }
  g_clear_error(&err);
  return code;
}

gboolean Runner::on_bus_message(GstBus *, GstMessage *msg, gpointer data) {
  auto *self = static_cast<Runner *>(data);
  if (self->finished_)
    return G_SOURCE_CONTINUE;
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS: self->finish(std::nullopt); break;
  case GST_MESSAGE_ERROR: {
    std::string what = describe_error(msg);
    GST_WARNING_OBJECT(self->pipeline_, "pipeline error: %s", what.c_str());
    self->finish(Error(classify_error(msg), what));
    break;
  }
  case GST_MESSAGE_ELEMENT: {
    Progress p;
    if (parse_progress(msg, p) && self->on_progress_)
      self->on_progress_(p);
    // avwait (a clip of the input) drops everything after its end: once it has recorded and drops
    // again, the rest of the input is not decoded for nothing. EOS from the sources ends the clip.
    const GstStructure *s = gst_message_get_structure(msg);
    gboolean dropping = FALSE;
    if (s && gst_structure_has_name(s, "avwait-status") && gst_structure_get_boolean(s, "dropping", &dropping)) {
      std::string name = GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "";
      if (!dropping) {
        self->clips_recording_.insert(name);
      } else if (self->clips_recording_.count(name) && !self->eos_sent_) {
        GST_INFO_OBJECT(self->pipeline_, "%s reached the end of its clip: ending the input", name.c_str());
        self->eos_sent_ = true;
        gst_element_send_event(self->pipeline_, gst_event_new_eos());
      }
    }
    break;
  }
  default: break;
  }
  return G_SOURCE_CONTINUE;
}

void Runner::stop_pipeline() {
  if (watch_id_) {
    g_source_remove(watch_id_);
    watch_id_ = 0;
  }
  if (pipeline_) {
    gst_element_set_state(pipeline_, GST_STATE_NULL);
    gst_object_unref(pipeline_);
    pipeline_ = nullptr;
  }
}

void Runner::finish(std::optional<Error> err) {
  if (finished_)
    return;
  finished_ = true;
  if (!err) {
    // End of stream: everything has drained, stopping is immediate.
    stop_pipeline();
    if (on_done_) {
      auto done = std::move(on_done_);
      done(std::nullopt);
    }
    return;
  }
  // An error or a cancel: stopping a pipeline in that state can block (seen with GStreamer 1.22:
  // splitmuxsink waits forever on a streaming thread after its sink failed). Stop it on a thread of its
  // own and report from the main context once it has stopped, or after kStopTimeoutS anyway: the
  // server's main loop never waits on GStreamer.
  if (watch_id_) {
    g_source_remove(watch_id_);
    watch_id_ = 0;
  }
  GstElement *pipeline = pipeline_;
  pipeline_ = nullptr;
  struct Pending {
    std::shared_ptr<bool> alive;
    DoneFn done;
    std::optional<Error> err;
    bool reported = false;
  };
  auto pending = std::make_shared<Pending>(Pending{alive_, std::move(on_done_), std::move(err), false});
  auto report = [](const std::shared_ptr<Pending> &pd, bool stopped) {
    if (pd->reported)
      return;
    pd->reported = true;
    if (!stopped)
      GST_ERROR("a failed pipeline did not stop within %d s: abandoned (its thread is left blocked)", kStopTimeoutS);
    if (*pd->alive && pd->done)
      pd->done(std::move(pd->err));
  };
  GMainContext *context = g_main_context_ref_thread_default();
  post([pending, report] { report(pending, false); }, context, kStopTimeoutS);
  std::thread([pipeline, pending, report, context] {
    if (pipeline) {
      gst_element_set_state(pipeline, GST_STATE_NULL);
      gst_object_unref(pipeline);
    }
    post([pending, report] { report(pending, true); }, context);
    g_main_context_unref(context);
  }).detach();
}

void Runner::cancel() {
  if (!finished_)
    finish(Error(ErrorCode::Canceled, "canceled"));
}

} // namespace sluice::jobs
