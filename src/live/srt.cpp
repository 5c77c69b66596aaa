// SPDX-License-Identifier: LGPL-2.1-or-later
// SRT publishing: one srtsrc listener checks each caller's streamid at the handshake; its MPEG-TS goes to the Input.
#include "live/engine_internal.h"

#include "core/mainloop.h"

#include <gio/gio.h>
#include <gst/app/gstappsink.h>

#include <algorithm>
#include <utility>

#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

// One srtsrc pipeline. GStreamer 1.22's srtsrc serves one caller and then stops accepting, so the listener is
// built again after every caller: one SRT publisher at a time.
struct Srt::Listener : SinkFeed {
  std::weak_ptr<Core> core;
  bool taken = false; // a caller was accepted (under the feed's mutex)
};

namespace {

using ListenerPtr = std::shared_ptr<Srt::Listener>;

void free_listener(gpointer d, GClosure *) {
  delete static_cast<ListenerPtr *>(d);
}

Srt::Listener &listener_of(gpointer d) {
  return **static_cast<ListenerPtr *>(d);
}

// The input the listener's caller publishes to, and its claim (a null input when there is none).
std::pair<std::shared_ptr<Input>, std::uint64_t> current_input(Srt::Listener &l) {
  std::lock_guard<std::mutex> lock(l.mutex);
  return {l.input, l.claim};
}

// The key in a streamid: the whole of it, or the resource of the SRT access control syntax "#!::r=KEY,m=publish".
std::string key_of(const gchar *streamid) {
  if (!streamid)
    return "";
  std::string s = streamid;
  if (!g_str_has_prefix(streamid, "#!::"))
    return s;
  gchar **parts = g_strsplit(streamid + 4, ",", -1);
  std::string key;
  for (gchar **p = parts; *p; p++)
    if (g_str_has_prefix(*p, "r="))
      key = *p + 2;
  g_strfreev(parts);
  return key;
}

gboolean on_connecting(GstElement *, GSocketAddress *, const gchar *streamid, gpointer d) {
  Srt::Listener &l = listener_of(d);
  auto core = l.core.lock();
  auto in = core ? core->find_key(key_of(streamid)) : nullptr;
  if (!in) {
    GST_INFO("SRT caller refused: no stream has its key");
    return FALSE;
  }
  std::lock_guard<std::mutex> lock(l.mutex);
  if (l.taken) {
    // srtsrc would complete the handshake and then never read from a second caller.
    GST_INFO("SRT caller for stream %s refused: another SRT publisher is live", in->id.c_str());
    return FALSE;
  }
  std::lock_guard<std::mutex> lock_in(in->mutex);
  if (in->removed || in->via != Via::None) {
    GST_INFO("SRT caller for stream %s refused: it has a publisher", in->id.c_str());
    return FALSE;
  }
  l.claim = in->take_locked(Via::Srt);
  l.input = in;
  l.taken = true;
  GST_INFO("stream %s: SRT publisher %" G_GUINT64_FORMAT " accepted", in->id.c_str(), l.claim);
  return TRUE;
}

void on_caller_added(GstElement *, gint, GSocketAddress *, gpointer d) {
  Srt::Listener &l = listener_of(d);
  std::lock_guard<std::mutex> lock(l.mutex);
  if (l.input)
    if (auto core = l.core.lock())
      core->post_connecting(l.input->id, l.claim);
}

void on_caller_removed(GstElement *, gint, GSocketAddress *, gpointer d) {
  auto [in, claim] = current_input(listener_of(d));
  if (in)
    in->release(claim, "the publisher left");
}

void on_pad_added(GstElement *parsebin, GstPad *pad, gpointer d) {
  link_parsed_pad(parsebin, pad, *static_cast<ListenerPtr *>(d), Via::Srt, "SRT input");
}

// The caller's bytes, before anything is made of them: a caller that sends what cannot be read is not idle (its
// stream ends with the reason parsebin gives, or for want of video), one that sends nothing is.
GstPadProbeReturn on_srt_bytes(GstPad *, GstPadProbeInfo *, gpointer d) {
  auto [in, claim] = current_input(listener_of(d));
  if (in)
    in->touch(claim);
  return GST_PAD_PROBE_OK;
}

void on_caller_rejected(GstElement *, GSocketAddress *, const gchar *, gpointer) {
  GST_INFO("SRT caller rejected at the handshake");
}

void on_no_more_pads(GstElement *, gpointer d) {
  Srt::Listener &l = listener_of(d);
  std::shared_ptr<Input> in;
  std::uint64_t claim = 0;
  bool audio = false;
  {
    std::lock_guard<std::mutex> lock(l.mutex);
    in = l.input;
    claim = l.claim;
    audio = l.audio;
  }
  if (!in)
    return;
  std::lock_guard<std::mutex> lock(in->mutex);
  if (in->via != Via::Srt || in->claim != claim)
    return;
  in->streams_known = true;
  in->expects_audio = audio;
  in->check_ready_locked();
}

// A free UDP port on host (srtsrc cannot say which one it bound for port 0).
int free_udp_port(const std::string &host, std::string &error) {
  g_autoptr(GError) err = nullptr;
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string(host.c_str());
  if (!address) {
    error = "not an IP address: " + host;
    return -1;
  }
  g_autoptr(GSocket) socket =
      g_socket_new(g_inet_address_get_family(address), G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, &err);
  g_autoptr(GSocketAddress) any = socket ? g_inet_socket_address_new(address, 0) : nullptr;
  if (!socket || !g_socket_bind(socket, any, FALSE, &err)) {
    error = std::string("cannot bind a UDP port on ") + host + ": " + (err ? err->message : "?");
    return -1;
  }
  g_autoptr(GSocketAddress) bound = g_socket_get_local_address(socket, &err);
  const int port = bound ? g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)) : -1;
  g_socket_close(socket, nullptr);
  if (port <= 0)
    error = "cannot find a free UDP port";
  return port;
}

} // namespace

Srt::Srt(std::weak_ptr<Core> core) : core_(std::move(core)) {}

Srt::~Srt() {
  stop();
}

bool Srt::start(const std::string &host, int port, std::string &error) {
  host_ = host;
  port_ = port == 0 ? free_udp_port(host, error) : port;
  if (port_ <= 0) {
    port_ = -1;
    return false;
  }
  if (!listen(error)) {
    port_ = -1;
    return false;
  }
  GST_INFO("SRT on %s:%d", host.c_str(), port_);
  return true;
}

bool Srt::listen(std::string &error) {
  GstElement *src = gst_element_factory_make("srtsrc", "srt");
  GstElement *queue = gst_element_factory_make("queue", nullptr);
  GstElement *parse = gst_element_factory_make("parsebin", nullptr);
  if (!src || !queue || !parse) {
    for (GstElement *e : {src, queue, parse})
      if (e)
        gst_object_unref(gst_object_ref_sink(e));
    error = "srtsrc or parsebin is missing (gstreamer1.0-plugins-bad, -base)";
    return false;
  }
  if (!g_signal_lookup("caller-connecting", G_OBJECT_TYPE(src))) {
    for (GstElement *e : {src, queue, parse})
      gst_object_unref(gst_object_ref_sink(e));
    error = "this srtsrc cannot check a caller's streamid (no caller-connecting signal)";
    return false;
  }
  auto listener = std::make_shared<Listener>();
  listener->core = core_;
  const std::string uri = app::srt_url(host_, port_) + "?mode=listener";
  // authentication=true: without it srtsrc accepts every caller without asking (its default is not applied).
  g_object_set(src, "uri", uri.c_str(), "latency", 120, "authentication", TRUE, "keep-listening", FALSE, nullptr);
  g_signal_connect_data(src, "caller-connecting", G_CALLBACK(on_connecting), new ListenerPtr(listener), free_listener,
                        GConnectFlags(0));
  g_signal_connect_data(src, "caller-added", G_CALLBACK(on_caller_added), new ListenerPtr(listener), free_listener,
                        GConnectFlags(0));
  g_signal_connect_data(src, "caller-removed", G_CALLBACK(on_caller_removed), new ListenerPtr(listener), free_listener,
                        GConnectFlags(0));
  g_signal_connect(src, "caller-rejected", G_CALLBACK(on_caller_rejected), nullptr);
  g_signal_connect_data(parse, "pad-added", G_CALLBACK(on_pad_added), new ListenerPtr(listener), free_listener,
                        GConnectFlags(0));
  g_signal_connect_data(parse, "no-more-pads", G_CALLBACK(on_no_more_pads), new ListenerPtr(listener), free_listener,
                        GConnectFlags(0));
  if (GstPad *out = gst_element_get_static_pad(src, "src")) {
    gst_pad_add_probe(out, GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST), on_srt_bytes,
                      new ListenerPtr(listener), [](gpointer d) { delete static_cast<ListenerPtr *>(d); });
    gst_object_unref(out);
  }
  GstPtr<GstElement> pipeline = adopt_floating(gst_pipeline_new("srt-listener"));
  gst_bin_add_many(GST_BIN(pipeline.get()), src, queue, parse, nullptr);
  gst_element_link_many(src, queue, parse, nullptr);
  GstPtr<GstBus> bus(gst_pipeline_get_bus(GST_PIPELINE(pipeline.get())));
  if (gst_element_set_state(pipeline.get(), GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    error = "cannot listen on " + host_ + ":" + std::to_string(port_);
    if (GstMessage *m = gst_bus_pop_filtered(bus.get(), GST_MESSAGE_ERROR)) {
      g_autoptr(GError) err = nullptr;
      gst_message_parse_error(m, &err, nullptr);
      if (err)
        error += std::string(": ") + err->message;
      gst_message_unref(m);
    }
    stop_off_loop(std::move(pipeline));
    return false;
  }
  watch_ = gst_bus_create_watch(bus.get());
  g_source_set_callback(watch_, reinterpret_cast<GSourceFunc>(reinterpret_cast<void (*)()>(&Srt::on_bus)), this,
                        nullptr);
  g_source_attach(watch_, nullptr);
  listener->core = core_;
  listener_ = listener;
  pipeline_ = std::move(pipeline);
  return true;
}

gboolean Srt::on_bus(GstBus *, GstMessage *msg, gpointer self) {
  try { // a GLib callback: nothing crosses it
    return static_cast<Srt *>(self)->handle(msg);
  } catch (const std::exception &e) {
    GST_ERROR("SRT listener: %s", e.what());
  }
  return G_SOURCE_CONTINUE;
}

gboolean Srt::handle(GstMessage *msg) {
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS:
    // The caller left: listen again for the next one.
    failures_ = 0;
    restart(0);
    return G_SOURCE_REMOVE;
  case GST_MESSAGE_ERROR: {
    g_autoptr(GError) err = nullptr;
    g_autofree gchar *debug = nullptr;
    gst_message_parse_error(msg, &err, &debug);
    GST_WARNING("SRT listener: %s (%s)", err ? err->message : "?", debug ? debug : "");
    failures_ = std::min<guint>(failures_ + 1, 5);
    // A caller's input that cannot be read (not MPEG-TS...) ends here too: its stream says so.
    restart(1u << (failures_ - 1), std::string("the SRT input failed: ") + (err ? err->message : "an error"));
    return G_SOURCE_REMOVE;
  }
  default: break;
  }
  return G_SOURCE_CONTINUE;
}

void Srt::restart(guint delay_s, const std::string &why) {
  if (watch_) {
    GSource *w = watch_;
    watch_ = nullptr;
    if (g_main_current_source() != w)
      g_source_destroy(w);
    g_source_unref(w);
  }
  if (auto l = std::move(listener_)) {
    std::shared_ptr<Input> in;
    std::uint64_t claim = 0;
    {
      std::lock_guard<std::mutex> lock(l->mutex);
      in = std::move(l->input);
      claim = l->claim;
      l->taken = true; // until it has stopped, the old srtsrc takes no caller
    }
    if (in)
      in->release(claim, why);
  }
  if (stopped_)
    return;
  // The port is free again once the old listener has stopped.
  stop_off_loop(std::move(pipeline_), [this, alive = alive_, delay_s] {
    if (!*alive || stopped_)
      return;
    auto again = [](gpointer self) -> gboolean {
      auto *s = static_cast<Srt *>(self);
      s->restart_id_ = 0;
      std::string error;
      bool ok = true;
      try { // a GLib callback: nothing crosses it
        ok = s->stopped_ || s->listen(error);
      } catch (const std::exception &e) {
        ok = false;
        error = e.what();
      }
      if (!ok) {
        GST_WARNING("SRT listener: %s", error.c_str());
        s->failures_ = std::min<guint>(s->failures_ + 1, 5);
        s->restart_id_ = g_timeout_add_seconds(
            1u << (s->failures_ - 1),
            [](gpointer p) -> gboolean {
              auto *t = static_cast<Srt *>(p);
              t->restart_id_ = 0;
              t->restart(0);
              return G_SOURCE_REMOVE;
            },
            s);
      }
      return G_SOURCE_REMOVE;
    };
    restart_id_ = delay_s ? g_timeout_add_seconds(delay_s, again, this) : g_idle_add(again, this);
  });
}

void Srt::kick(const std::string &id) {
  std::shared_ptr<Input> in;
  if (listener_) {
    std::lock_guard<std::mutex> lock(listener_->mutex);
    in = listener_->input;
  }
  if (in && in->id == id)
    restart(0);
}

void Srt::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  *alive_ = false;
  if (restart_id_) {
    g_source_remove(restart_id_);
    restart_id_ = 0;
  }
  GstPtr<GstElement> pipeline = std::move(pipeline_);
  restart(0); // releases the caller; nothing is started again
  if (pipeline && !stop_waiting(std::move(pipeline), 2000))
    GST_WARNING("the SRT listener did not stop within 2 s");
}

} // namespace sluice::live
