// SPDX-License-Identifier: LGPL-2.1-or-later
// RTSP publishing: gst-rtsp-server takes ANNOUNCE/RECORD on /live/KEY; the samples go to the stream's Input.
#include "live/engine_internal.h"

#include <gst/app/gstappsink.h>
#include <gst/sdp/gstsdpmessage.h>

#include <cstring>
#include <sstream>

#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

constexpr const char *kInputKey = "sluice-input";         // on a factory and its media: std::weak_ptr<Input>
constexpr const char *kAudioKey = "sluice-audio";         // on a media: whether its SDP has audio
constexpr const char *kPublishesKey = "sluice-publishes"; // on a client: what it publishes

struct Publishes {
  std::weak_ptr<Input> input;
  std::uint64_t claim = 0;
};

struct SinkCtx {
  std::weak_ptr<Input> input;
  GstRTSPMedia *media; // compared only
  bool video;
};

std::shared_ptr<Input> input_of(gpointer object) {
  auto *w = object ? static_cast<std::weak_ptr<Input> *>(g_object_get_data(G_OBJECT(object), kInputKey)) : nullptr;
  return w ? w->lock() : nullptr;
}

void free_weak_input(gpointer d) {
  delete static_cast<std::weak_ptr<Input> *>(d);
}

// ---- the mount points: /live/KEY is mounted when a request names a stream's key ----

struct SluiceMounts {
  GstRTSPMountPoints parent;
  std::weak_ptr<Core> *core;
};
struct SluiceMountsClass {
  GstRTSPMountPointsClass parent_class;
};

G_DEFINE_TYPE(SluiceMounts, sluice_mounts, GST_TYPE_RTSP_MOUNT_POINTS)

gchar *mounts_make_path(GstRTSPMountPoints *mounts, const GstRTSPUrl *url) {
  gchar *path = GST_RTSP_MOUNT_POINTS_CLASS(sluice_mounts_parent_class)->make_path(mounts, url);
  auto *me = reinterpret_cast<SluiceMounts *>(mounts);
  if (auto c = path && me->core ? me->core->lock() : nullptr)
    play_mount(mounts, c, &path); // /videos/ID and /live/ID for viewers (live/rtsp_play.cpp)
  if (!path || !g_str_has_prefix(path, "/live/"))
    return path;
  // The key is not kept, only its hash: a stream's factory is mounted at the path of its key the first time
  // a request brings the key. A wrong key mounts nothing (404).
  const char *key = path + std::strlen("/live/");
  const char *slash = std::strchr(key, '/');
  const std::string k(key, slash ? static_cast<std::size_t>(slash - key) : std::strlen(key));
  auto *self = reinterpret_cast<SluiceMounts *>(mounts);
  auto core = self->core ? self->core->lock() : nullptr;
  auto input = core ? core->find_key(k) : nullptr;
  if (!input)
    return path;
  const std::string mount = "/" + app::live_path(k); // the path of the ingest URL (app/streams.h)
  std::lock_guard<std::mutex> lock(input->mutex);
  if (!input->removed && input->factory && input->mount.empty()) {
    input->mount = mount;
    gst_rtsp_mount_points_add_factory(mounts, mount.c_str(), GST_RTSP_MEDIA_FACTORY(g_object_ref(input->factory)));
    GST_INFO("stream %s: mounted for its publisher", input->id.c_str());
  }
  return path;
}

void sluice_mounts_finalize(GObject *obj) {
  delete reinterpret_cast<SluiceMounts *>(obj)->core;
  G_OBJECT_CLASS(sluice_mounts_parent_class)->finalize(obj);
}

void sluice_mounts_class_init(SluiceMountsClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_mounts_finalize;
  GST_RTSP_MOUNT_POINTS_CLASS(klass)->make_path = mounts_make_path;
}

void sluice_mounts_init(SluiceMounts *self) {
  self->core = nullptr;
}

// ---- the record factory: its pipeline follows the streams the publisher announces ----

struct SluiceRecordFactory {
  GstRTSPMediaFactory parent;
};
struct SluiceRecordFactoryClass {
  GstRTSPMediaFactoryClass parent_class;
};

G_DEFINE_TYPE(SluiceRecordFactory, sluice_record_factory, GST_TYPE_RTSP_MEDIA_FACTORY)

// The SDP of the ANNOUNCE being handled (nullptr when there is none or it does not parse); free with
// gst_sdp_message_free.
GstSDPMessage *announced_sdp(GstRTSPContext *ctx) {
  if (!ctx || !ctx->request || ctx->request->type != GST_RTSP_MESSAGE_REQUEST ||
      ctx->request->type_data.request.method != GST_RTSP_ANNOUNCE)
    return nullptr;
  guint8 *body = nullptr;
  guint size = 0;
  gst_rtsp_message_get_body(ctx->request, &body, &size);
  GstSDPMessage *sdp = nullptr;
  gst_sdp_message_new(&sdp);
  if (!body || gst_sdp_message_parse_buffer(body, size, sdp) != GST_SDP_OK) {
    gst_sdp_message_free(sdp);
    return nullptr;
  }
  return sdp;
}

// The encoding of an m= line's first format ("H264", "MPEG4-GENERIC"...), and whether this GStreamer has an RTP
// depayloader for it: parsebin could not take the stream apart otherwise.
bool depayloadable(const GstSDPMedia *media, std::string *encoding) {
  const gchar *fmt = gst_sdp_media_formats_len(media) > 0 ? gst_sdp_media_get_format(media, 0) : nullptr;
  GstCaps *caps =
      fmt ? gst_sdp_media_get_caps_from_media(media, static_cast<gint>(g_ascii_strtoll(fmt, nullptr, 10))) : nullptr;
  if (!caps)
    return false;
  GstStructure *s = gst_caps_get_structure(caps, 0);
  gst_structure_set_name(s, "application/x-rtp");
  const gchar *name = gst_structure_get_string(s, "encoding-name");
  if (encoding)
    *encoding = name ? name : (fmt ? std::string("payload type ") + fmt : "");
  GList *all = gst_element_factory_list_get_elements(GST_ELEMENT_FACTORY_TYPE_DEPAYLOADER, GST_RANK_MARGINAL);
  GList *fit = gst_element_factory_list_filter(all, caps, GST_PAD_SINK, FALSE);
  const bool ok = fit != nullptr;
  gst_plugin_feature_list_free(fit);
  gst_plugin_feature_list_free(all);
  gst_caps_unref(caps);
  return ok;
}

// What the engine takes of an announced SDP: the index of the m= line of the video (the first one that can be
// depayloaded) and of the audio (likewise), -1 for none; `why` says why there is no video.
struct Announced {
  int video = -1, audio = -1;
  std::string why;
};

Announced read_announced(const GstSDPMessage *sdp) {
  Announced a;
  std::string refused; // the video encodings that cannot be taken
  for (guint i = 0; i < gst_sdp_message_medias_len(sdp); i++) {
    const GstSDPMedia *m = gst_sdp_message_get_media(sdp, i);
    const gchar *kind = gst_sdp_media_get_media(m);
    const bool video = kind && g_str_equal(kind, "video"), audio = kind && g_str_equal(kind, "audio");
    if ((!video || a.video >= 0) && (!audio || a.audio >= 0))
      continue;
    std::string encoding;
    if (!depayloadable(m, &encoding)) {
      if (video)
        refused += (refused.empty() ? "" : ", ") + (encoding.empty() ? std::string("?") : encoding);
      GST_INFO("an announced %s stream (%s) cannot be depayloaded: not used", kind, encoding.c_str());
      continue;
    }
    (video ? a.video : a.audio) = static_cast<int>(i);
  }
  if (a.video < 0)
    a.why = refused.empty() ? "the RTSP publisher announced no video"
                            : "the RTSP publisher announced a video encoding that sluice cannot take (" + refused + ")";
  return a;
}

GstElement *record_create_element(GstRTSPMediaFactory *, const GstRTSPUrl *) {
  // One depayN per m= line of the SDP being announced (a count that differs is refused with 415): the first
  // video and the first audio that can be depayloaded go to appsinks through parsebin, the others nowhere (an
  // identity takes their RTP). Without such a video the media is still made: pre-announce-request refuses it
  // with 415 and the stream's state says why.
  GstSDPMessage *sdp = announced_sdp(gst_rtsp_context_get_current());
  if (!sdp)
    return nullptr; // this path takes publishers only
  const Announced a = read_announced(sdp);
  std::ostringstream launch;
  for (guint i = 0; i < gst_sdp_message_medias_len(sdp); i++) {
    const int n = static_cast<int>(i);
    if (n == a.video)
      launch << "parsebin name=depay" << i << " ! appsink name=vsink sync=false async=false  ";
    else if (n == a.audio)
      launch << "parsebin name=depay" << i << " ! appsink name=asink sync=false async=false  ";
    else
      launch << "identity name=depay" << i << " ! fakesink sync=false async=false  ";
  }
  gst_sdp_message_free(sdp);
  g_autoptr(GError) err = nullptr;
  GstElement *bin = gst_parse_launch_full(launch.str().c_str(), nullptr, GST_PARSE_FLAG_PLACE_IN_BIN, &err);
  if (err) {
    GST_WARNING("record pipeline: %s", err->message);
    if (bin)
      gst_object_unref(bin);
    return nullptr;
  }
  return bin;
}

void sluice_record_factory_finalize(GObject *obj) {
  G_OBJECT_CLASS(sluice_record_factory_parent_class)->finalize(obj);
}

void sluice_record_factory_class_init(SluiceRecordFactoryClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_record_factory_finalize;
  GST_RTSP_MEDIA_FACTORY_CLASS(klass)->create_element = record_create_element;
}

void sluice_record_factory_init(SluiceRecordFactory *) {}

// ---- media and client signals ----

GstFlowReturn on_new_sample(GstAppSink *sink, gpointer data) {
  auto *ctx = static_cast<SinkCtx *>(data);
  GstSample *sample = gst_app_sink_pull_sample(sink);
  if (!sample)
    return GST_FLOW_EOS;
  if (auto in = ctx->input.lock()) {
    std::uint64_t claim = 0;
    {
      std::lock_guard<std::mutex> lock(in->mutex);
      if (in->via == Via::Rtsp && in->media == ctx->media)
        claim = in->claim;
    }
    if (claim)
      in->on_sample(claim, sample, ctx->video);
  }
  gst_sample_unref(sample);
  return GST_FLOW_OK; // whatever becomes of it, the publisher's connection goes on
}

void on_unprepared(GstRTSPMedia *media, gpointer data) {
  auto in = static_cast<std::weak_ptr<Input> *>(data)->lock();
  if (!in)
    return;
  std::uint64_t claim = 0;
  {
    std::lock_guard<std::mutex> lock(in->mutex);
    if (in->via == Via::Rtsp && in->media == media)
      claim = in->claim;
  }
  if (claim)
    in->release(claim, "the publisher left");
}

void on_media_configure(GstRTSPMediaFactory *factory, GstRTSPMedia *media, gpointer) {
  auto *w = static_cast<std::weak_ptr<Input> *>(g_object_get_data(G_OBJECT(factory), kInputKey));
  if (!w)
    return;
  GstElement *element = gst_rtsp_media_get_element(media);
  if (!element)
    return;
  bool audio = false;
  for (bool video : {true, false}) {
    GstElement *sink = gst_bin_get_by_name(GST_BIN(element), video ? "vsink" : "asink");
    if (!sink)
      continue;
    audio = audio || !video;
    GstAppSinkCallbacks callbacks{};
    callbacks.new_sample = on_new_sample;
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), &callbacks, new SinkCtx{*w, media, video},
                               [](gpointer d) { delete static_cast<SinkCtx *>(d); });
    gst_object_unref(sink);
  }
  gst_object_unref(element);
  g_object_set_data(G_OBJECT(media), kAudioKey, GINT_TO_POINTER(audio ? 1 : 0));
  g_object_set_data_full(G_OBJECT(media), kInputKey, new std::weak_ptr<Input>(*w), free_weak_input);
  // A RECORD media gets no EOS when its publisher goes: it is unprepared.
  g_signal_connect_data(
      media, "unprepared", G_CALLBACK(on_unprepared), new std::weak_ptr<Input>(*w),
      [](gpointer d, GClosure *) { delete static_cast<std::weak_ptr<Input> *>(d); }, GConnectFlags(0));
}

GstRTSPStatusCode on_pre_announce(GstRTSPClient *client, GstRTSPContext *ctx, gpointer) {
  // (ctx->factory is no longer set here: the media knows its stream.)
  auto in = input_of(ctx->media);
  if (!in)
    return GST_RTSP_STS_NOT_FOUND;
  GstSDPMessage *sdp = announced_sdp(ctx);
  const Announced announced = sdp ? read_announced(sdp) : Announced{-1, -1, "the RTSP publisher announced no SDP"};
  if (sdp)
    gst_sdp_message_free(sdp);
  std::uint64_t claim = 0;
  {
    std::lock_guard<std::mutex> lock(in->mutex);
    if (in->removed)
      return GST_RTSP_STS_NOT_FOUND;
    if (in->via != Via::None) {
      GST_INFO("stream %s: refused a second publisher", in->id.c_str());
      return GST_RTSP_STS_METHOD_NOT_VALID_IN_THIS_STATE; // 455: one publisher at a time
    }
    if (announced.video < 0) {
      // Nothing the ladder could be made of: refused before anything starts, and the stream says why.
      GST_INFO("stream %s: refused a publisher: %s", in->id.c_str(), announced.why.c_str());
      if (auto core = in->core.lock())
        core->post_refused(in->id, announced.why);
      return GST_RTSP_STS_UNSUPPORTED_MEDIA_TYPE; // 415
    }
    claim = in->take_locked(Via::Rtsp);
    in->client = GST_RTSP_CLIENT(g_object_ref(client));
    in->media = ctx->media;
    in->streams_known = true;
    in->expects_audio = GPOINTER_TO_INT(g_object_get_data(G_OBJECT(ctx->media), kAudioKey)) != 0;
  }
  g_object_set_data_full(G_OBJECT(client), kPublishesKey, new Publishes{in, claim},
                         [](gpointer d) { delete static_cast<Publishes *>(d); });
  GST_INFO("stream %s: RTSP publisher %" G_GUINT64_FORMAT " announced", in->id.c_str(), claim);
  if (auto core = in->core.lock())
    core->post_connecting(in->id, claim);
  return GST_RTSP_STS_OK;
}

void on_client_closed(GstRTSPClient *client, gpointer) {
  auto *p = static_cast<Publishes *>(g_object_get_data(G_OBJECT(client), kPublishesKey));
  if (!p)
    return;
  if (auto in = p->input.lock())
    in->release(p->claim, "the publisher left");
}

void on_client_connected(GstRTSPServer *, GstRTSPClient *client, gpointer) {
  g_signal_connect(client, "pre-announce-request", G_CALLBACK(on_pre_announce), nullptr);
  g_signal_connect(client, "closed", G_CALLBACK(on_client_closed), nullptr);
}

} // namespace

Rtsp::Rtsp(std::weak_ptr<Core> core) : core_(std::move(core)) {}

Rtsp::~Rtsp() {
  stop();
  if (mounts_)
    g_object_unref(mounts_);
  if (server_)
    g_object_unref(server_);
}

GstRTSPMediaFactory *Rtsp::make_factory(const std::shared_ptr<Input> &input) {
  auto *f = GST_RTSP_MEDIA_FACTORY(g_object_new(sluice_record_factory_get_type(), nullptr));
  gst_rtsp_media_factory_set_transport_mode(f, GST_RTSP_TRANSPORT_MODE_RECORD);
  // Never shared: a second publisher joining the first's media breaks it.
  gst_rtsp_media_factory_set_shared(f, FALSE);
  g_object_set_data_full(G_OBJECT(f), kInputKey, new std::weak_ptr<Input>(input), free_weak_input);
  g_signal_connect(f, "media-configure", G_CALLBACK(on_media_configure), nullptr);
  return f;
}

bool Rtsp::start(const std::string &host, int port, std::string &error) {
  server_ = gst_rtsp_server_new();
  gst_rtsp_server_set_address(server_, host.c_str());
  gst_rtsp_server_set_service(server_, std::to_string(port).c_str());
  auto *mounts = static_cast<SluiceMounts *>(g_object_new(sluice_mounts_get_type(), nullptr));
  mounts->core = new std::weak_ptr<Core>(core_);
  mounts_ = GST_RTSP_MOUNT_POINTS(mounts);
  gst_rtsp_server_set_mount_points(server_, mounts_);
  // The default is one thread for every client: a client waiting for something blocks every publisher.
  GstRTSPThreadPool *pool = gst_rtsp_server_get_thread_pool(server_);
  gst_rtsp_thread_pool_set_max_threads(pool, 32);
  g_object_unref(pool);
  g_signal_connect(server_, "client-connected", G_CALLBACK(on_client_connected), nullptr);
  play_start(server_, core_);
  g_autoptr(GError) err = nullptr;
  source_ = gst_rtsp_server_create_source(server_, nullptr, &err);
  if (!source_) {
    error = "cannot listen on " + host + ":" + std::to_string(port) + ": " + (err ? err->message : "?");
    return false;
  }
  g_source_attach(source_, nullptr);
  port_ = gst_rtsp_server_get_bound_port(server_);
  // Sessions expire only when someone asks.
  cleanup_id_ = g_timeout_add_seconds(
      2,
      [](gpointer s) -> gboolean {
        GstRTSPSessionPool *sessions = gst_rtsp_server_get_session_pool(GST_RTSP_SERVER(s));
        gst_rtsp_session_pool_cleanup(sessions);
        g_object_unref(sessions);
        return G_SOURCE_CONTINUE;
      },
      server_);
  GST_INFO("RTSP on %s:%d", host.c_str(), port_);
  return true;
}

void Rtsp::stop() {
  if (cleanup_id_) {
    g_source_remove(cleanup_id_);
    cleanup_id_ = 0;
  }
  if (source_) {
    g_source_destroy(source_);
    g_source_unref(source_);
    source_ = nullptr;
  }
  if (server_) {
    GList *clients = gst_rtsp_server_client_filter(server_, nullptr, nullptr);
    for (GList *l = clients; l; l = l->next)
      gst_rtsp_client_close(GST_RTSP_CLIENT(l->data));
    g_list_free_full(clients, g_object_unref);
  }
}

void Rtsp::unmount(const std::string &path) {
  if (mounts_)
    gst_rtsp_mount_points_remove_factory(mounts_, path.c_str());
}

void Rtsp::kick(GstRTSPClient *client) {
  gst_rtsp_client_close(client);
}

} // namespace sluice::live
