// SPDX-License-Identifier: LGPL-2.1-or-later
// The pipeline runner: gst_parse_launch_full, a bus watch on the caller's main context, progress relay.
#include "jobs/runner.h"

#include "core/mainloop.h"
#include "jobs/hls_cuts.h"

#include <algorithm>
#include <cstring>
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
  g_autoptr(GError) err = nullptr;
  g_autofree gchar *debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  std::string out = GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "pipeline";
  out += ": ";
  out += err ? err->message : "unknown error";
  if (debug && *debug) {
    out += " (";
    out += debug;
    out += ")";
  }
  // One line: GStreamer puts a newline between an element's path and its own words.
  std::replace(out.begin(), out.end(), '\n', ' ');
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

void Runner::start(ProgressFn on_progress, DoneFn on_done, SegmentFn on_segment) {
  on_progress_ = std::move(on_progress);
  on_done_ = std::move(on_done);
  on_segment_ = std::move(on_segment);
  g_autoptr(GError) err = nullptr;
  GstElement *p = gst_parse_launch_full(description_.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p)
    throw Error::from_gerror(ErrorCode::Pipeline, "cannot build the pipeline", g_steal_pointer(&err));
  pipeline_ = adopt_floating(p);
  // hlssink2 closes a segment one GOP late: its work is done by sluice, which lists a segment at the next keyframe.
  cut_hls_sinks(pipeline_.get());
  watch_track_starts();
  if (decoder_threads_ > 0)
    g_signal_connect(pipeline_.get(), "deep-element-added", G_CALLBACK(&Runner::on_element_added),
                     GINT_TO_POINTER(decoder_threads_));
  {
    g_autoptr(GstBus) bus = gst_element_get_bus(pipeline_.get());
    watch_id_ = gst_bus_add_watch(bus, &Runner::on_bus_message, this);
  }
  GST_INFO_OBJECT(pipeline_.get(), "starting: %s", description_.c_str());
  if (gst_element_set_state(pipeline_.get(), GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The error message itself arrives on the bus and finishes the run.
    GST_WARNING_OBJECT(pipeline_.get(), "state change to PLAYING failed");
  }
}

namespace {

// The file a muxer's output ends in: its downstream filesink's location, through elements with one
// source pad (queues).
std::string sink_file_of(GstElement *mux) {
  GstPtr<GstElement> e(GST_ELEMENT(gst_object_ref(mux)));
  for (int hops = 0; hops < 8; ++hops) {
    g_autoptr(GstPad) src = gst_element_get_static_pad(e.get(), "src");
    g_autoptr(GstPad) peer = src ? gst_pad_get_peer(src) : nullptr;
    if (!peer)
      return "";
    e.reset(gst_pad_get_parent_element(peer));
    if (!e)
      return "";
    GstElementFactory *f = gst_element_get_factory(e.get());
    if (f && g_str_equal(GST_OBJECT_NAME(f), "filesink")) {
      g_autofree gchar *location = nullptr;
      g_object_get(e.get(), "location", &location, nullptr);
      std::string name = location ? location : "";
      auto slash = name.rfind('/');
      return slash == std::string::npos ? name : name.substr(slash + 1);
    }
  }
  return "";
}

// Where a buffer reaching a muxer's pad lies on the running time (ns; negative before the segment's start), if it
// can be told.
std::optional<std::int64_t> running_time_of(GstPad *pad, GstBuffer *buf) {
  GstClockTime ts = GST_BUFFER_DTS_IS_VALID(buf) ? GST_BUFFER_DTS(buf) : GST_BUFFER_PTS(buf);
  g_autoptr(GstEvent) seg_ev = gst_pad_get_sticky_event(pad, GST_EVENT_SEGMENT, 0);
  if (!seg_ev || !GST_CLOCK_TIME_IS_VALID(ts))
    return std::nullopt;
  const GstSegment *seg = nullptr;
  gst_event_parse_segment(seg_ev, &seg);
  guint64 rt = 0;
  if (gst_segment_to_running_time_full(seg, GST_FORMAT_TIME, ts, &rt) < 0)
    return -static_cast<std::int64_t>(rt);
  return static_cast<std::int64_t>(rt);
}

} // namespace

// On the thread that adds the element (decodebin's, while it plugs its decoder), before the element starts.
void Runner::on_element_added(GstBin *, GstBin *, GstElement *element, gpointer threads) {
  GstElementFactory *f = gst_element_get_factory(element);
  const gchar *klass = f ? gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS) : nullptr;
  if (!klass || !strstr(klass, "Decoder") || !strstr(klass, "Video"))
    return;
  GParamSpec *spec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), "max-threads");
  if (!spec || spec->value_type != G_TYPE_INT || !(spec->flags & G_PARAM_WRITABLE))
    return;
  g_object_set(element, "max-threads", GPOINTER_TO_INT(threads), nullptr);
  GST_INFO_OBJECT(element, "decoder threads: %d", GPOINTER_TO_INT(threads));
}

void Runner::watch_track_starts() {
  g_autoptr(GstIterator) it = gst_bin_iterate_recurse(GST_BIN(pipeline_.get()));
  g_auto(GValue) item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto *el = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory *f = gst_element_get_factory(el);
    const char *factory = f ? GST_OBJECT_NAME(f) : "";
    if (g_str_equal(factory, "mp4mux") || g_str_equal(factory, "qtmux")) {
      std::string file = sink_file_of(el);
      if (!file.empty()) {
        g_autoptr(GstIterator) pads = gst_element_iterate_sink_pads(el);
        g_auto(GValue) pv = G_VALUE_INIT;
        while (gst_iterator_next(pads, &pv) == GST_ITERATOR_OK) {
          auto *pad = GST_PAD(g_value_get_object(&pv));
          struct Ctx {
            std::shared_ptr<TrackStarts> starts;
            std::string file;
          };
          gst_pad_add_probe(
              pad, GST_PAD_PROBE_TYPE_BUFFER,
              [](GstPad *pd, GstPadProbeInfo *info, gpointer data) -> GstPadProbeReturn {
                // On a streaming thread: nothing may be thrown from here.
                auto *ctx = static_cast<Ctx *>(data);
                auto rt = running_time_of(pd, GST_PAD_PROBE_INFO_BUFFER(info));
                if (!rt)
                  return GST_PAD_PROBE_OK;
                try {
                  std::lock_guard<std::mutex> lock(ctx->starts->mutex);
                  auto [at, inserted] = ctx->starts->by_file.emplace(ctx->file, *rt);
                  if (!inserted)
                    at->second = std::min(at->second, *rt);
                } catch (const std::exception &e) {
                  GST_WARNING_OBJECT(pd, "cannot keep where %s began: %s", ctx->file.c_str(), e.what());
                }
                return GST_PAD_PROBE_REMOVE;
              },
              new Ctx{starts_, file}, [](gpointer data) { delete static_cast<Ctx *>(data); });
          g_value_reset(&pv);
        }
      }
    }
    g_value_reset(&item);
  }
}

std::map<std::string, std::int64_t> Runner::track_starts() const {
  std::lock_guard<std::mutex> lock(starts_->mutex);
  return starts_->by_file;
}

ErrorCode classify_error(GstMessage *msg) {
  g_autoptr(GError) err = nullptr;
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
  return code;
}

gboolean Runner::on_bus_message(GstBus *, GstMessage *msg, gpointer data) {
  auto *self = static_cast<Runner *>(data);
  if (self->finished_)
    return G_SOURCE_CONTINUE;
  // A GLib callback: what a callback of ours throws stops here, and fails the run.
  try {
    self->handle_message(msg);
  } catch (const std::exception &e) {
    GST_ERROR("handling a message of the pipeline failed: %s", e.what());
    try {
      self->finish(Error(ErrorCode::Internal, std::string("the job failed: ") + e.what()));
    } catch (const std::exception &e2) {
      GST_ERROR("cannot stop the pipeline: %s", e2.what());
    }
  }
  return G_SOURCE_CONTINUE;
}

void Runner::handle_message(GstMessage *msg) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS: finish(std::nullopt); break;
  case GST_MESSAGE_ERROR: {
    std::string what = describe_error(msg);
    GST_WARNING_OBJECT(pipeline_.get(), "pipeline error: %s", what.c_str());
    finish(Error(classify_error(msg), what));
    break;
  }
  case GST_MESSAGE_ELEMENT: {
    Progress p;
    if (parse_progress(msg, p) && on_progress_)
      on_progress_(p);
    const GstStructure *s = gst_message_get_structure(msg);
    if (s && (gst_structure_has_name(s, kSegmentClosed) || gst_structure_has_name(s, "splitmuxsink-fragment-closed")) &&
        on_segment_)
      on_segment_();
    // avwait (a clip of the input) drops everything after its end: once it has recorded and drops
    // again, the rest of the input is not decoded for nothing. EOS from the sources ends the clip.
    gboolean dropping = FALSE;
    if (s && gst_structure_has_name(s, "avwait-status") && gst_structure_get_boolean(s, "dropping", &dropping)) {
      std::string name = GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "";
      if (!dropping) {
        clips_recording_.insert(name);
      } else if (clips_recording_.count(name) && !eos_sent_ && pipeline_) {
        GST_INFO_OBJECT(pipeline_.get(), "%s reached the end of its clip: ending the input", name.c_str());
        eos_sent_ = true;
        gst_element_send_event(pipeline_.get(), gst_event_new_eos());
      }
    }
    break;
  }
  default: break;
  }
}

void Runner::stop_pipeline() {
  if (watch_id_) {
    g_source_remove(watch_id_);
    watch_id_ = 0;
  }
  if (pipeline_) {
    gst_element_set_state(pipeline_.get(), GST_STATE_NULL);
    pipeline_.reset();
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
  GstPtr<GstElement> pipeline = std::move(pipeline_);
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
    if (!*pd->alive || !pd->done)
      return;
    try { // (a GLib callback: nothing crosses it)
      pd->done(std::move(pd->err));
    } catch (const std::exception &e) {
      GST_ERROR("reporting the end of a failed run failed: %s", e.what());
    }
  };
  std::shared_ptr<GMainContext> context(g_main_context_ref_thread_default(), g_main_context_unref);
  post([pending, report] { report(pending, false); }, context.get(), kStopTimeoutS);
  std::thread([pipeline = std::move(pipeline), pending, report, context]() mutable {
    if (pipeline) {
      gst_element_set_state(pipeline.get(), GST_STATE_NULL);
      pipeline.reset();
    }
    post([pending, report] { report(pending, true); }, context.get());
  }).detach();
}

void Runner::cancel() {
  if (!finished_)
    finish(Error(ErrorCode::Canceled, "canceled"));
}

} // namespace sluice::jobs
