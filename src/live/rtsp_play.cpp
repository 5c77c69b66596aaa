// SPDX-License-Identifier: LGPL-2.1-or-later
// RTSP playback: ready videos on /videos/ID (their source remuxed) and live streams on /live/ID (restreamed).
#include "app/service.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "live/engine.h"
#include "live/engine_internal.h"

#include <gst/app/gstappsrc.h>
#include <json-glib/json-glib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <sstream>

#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

// One RTSP viewer media of a live stream: its appsrcs (video, and audio when the input has audio RTSP carries) and
// how the input's timestamps move onto its timeline.
struct Viewer {
  GstElement *src = nullptr, *asrc = nullptr; // refs
  bool started = false;                       // a video keyframe went in: audio goes in too from now on
  std::int64_t offset = 0;
  GstCaps *caps = nullptr, *acaps = nullptr; // what the appsrcs were told (refs)
  ~Viewer() {
    gst_caps_replace(&caps, nullptr);
    gst_caps_replace(&acaps, nullptr);
    for (GstElement *e : {src, asrc})
      if (e)
        gst_object_unref(e);
  }
};

namespace {

// The paths it serves, spelled by app/streams.h (video_path, live_path).
const std::string kVideos = "/" + app::video_path("");
const std::string kLive = "/" + app::live_path("");
// How long an RTSP thread waits for the main loop to look a video up.
constexpr auto kLookupWait = std::chrono::seconds(10);

// The id in a path under one of those prefixes ("" when the path is under neither).
std::string id_in(const char *path, const std::string &prefix) {
  if (!path || !g_str_has_prefix(path, prefix.c_str()))
    return "";
  std::string id(path + prefix.size());
  if (id.empty() || id.size() > 64 || id.find('/') != std::string::npos)
    return "";
  return id;
}

std::string token_in(const char *query) {
  if (!query)
    return "";
  g_auto(GStrv) parts = g_strsplit(query, "&", -1);
  for (char **p = parts; *p; p++)
    if (g_str_has_prefix(*p, "token=")) {
      g_autofree char *t = g_uri_unescape_string(*p + 6, nullptr);
      return t ? t : "";
    }
  return "";
}

// Asks the main loop about a video (an RTSP thread waits for the answer).
VodAnswer lookup(const std::shared_ptr<Core> &core, const std::string &id, const std::string &token) {
  if (!core || !core->vod)
    return {};
  struct Wait {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    VodAnswer answer;
  };
  auto w = std::make_shared<Wait>();
  post([w, core, id, token] {
    VodAnswer a;
    try { // a GLib callback: nothing crosses it
      a = core->vod(id, token);
    } catch (const std::exception &e) {
      GST_WARNING("video %s: %s", id.c_str(), e.what());
      a.status = 503;
    }
    std::lock_guard<std::mutex> lock(w->mutex);
    w->answer = a;
    w->done = true;
    w->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(w->mutex);
  if (!w->cv.wait_for(lock, kLookupWait, [&w] { return w->done; }))
    return VodAnswer{503, "", "", ""};
  return w->answer;
}

GstRTSPStatusCode status_of(int status) {
  switch (status) {
  case 200: return GST_RTSP_STS_OK;
  case 401: return GST_RTSP_STS_UNAUTHORIZED;
  case 403: return GST_RTSP_STS_FORBIDDEN;
  case 404: return GST_RTSP_STS_NOT_FOUND;
  default: return GST_RTSP_STS_SERVICE_UNAVAILABLE;
  }
}

// ---- /videos/ID: the source file remuxed, no re-encode ----

// The parser and payloader of a media type ("" when there is none).
std::string video_branch(const std::string &caps) {
  if (caps == "video/x-h264")
    return "h264parse config-interval=-1 ! queue ! rtph264pay config-interval=0 pt=96";
  if (caps == "video/x-h265")
    return "h265parse config-interval=-1 ! queue ! rtph265pay config-interval=0 pt=96";
  if (caps == "video/x-vp8")
    return "queue ! rtpvp8pay pt=96";
  if (caps == "video/x-vp9")
    return "queue ! rtpvp9pay pt=96";
  return "";
}

std::string audio_branch(const std::string &caps) {
  // (AAC and MP3 are both audio/mpeg: serve_videos tells them apart.)
  if (caps == "audio/aac")
    return "aacparse ! queue ! rtpmp4apay pt=97";
  if (caps == "audio/x-opus")
    return "opusparse ! queue ! rtpopuspay pt=97";
  if (caps == "audio/mp3")
    return "mpegaudioparse ! queue ! rtpmpapay pt=97";
  return "";
}

struct SluiceVodFactory {
  GstRTSPMediaFactory parent;
  std::weak_ptr<Core> *core;
};
struct SluiceVodFactoryClass {
  GstRTSPMediaFactoryClass parent_class;
};

G_DEFINE_TYPE(SluiceVodFactory, sluice_vod_factory, GST_TYPE_RTSP_MEDIA_FACTORY)

GstElement *vod_create_element(GstRTSPMediaFactory *factory, const GstRTSPUrl *url) {
  auto *self = reinterpret_cast<SluiceVodFactory *>(factory);
  const std::string id = id_in(url->abspath, kVideos);
  if (id.empty())
    return nullptr;
  const VodAnswer a = lookup(self->core->lock(), id, token_in(url->query));
  if (a.status != 200)
    return nullptr;
  const std::string v = video_branch(a.video), s = audio_branch(a.audio);
  if (v.empty() && s.empty()) {
    GST_INFO("video %s: no stream that RTSP carries (%s, %s)", id.c_str(), a.video.c_str(), a.audio.c_str());
    return nullptr;
  }
  g_autofree char *location = g_strescape(a.file.c_str(), nullptr);
  std::ostringstream launch;
  launch << "filesrc location=\"" << location << "\" ! parsebin name=d ";
  int n = 0;
  if (!v.empty())
    launch << " d. ! " << v << " name=pay" << n++;
  if (!s.empty())
    launch << " d. ! " << s << " name=pay" << n++;
  g_autoptr(GError) err = nullptr;
  GstElement *bin = gst_parse_launch_full(launch.str().c_str(), nullptr, GST_PARSE_FLAG_PLACE_IN_BIN, &err);
  if (err) {
    GST_WARNING("video %s: %s", id.c_str(), err->message);
    if (bin)
      gst_object_unref(bin);
    return nullptr;
  }
  GST_INFO("video %s: played over RTSP", id.c_str());
  return bin;
}

void sluice_vod_factory_finalize(GObject *obj) {
  delete reinterpret_cast<SluiceVodFactory *>(obj)->core;
  G_OBJECT_CLASS(sluice_vod_factory_parent_class)->finalize(obj);
}

void sluice_vod_factory_class_init(SluiceVodFactoryClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_vod_factory_finalize;
  GST_RTSP_MEDIA_FACTORY_CLASS(klass)->create_element = vod_create_element;
}

void sluice_vod_factory_init(SluiceVodFactory *self) {
  self->core = nullptr;
}

// ---- /live/ID: the publisher's video, fanned out to a shared media ----

struct SluiceRestreamFactory {
  GstRTSPMediaFactory parent;
  std::weak_ptr<Core> *core;
};
struct SluiceRestreamFactoryClass {
  GstRTSPMediaFactoryClass parent_class;
};

G_DEFINE_TYPE(SluiceRestreamFactory, sluice_restream_factory, GST_TYPE_RTSP_MEDIA_FACTORY)

// The parser and payloader that restream the input's audio as it is ("" when RTSP viewers cannot get it so).
std::string restream_audio(const GstCaps *caps) {
  if (!caps || gst_caps_get_size(caps) == 0)
    return "";
  const GstStructure *s = gst_caps_get_structure(caps, 0);
  const std::string name = gst_structure_get_name(s);
  int version = 0, layer = 0;
  if (name == "audio/mpeg" && gst_structure_get_int(s, "mpegversion", &version) && (version == 2 || version == 4))
    return "aacparse ! rtpmp4gpay"; // AAC (ADTS from MPEG-TS, raw from RTP): the payloader takes it raw
  if (name == "audio/mpeg" && version == 1 && (!gst_structure_get_int(s, "layer", &layer) || layer == 3))
    return "mpegaudioparse ! rtpmpapay";
  if (name == "audio/x-opus")
    return "opusparse ! rtpopuspay";
  return "";
}

// The live input of a stream with a publisher whose video is known, or nullptr; the media type of its video and
// how its audio is restreamed ("" when it has none, or none yet, or none RTSP carries).
std::shared_ptr<Input> live_input(const std::shared_ptr<Core> &core, const std::string &id, std::string *video,
                                  std::string *audio = nullptr) {
  auto in = core && !id.empty() ? core->find_id(id) : nullptr;
  if (!in)
    return nullptr;
  std::lock_guard<std::mutex> lock(in->mutex);
  if (in->removed || in->via == Via::None || !in->vcaps)
    return nullptr;
  if (video)
    *video = gst_structure_get_name(gst_caps_get_structure(in->vcaps, 0));
  if (audio)
    *audio = restream_audio(in->acaps);
  return in;
}

GstElement *restream_create_element(GstRTSPMediaFactory *factory, const GstRTSPUrl *url) {
  auto *self = reinterpret_cast<SluiceRestreamFactory *>(factory);
  std::string video, audio;
  if (!live_input(self->core->lock(), id_in(url->abspath, kLive), &video, &audio))
    return nullptr;
  std::string pay;
  if (video == "video/x-h264")
    pay = "h264parse config-interval=-1 ! rtph264pay config-interval=0";
  else if (video == "video/x-h265")
    pay = "h265parse config-interval=-1 ! rtph265pay config-interval=0";
  else
    return nullptr;
  // The input's audio as it came (no re-encode), when it is known by now (a media is shared: viewers who come
  // later get what the first one got).
  std::string launch =
      "appsrc name=vsrc is-live=true format=time do-timestamp=false max-bytes=4000000 ! " + pay + " name=pay0 pt=96";
  if (!audio.empty())
    launch += " appsrc name=asrc is-live=true format=time do-timestamp=false max-bytes=1000000 ! " + audio +
              " name=pay1 pt=97";
  g_autoptr(GError) err = nullptr;
  GstElement *bin = gst_parse_launch_full(launch.c_str(), nullptr, GST_PARSE_FLAG_PLACE_IN_BIN, &err);
  if (err) {
    GST_WARNING("restream: %s", err->message);
    if (bin)
      gst_object_unref(bin);
    return nullptr;
  }
  return bin;
}

void sluice_restream_factory_finalize(GObject *obj) {
  delete reinterpret_cast<SluiceRestreamFactory *>(obj)->core;
  G_OBJECT_CLASS(sluice_restream_factory_parent_class)->finalize(obj);
}

void sluice_restream_factory_class_init(SluiceRestreamFactoryClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_restream_factory_finalize;
  GST_RTSP_MEDIA_FACTORY_CLASS(klass)->create_element = restream_create_element;
}

void sluice_restream_factory_init(SluiceRestreamFactory *self) {
  self->core = nullptr;
}

struct ViewerRef {
  std::weak_ptr<Input> input;
  std::shared_ptr<Viewer> viewer;
};

void on_viewer_unprepared(GstRTSPMedia *, gpointer data) {
  auto *r = static_cast<ViewerRef *>(data);
  if (auto in = r->input.lock()) {
    std::lock_guard<std::mutex> lock(in->mutex);
    in->viewers.erase(std::remove(in->viewers.begin(), in->viewers.end(), r->viewer), in->viewers.end());
  }
}

void on_restream_configure(GstRTSPMediaFactory *factory, GstRTSPMedia *media, gpointer) {
  auto *self = reinterpret_cast<SluiceRestreamFactory *>(factory);
  auto core = self->core->lock();
  GstElement *element = gst_rtsp_media_get_element(media);
  GstElement *src = element ? gst_bin_get_by_name(GST_BIN(element), "vsrc") : nullptr;
  GstElement *asrc = element ? gst_bin_get_by_name(GST_BIN(element), "asrc") : nullptr;
  if (element)
    gst_object_unref(element);
  if (!src) {
    if (asrc)
      gst_object_unref(asrc);
    return;
  }
  auto viewer = std::make_shared<Viewer>();
  viewer->src = src;
  viewer->asrc = asrc;
  std::shared_ptr<Input> in;
  GstRTSPContext *ctx = gst_rtsp_context_get_current();
  const std::string id = ctx && ctx->uri ? id_in(ctx->uri->abspath, kLive) : "";
  in = live_input(core, id, nullptr);
  if (!in) {
    // Gone in between: the media ends at once.
    gst_app_src_end_of_stream(GST_APP_SRC(src));
    if (asrc)
      gst_app_src_end_of_stream(GST_APP_SRC(asrc));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(in->mutex);
    in->viewers.push_back(viewer);
  }
  GST_INFO("stream %s: a restream media for RTSP viewers", in->id.c_str());
  g_signal_connect_data(
      media, "unprepared", G_CALLBACK(on_viewer_unprepared), new ViewerRef{in, viewer},
      [](gpointer d, GClosure *) { delete static_cast<ViewerRef *>(d); }, GConnectFlags(0));
}

// ---- who may DESCRIBE and SETUP what ----

GstRTSPStatusCode check_request(GstRTSPContext *ctx, const std::weak_ptr<Core> &weak) {
  if (!ctx || !ctx->uri)
    return GST_RTSP_STS_OK;
  const char *path = ctx->uri->abspath;
  if (std::string id = id_in(path, kVideos); !id.empty())
    return status_of(lookup(weak.lock(), id, token_in(ctx->uri->query)).status);
  if (std::string id = id_in(path, kLive); !id.empty() && !app::is_stream_key(id)) {
    if (!live_input(weak.lock(), id, nullptr))
      return GST_RTSP_STS_NOT_FOUND; // not live now
  }
  return GST_RTSP_STS_OK;
}

GstRTSPStatusCode on_pre_describe(GstRTSPClient *, GstRTSPContext *ctx, gpointer data) {
  return check_request(ctx, *static_cast<std::weak_ptr<Core> *>(data));
}

void on_client_connected(GstRTSPServer *, GstRTSPClient *client, gpointer data) {
  auto *core = static_cast<std::weak_ptr<Core> *>(data);
  g_signal_connect_data(
      client, "pre-describe-request", G_CALLBACK(on_pre_describe), new std::weak_ptr<Core>(*core),
      [](gpointer d, GClosure *) { delete static_cast<std::weak_ptr<Core> *>(d); }, GConnectFlags(0));
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------

void play_start(GstRTSPServer *server, const std::weak_ptr<Core> &core) {
  g_signal_connect_data(
      server, "client-connected", G_CALLBACK(on_client_connected), new std::weak_ptr<Core>(core),
      [](gpointer d, GClosure *) { delete static_cast<std::weak_ptr<Core> *>(d); }, GConnectFlags(0));
}

void play_mount(GstRTSPMountPoints *mounts, const std::shared_ptr<Core> &core, gchar **path_io) {
  const char *path = *path_io;
  if (!id_in(path, kVideos).empty() || (!id_in(path, kLive).empty() && !app::is_stream_key(id_in(path, kLive)))) {
    // These paths only play: a publisher there finds nothing (404), as it did before viewers came.
    GstRTSPContext *ctx = gst_rtsp_context_get_current();
    if (ctx && ctx->request && ctx->request->type == GST_RTSP_MESSAGE_REQUEST &&
        (ctx->request->type_data.request.method == GST_RTSP_ANNOUNCE ||
         ctx->request->type_data.request.method == GST_RTSP_RECORD)) {
      g_free(*path_io);
      *path_io = g_strdup("/-");
      return;
    }
  }
  // Each video and stream played gets its own exact mount (a prefix mount would break SETUP's control URLs),
  // only for what exists: a video's id is 16 hex digits, a stream's is one the engine runs.
  {
    // Mounted once.
    gint matched = 0;
    GstRTSPMediaFactory *had = gst_rtsp_mount_points_match(mounts, path, &matched);
    if (had) {
      g_object_unref(had);
      if (static_cast<std::size_t>(matched) == std::strlen(path))
        return;
    }
  }
  GstRTSPMediaFactory *factory = nullptr;
  if (std::string id = id_in(path, kVideos); !id.empty()) {
    if (id.size() != 16 || !std::all_of(id.begin(), id.end(), [](char c) { return g_ascii_isxdigit(c); }) ||
        lookup(core, id, "").status == 404)
      return;
    auto *f = static_cast<SluiceVodFactory *>(g_object_new(sluice_vod_factory_get_type(), nullptr));
    f->core = new std::weak_ptr<Core>(core);
    factory = GST_RTSP_MEDIA_FACTORY(f);
    gst_rtsp_media_factory_set_shared(factory, FALSE);
  } else if (std::string sid = id_in(path, kLive); !sid.empty() && !app::is_stream_key(sid)) {
    if (!core->find_id(sid))
      return;
    auto *f = static_cast<SluiceRestreamFactory *>(g_object_new(sluice_restream_factory_get_type(), nullptr));
    f->core = new std::weak_ptr<Core>(core);
    factory = GST_RTSP_MEDIA_FACTORY(f);
    // One media for every viewer of the stream.
    gst_rtsp_media_factory_set_shared(factory, TRUE);
    gst_rtsp_media_factory_set_latency(factory, 0);
    g_signal_connect(factory, "media-configure", G_CALLBACK(on_restream_configure), nullptr);
  } else {
    return;
  }
  gst_rtsp_media_factory_set_transport_mode(factory, GST_RTSP_TRANSPORT_MODE_PLAY);
  gst_rtsp_mount_points_add_factory(mounts, path, factory); // (two requests at once: the later one replaces it)
}

std::shared_ptr<Input> Core::find_id(const std::string &id) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto &[hash, in] : by_hash_)
    if (in->id == id)
      return in;
  return nullptr;
}

void Input::feed_viewers_locked(GstBuffer *buf, GstCaps *caps, GstClockTime pts, GstClockTime dts, bool video) {
  if (viewers.empty())
    return;
  for (auto &v : viewers) {
    if (!video) {
      // Audio follows the video's first keyframe, on the same timeline.
      if (!v->asrc || !v->started || !GST_CLOCK_TIME_IS_VALID(pts))
        continue;
      const std::int64_t t = static_cast<std::int64_t>(pts) + v->offset;
      if (t < 0)
        continue;
      if (caps && (!v->acaps || !gst_caps_is_equal(v->acaps, caps))) {
        gst_caps_replace(&v->acaps, caps);
        gst_app_src_set_caps(GST_APP_SRC(v->asrc), caps);
      }
      GstBuffer *out = gst_buffer_copy(buf); // the memory is shared, not copied
      GST_BUFFER_PTS(out) = static_cast<GstClockTime>(t);
      GST_BUFFER_DTS(out) = GST_CLOCK_TIME_NONE;
      gst_app_src_push_buffer(GST_APP_SRC(v->asrc), out);
      continue;
    }
    if (!v->started) {
      // A viewer's media begins with a keyframe, on its clock's time now.
      if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT))
        continue;
      GstClockTime first = GST_CLOCK_TIME_IS_VALID(dts) ? dts : pts;
      if (GST_CLOCK_TIME_IS_VALID(pts) && GST_CLOCK_TIME_IS_VALID(dts))
        first = std::min(pts, dts);
      if (!GST_CLOCK_TIME_IS_VALID(first))
        continue;
      GstClockTime now = 0;
      if (GstClock *clock = gst_element_get_clock(v->src)) {
        const GstClockTime abs = gst_clock_get_time(clock);
        const GstClockTime base = gst_element_get_base_time(v->src);
        now = abs > base ? abs - base : 0;
        gst_object_unref(clock);
      }
      v->offset = static_cast<std::int64_t>(now) - static_cast<std::int64_t>(first);
      v->started = true;
    }
    auto moved = [&v](GstClockTime t) {
      if (!GST_CLOCK_TIME_IS_VALID(t))
        return GST_CLOCK_TIME_NONE;
      const std::int64_t x = static_cast<std::int64_t>(t) + v->offset;
      return x < 0 ? GST_CLOCK_TIME_NONE : static_cast<GstClockTime>(x);
    };
    if (caps && (!v->caps || !gst_caps_is_equal(v->caps, caps))) {
      gst_caps_replace(&v->caps, caps);
      gst_app_src_set_caps(GST_APP_SRC(v->src), caps);
    }
    GstBuffer *out = gst_buffer_copy(buf); // the memory is shared, not copied
    GST_BUFFER_PTS(out) = moved(pts);
    GST_BUFFER_DTS(out) = moved(dts);
    gst_app_src_push_buffer(GST_APP_SRC(v->src), out);
  }
}

void Input::end_viewers_locked() {
  // The publisher left: every viewer's media ends (they hear of it as the end of the stream).
  for (auto &v : viewers)
    for (GstElement *e : {v->src, v->asrc})
      if (e)
        gst_app_src_end_of_stream(GST_APP_SRC(e));
  viewers.clear();
}

void Engine::serve_videos(app::Service &service) {
  const std::string data_dir = config_.data_dir;
  core_->vod = [&service, data_dir](const std::string &id, const std::string &token) {
    VodAnswer a;
    auto view = service.video(id);
    if (!view)
      return a;
    switch (service.playback(id, token)) {
    case app::Playback::NoVideo: return a;
    case app::Playback::Forbidden: a.status = token.empty() ? 401 : 403; return a;
    default: break;
    }
    if (view->state != "ready" || view->video.source.empty())
      return a; // 404: not ready
    g_autoptr(JsonParser) parser = json_parser_new();
    if (json_parser_load_from_data(parser, view->video.probe_json.c_str(), -1, nullptr)) {
      JsonNode *root = json_parser_get_root(parser);
      JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
      for (auto [name, out] : {std::pair{"video", &a.video}, std::pair{"audio", &a.audio}}) {
        JsonNode *n = o && json_object_has_member(o, name) ? json_object_get_member(o, name) : nullptr;
        if (n && JSON_NODE_HOLDS_OBJECT(n)) {
          JsonObject *s = json_node_get_object(n);
          if (json_object_has_member(s, "caps"))
            *out = json_object_get_string_member(s, "caps");
          const char *codec = json_object_has_member(s, "codec") ? json_object_get_string_member(s, "codec") : "";
          if (*out == "audio/mpeg")
            *out = codec && std::strstr(codec, "AAC")   ? "audio/aac"
                   : codec && std::strstr(codec, "MP3") ? "audio/mp3"
                                                        : "";
        }
      }
    }
    a.file = fs::join(data_dir, view->video.source);
    a.status = 200;
    return a;
  };
}

} // namespace sluice::live
