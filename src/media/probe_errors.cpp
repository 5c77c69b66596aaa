// SPDX-License-Identifier: LGPL-2.1-or-later
// The errors of a probe that decodebin2 throws away, kept by a tracer hook and posted again on the discoverer's bus.
#include "media/probe_internal.h"

#include "core/gobj.h"

#include <algorithm>

#define GST_CAT_DEFAULT sluice_probe_debug

// --- errors that decodebin2 throws away -------------------------------------------------------------------
// decodebin2 (GStreamer 1.22, still so upstream) filters the error messages of an element it tries from
// the moment it sets it to PAUSED until it has sent it its sticky events, and then drops what it
// filtered. A demuxer that reads in its own thread (qtdemux, pulling) starts reading at PAUSED: on a
// small file whose sample tables are damaged it fails within microseconds, sometimes inside that window.
// Its error is lost, it adds no pad, and GstDiscoverer waits for its whole timeout (20 s). A tracer hook
// sees every message an element posts before any bin does: the errors of the elements of a discoverer
// that is probing are kept, and one whose element is still in place a moment later, the discovery not
// finished, is posted again on the discoverer's own bus, where the discoverer ends with it.

struct SluiceProbeTracer {
  GstTracer parent;
};

struct SluiceProbeTracerClass {
  GstTracerClass parent_class;
};

GType sluice_probe_tracer_get_type();

G_DEFINE_TYPE(SluiceProbeTracer, sluice_probe_tracer, GST_TYPE_TRACER)

namespace sluice::media::detail {

namespace {

std::mutex g_watches_mutex;
std::vector<ErrorWatch *> g_watches;

// The outermost bin `o` is in (itself when in none); a new reference.
GstObject *top_of(GstObject *o) {
  gst_object_ref(o);
  while (GstObject *parent = gst_object_get_parent(o)) {
    gst_object_unref(o);
    o = parent;
  }
  return o;
}

void on_post_message(GObject *, GstClockTime, GstElement *element, GstMessage *msg) {
  if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ERROR || !element)
    return;
  std::lock_guard lock(g_watches_mutex);
  if (g_watches.empty())
    return;
  GstPtr<GstObject> top(top_of(GST_OBJECT(element)));
  for (ErrorWatch *w : g_watches)
    if (w->pipeline == top.get()) {
      std::lock_guard wl(w->m);
      w->errors.push_back(gst_message_ref(msg));
      w->cv.notify_all();
    }
}

} // namespace
} // namespace sluice::media::detail

static void sluice_probe_tracer_class_init(SluiceProbeTracerClass *) {}

static void sluice_probe_tracer_init(SluiceProbeTracer *self) {
  gst_tracing_register_hook(GST_TRACER(self), "element-post-message-pre",
                            G_CALLBACK(sluice::media::detail::on_post_message));
}

namespace sluice::media::detail {

LostErrors::LostErrors() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Lives as long as the process: its hook stays registered.
    g_object_new(sluice_probe_tracer_get_type(), nullptr);
  });
}

void LostErrors::stop() {
  {
    std::lock_guard lock(g_watches_mutex);
    g_watches.erase(std::remove(g_watches.begin(), g_watches.end(), &watch_), g_watches.end());
  }
  {
    std::lock_guard wl(watch_.m);
    watch_.done = true;
    watch_.cv.notify_all();
  }
  if (thread_.joinable())
    thread_.join();
  for (GstMessage *m : watch_.errors)
    gst_message_unref(m);
  watch_.errors.clear();
}

void LostErrors::start(GstObject *source) {
  if (watch_.pipeline)
    return;
  GstPtr<GstObject> top(top_of(source));
  watch_.pipeline = top.get(); // the discoverer keeps it
  {
    std::lock_guard lock(g_watches_mutex);
    g_watches.push_back(&watch_);
  }
  thread_ = std::thread([this] { run(); });
}

void LostErrors::run() {
  while (true) {
    std::vector<GstMessage *> errors;
    {
      std::unique_lock lk(watch_.m);
      watch_.cv.wait(lk, [&] { return watch_.done || !watch_.errors.empty(); });
      if (watch_.done || watch_.cv.wait_for(lk, kGrace, [&] { return watch_.done; }))
        return;
      errors.swap(watch_.errors);
    }
    g_autoptr(GstMessage) lost = nullptr;
    for (GstMessage *m : errors) {
      GstPtr<GstObject> top(top_of(GST_MESSAGE_SRC(m)));
      if (!lost && top.get() == watch_.pipeline)
        lost = gst_message_ref(m);
      gst_message_unref(m);
    }
    if (lost) {
      GST_INFO_OBJECT(GST_MESSAGE_SRC(lost), "posting again an error no bin passed on");
      g_autoptr(GstBus) bus = gst_element_get_bus(GST_ELEMENT(watch_.pipeline));
      gst_bus_post(bus, gst_message_copy(lost));
      return;
    }
  }
}

} // namespace sluice::media::detail
