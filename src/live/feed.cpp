// SPDX-License-Identifier: LGPL-2.1-or-later
// The appsinks an ingest pipeline (an SRT listener, a pulled source) feeds its input with.
#include "live/engine_internal.h"

#include <gst/app/gstappsink.h>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

// How long the streams of a source that comes apart are waited for, in video.
constexpr GstClockTime kStreamsWait = 2 * GST_SECOND;

struct SinkCtx {
  std::shared_ptr<SinkFeed> feed;
  Via via;
  bool video;
};

GstFlowReturn on_new_sample(GstAppSink *sink, gpointer d) {
  auto *ctx = static_cast<SinkCtx *>(d);
  GstSample *sample = gst_app_sink_pull_sample(sink);
  if (!sample)
    return GST_FLOW_EOS;
  std::shared_ptr<Input> in;
  std::uint64_t claim = 0;
  bool audio = false;
  int pending = 0;
  {
    std::lock_guard<std::mutex> lock(ctx->feed->mutex);
    in = ctx->feed->input;
    claim = ctx->feed->claim;
    audio = ctx->feed->audio;
    pending = ctx->feed->pending;
  }
  if (in) {
    if (ctx->video) {
      // parsebin does not always say no-more-pads on a live input; tsdemux adds the streams of the PMT
      // together, before their first data: what is there at the first video sample is all there is. A source
      // whose streams come apart (RTSP) says when it has them all; it is not waited for long.
      std::lock_guard<std::mutex> lock(in->mutex);
      const bool waited = GST_CLOCK_TIME_IS_VALID(in->first_video) && GST_CLOCK_TIME_IS_VALID(in->last_video) &&
                          in->last_video >= in->first_video + kStreamsWait;
      if (in->via == ctx->via && in->claim == claim && !in->streams_known && (pending <= 0 || waited)) {
        in->streams_known = true;
        in->expects_audio = audio;
      }
    }
    in->on_sample(claim, sample, ctx->video);
  }
  gst_sample_unref(sample);
  return GST_FLOW_OK;
}

} // namespace

void link_parsed_pad(GstElement *parsebin, GstPad *pad, std::shared_ptr<SinkFeed> feed, Via via, const char *what) {
  g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
  if (!caps)
    caps = gst_pad_query_caps(pad, nullptr);
  const gchar *name =
      caps && gst_caps_get_size(caps) > 0 ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "";
  const bool is_video = g_str_has_prefix(name, "video/"), is_audio = g_str_has_prefix(name, "audio/");
  GstElement *sink = nullptr;
  {
    std::lock_guard<std::mutex> lock(feed->mutex);
    if ((is_video && !feed->video) || (is_audio && !feed->audio)) {
      (is_video ? feed->video : feed->audio) = true;
      sink = gst_element_factory_make("appsink", nullptr);
      g_object_set(sink, "sync", FALSE, "async", FALSE, nullptr);
      GstAppSinkCallbacks callbacks{};
      callbacks.new_sample = on_new_sample;
      gst_app_sink_set_callbacks(GST_APP_SINK(sink), &callbacks, new SinkCtx{feed, via, is_video},
                                 [](gpointer p) { delete static_cast<SinkCtx *>(p); });
    }
  }
  GST_INFO("%s: a %s stream%s", what, name, sink ? "" : " (not used)");
  if (!sink) {
    sink = gst_element_factory_make("fakesink", nullptr);
    g_object_set(sink, "sync", FALSE, "async", FALSE, nullptr);
  }
  g_autoptr(GstObject) bin = gst_object_get_parent(GST_OBJECT(parsebin));
  gst_bin_add(GST_BIN(bin), sink);
  gst_element_sync_state_with_parent(sink);
  g_autoptr(GstPad) sinkpad = gst_element_get_static_pad(sink, "sink");
  if (gst_pad_link(pad, sinkpad) != GST_PAD_LINK_OK)
    GST_WARNING("%s: cannot link a %s stream", what, name);
}

} // namespace sluice::live
