// SPDX-License-Identifier: LGPL-2.1-or-later
// A job's hlssink2 run as mpegtsmux ! appsink: segments cut at the keyframes and listed as soon as they are complete.
#include "jobs/hls_cuts.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/gobj.h"
#include "media/hls.h"
#include "media/ts.h"

#include <gst/app/gstappsink.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(sluice_hls_cuts_debug);
#define GST_CAT_DEFAULT sluice_hls_cuts_debug

namespace sluice::jobs {

std::string segment_location(const std::string &pattern, int index) {
  std::string out;
  int conversions = 0;
  for (std::size_t i = 0; i < pattern.size(); i++) {
    if (pattern[i] != '%') {
      out += pattern[i];
      continue;
    }
    if (i + 1 < pattern.size() && pattern[i + 1] == '%') {
      out += '%';
      i++;
      continue;
    }
    // %[0][width]d, the conversions hlssink2's locations use.
    std::size_t j = i + 1;
    const bool zero = j < pattern.size() && pattern[j] == '0';
    if (zero)
      j++;
    int width = 0;
    for (; j < pattern.size() && g_ascii_isdigit(pattern[j]) && width < 100; j++)
      width = width * 10 + (pattern[j] - '0');
    if (j >= pattern.size() || pattern[j] != 'd' || width >= 100 || ++conversions > 1)
      throw Error(ErrorCode::Invalid, "segment location '" + pattern + "' must hold one %d conversion and no other");
    std::string n = std::to_string(index);
    if (static_cast<int>(n.size()) < width)
      n.insert(0, static_cast<std::size_t>(width) - n.size(), zero ? '0' : ' ');
    out += n;
    i = j;
  }
  if (conversions != 1)
    throw Error(ErrorCode::Invalid, "segment location '" + pattern + "' must hold one %d conversion");
  return out;
}

namespace {

void init_debug() {
  static std::once_flag once;
  std::call_once(once, [] {
    GST_DEBUG_CATEGORY_INIT(sluice_hls_cuts_debug, "sluice-hls-cuts", 0, "sluice HLS segments of jobs");
  });
}

// One rendition: its muxer's bytes cut into segments, written with its media playlist. Only the appsink's streaming
// thread touches it.
struct Rendition {
  std::string name;     // the sink's
  std::string location; // hlssink2's segment pattern
  std::string playlist; // hlssink2's playlist-location
  media::TsCutter cutter;
  media::MediaPlaylist pl;
  GstPtr<GstPad> video; // the muxer's video pad (its caps give the frame rate)
  bool broken = false;
};

// Written through a temporary name and renamed: a reader sees no half segment.
void write_file(const std::string &path, const std::string &bytes) {
  g_autoptr(GError) err = nullptr;
  if (!g_file_set_contents_full(path.c_str(), bytes.data(), static_cast<gssize>(bytes.size()),
                                G_FILE_SET_CONTENTS_CONSISTENT, 0644, &err))
    throw Error::from_gerror(ErrorCode::Io, "cannot write " + path, g_steal_pointer(&err));
}

// A frame's duration in 90 kHz ticks, from the video's caps; 0 when they do not say.
std::int64_t frame_ticks(GstPad *pad) {
  if (!pad)
    return 0;
  g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
  gint n = 0, d = 0;
  if (!caps || gst_caps_get_size(caps) == 0 ||
      !gst_structure_get_fraction(gst_caps_get_structure(caps, 0), "framerate", &n, &d) || n <= 0 || d <= 0)
    return 0;
  return static_cast<std::int64_t>(std::llround(90000.0 * d / n));
}

void take(Rendition &r, GstElement *sink, std::vector<media::TsSegment> segments, std::int64_t last_frame) {
  for (auto &s : segments) {
    if (s.first_pts < 0)
      continue;
    // Up to the next segment's first frame; the last one up to its last frame's end.
    const std::int64_t end = s.next_pts >= 0 ? s.next_pts : s.last_pts + last_frame;
    const double duration = static_cast<double>(end - s.first_pts) / 90000;
    if (duration <= 0)
      continue;
    const int index = static_cast<int>(r.pl.segments.size());
    const std::string path = segment_location(r.location, index);
    write_file(path, s.bytes);
    const auto slash = path.rfind('/');
    media::Segment seg;
    seg.uri = slash == std::string::npos ? path : path.substr(slash + 1);
    seg.duration = duration;
    r.pl.segments.push_back(std::move(seg));
    write_file(r.playlist, media::write_media_playlist(r.pl, "EVENT"));
    GST_DEBUG_OBJECT(sink, "%s: segment %d (%.3f s) written", r.name.c_str(), index, duration);
    GstStructure *st =
        gst_structure_new(kSegmentClosed, "location", G_TYPE_STRING, path.c_str(), "playlist", G_TYPE_STRING,
                          r.playlist.c_str(), "index", G_TYPE_INT, index, "duration", G_TYPE_DOUBLE, duration, nullptr);
    gst_element_post_message(sink, gst_message_new_element(GST_OBJECT(sink), st));
  }
}

// A streaming thread: nothing may be thrown from the callbacks. A rendition that fails stops being cut, and the
// pipeline is told, which fails the job.
void fail(Rendition &r, GstElement *sink, const std::exception &e) {
  r.broken = true;
  GST_ELEMENT_ERROR(sink, RESOURCE, WRITE, ("cannot write the HLS segments of %s", r.name.c_str()), ("%s", e.what()));
}

GstFlowReturn on_sample(GstAppSink *sink, gpointer data) {
  auto &r = *static_cast<Rendition *>(data);
  GstSample *sample = gst_app_sink_pull_sample(sink);
  if (!sample)
    return GST_FLOW_EOS;
  GstFlowReturn ret = GST_FLOW_OK;
  GstBuffer *buf = gst_sample_get_buffer(sample);
  GstMapInfo map;
  if (!r.broken && buf && gst_buffer_map(buf, &map, GST_MAP_READ)) {
    try {
      take(r, GST_ELEMENT(sink), r.cutter.push(map.data, map.size), 0);
    } catch (const std::exception &e) {
      fail(r, GST_ELEMENT(sink), e);
      ret = GST_FLOW_ERROR;
    }
    gst_buffer_unmap(buf, &map);
  }
  gst_sample_unref(sample);
  return ret;
}

// The end: the open segment, whose duration ends with its last frame's.
void on_eos(GstAppSink *sink, gpointer data) {
  auto &r = *static_cast<Rendition *>(data);
  if (r.broken)
    return;
  try {
    take(r, GST_ELEMENT(sink), r.cutter.finish(), frame_ticks(r.video.get()));
  } catch (const std::exception &e) {
    fail(r, GST_ELEMENT(sink), e);
  }
}

struct Feed {
  GstPtr<GstPad> src; // the upstream pad
  GstPtr<GstPad> pad; // hlssink2's request pad it is linked to
  bool video = false;
};

GstElement *make(const char *factory, const std::string &name) {
  GstElement *e = gst_element_factory_make(factory, name.c_str());
  if (!e)
    throw Error(ErrorCode::Pipeline, std::string("the GStreamer element '") + factory + "' is missing");
  return e;
}

// Returns false when the sink takes no video (left as it is).
bool replace(GstElement *hls) {
  GstPtr<GstObject> parent(gst_object_get_parent(GST_OBJECT(hls)));
  if (!parent || !GST_IS_BIN(parent.get()))
    return false;
  g_autofree gchar *location = nullptr, *playlist = nullptr;
  guint target = 0;
  g_object_get(hls, "location", &location, "playlist-location", &playlist, "target-duration", &target, nullptr);
  const std::string name = GST_OBJECT_NAME(hls);
  if (!location || !playlist || target == 0)
    throw Error(ErrorCode::Pipeline, "the hlssink2 '" + name + "' has no location, playlist or target duration");
  segment_location(location, 0); // a pattern it can number

  std::vector<Feed> feeds;
  bool video = false;
  {
    g_autoptr(GstIterator) pads = gst_element_iterate_sink_pads(hls);
    g_auto(GValue) item = G_VALUE_INIT;
    while (gst_iterator_next(pads, &item) == GST_ITERATOR_OK) {
      auto *pad = GST_PAD(g_value_get_object(&item));
      Feed f;
      f.src.reset(gst_pad_get_peer(pad));
      f.pad.reset(GST_PAD(gst_object_ref(pad)));
      GstPadTemplate *templ = GST_PAD_PAD_TEMPLATE(pad);
      f.video = templ && g_str_equal(GST_PAD_TEMPLATE_NAME_TEMPLATE(templ), "video");
      video = video || (f.video && f.src);
      if (f.src)
        feeds.push_back(std::move(f));
      g_value_reset(&item);
    }
  }
  if (!video)
    return false;

  GstBin *bin = GST_BIN(parent.get());
  GstPtr<GstElement> keep(GST_ELEMENT(gst_object_ref(hls)));
  for (auto &f : feeds) {
    gst_pad_unlink(f.src.get(), f.pad.get());
    gst_element_release_request_pad(hls, f.pad.get());
  }
  gst_element_set_state(hls, GST_STATE_NULL);
  gst_bin_remove(bin, hls);
  keep.reset();

  GstElement *mux = make("mpegtsmux", name);
  GstElement *app = make("appsink", name + "_segments");
  gst_bin_add_many(bin, mux, app, nullptr);
  if (!gst_element_link(mux, app))
    throw Error(ErrorCode::Pipeline, "cannot link the muxer of '" + name + "' to its appsink");
  auto r = std::make_unique<Rendition>();
  r->name = name;
  r->location = location;
  r->playlist = playlist;
  r->pl.target_duration = static_cast<int>(target);
  r->cutter.set_min_duration(static_cast<std::int64_t>(target) * 90000 / 2);
  for (auto &f : feeds) {
    GstPad *sink_pad = gst_element_request_pad_simple(mux, "sink_%d");
    if (!sink_pad)
      throw Error(ErrorCode::Pipeline, "mpegtsmux '" + name + "' gives no sink pad");
    GstPtr<GstPad> held(sink_pad);
    if (gst_pad_link(f.src.get(), sink_pad) != GST_PAD_LINK_OK)
      throw Error(ErrorCode::Pipeline, "cannot link a branch to the muxer of '" + name + "'");
    if (f.video && !r->video)
      r->video = std::move(held);
  }
  g_object_set(app, "sync", FALSE, "max-buffers", 0u, "drop", FALSE, "enable-last-sample", FALSE, nullptr);
  GstAppSinkCallbacks cb = {};
  cb.new_sample = &on_sample;
  cb.eos = &on_eos;
  gst_app_sink_set_callbacks(GST_APP_SINK(app), &cb, r.release(),
                             [](gpointer d) { delete static_cast<Rendition *>(d); });
  GST_INFO_OBJECT(mux, "%s: segments cut at its keyframes into %s, listed in %s", name.c_str(), location, playlist);
  return true;
}

} // namespace

int cut_hls_sinks(GstElement *pipeline) {
  init_debug();
  std::vector<GstPtr<GstElement>> found;
  {
    g_autoptr(GstIterator) it = gst_bin_iterate_recurse(GST_BIN(pipeline));
    g_auto(GValue) item = G_VALUE_INIT;
    while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
      auto *el = GST_ELEMENT(g_value_get_object(&item));
      GstElementFactory *f = gst_element_get_factory(el);
      if (f && g_str_equal(GST_OBJECT_NAME(f), "hlssink2"))
        found.emplace_back(GST_ELEMENT(gst_object_ref(el)));
      g_value_reset(&item);
    }
  }
  int replaced = 0;
  for (auto &e : found)
    replaced += replace(e.get()) ? 1 : 0;
  return replaced;
}

} // namespace sluice::jobs
