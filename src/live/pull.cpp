// SPDX-License-Identifier: LGPL-2.1-or-later
// Pulled sources: the engine reads a stream's rtsp://, srt:// or http(s):// source itself, rebuilding it with backoff.
#include "live/engine_internal.h"

#include <gst/app/gstappsink.h>

#include <algorithm>

#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

// No sample for this long (a frozen source posts nothing on the bus): the input is rebuilt.
constexpr std::int64_t kStallUs = 5 * G_USEC_PER_SEC;
// An attempt that delivered data this long resets the backoff.
constexpr std::int64_t kSteadyUs = 10 * G_USEC_PER_SEC;
// Backoff before rebuilding: 1, 2, 4, 8 s.
constexpr guint kMaxBackoffStep = 3;

} // namespace

// What one attempt's streaming threads share: cleared when the attempt is torn down, so that its late samples go
// nowhere.
struct Puller::Attempt : SinkFeed {};

namespace {

using AttemptPtr = std::shared_ptr<Puller::Attempt>;

void free_attempt(gpointer d, GClosure *) {
  delete static_cast<AttemptPtr *>(d);
}

// A parsed elementary stream: the first video and the first audio feed the input, the rest go nowhere.
void on_parsed_pad(GstElement *parsebin, GstPad *pad, gpointer d) {
  const AttemptPtr &at = *static_cast<AttemptPtr *>(d);
  link_parsed_pad(parsebin, pad, at, Via::Pull, "pulled input");
  if (!g_object_get_data(G_OBJECT(parsebin), "sluice-parsed")) {
    // This stream of the source is taken apart (an MPEG-TS exposes all of its streams together).
    g_object_set_data(G_OBJECT(parsebin), "sluice-parsed", GINT_TO_POINTER(1));
    std::lock_guard<std::mutex> lock(at->mutex);
    at->pending--;
  }
}

// The source has all its streams (rtspsrc: one per m= line).
void on_source_done(GstElement *, gpointer d) {
  const AttemptPtr &at = *static_cast<AttemptPtr *>(d);
  std::lock_guard<std::mutex> lock(at->mutex);
  at->pending--;
}

// A stream of the source (RTP of one medium, MPEG-TS...): a parsebin of its own takes it apart.
void on_source_pad(GstElement *source, GstPad *pad, gpointer d) {
  GstElement *parse = gst_element_factory_make("parsebin", nullptr);
  if (!parse) {
    GST_WARNING("pulled input: parsebin is missing");
    return;
  }
  {
    const AttemptPtr &at = *static_cast<AttemptPtr *>(d);
    std::lock_guard<std::mutex> lock(at->mutex);
    at->pending++;
  }
  g_signal_connect_data(parse, "pad-added", G_CALLBACK(on_parsed_pad), new AttemptPtr(*static_cast<AttemptPtr *>(d)),
                        free_attempt, GConnectFlags(0));
  GstObject *bin = gst_object_get_parent(GST_OBJECT(source));
  gst_bin_add(GST_BIN(bin), parse);
  gst_object_unref(bin);
  gst_element_sync_state_with_parent(parse);
  GstPad *sinkpad = gst_element_get_static_pad(parse, "sink");
  if (gst_pad_link(pad, sinkpad) != GST_PAD_LINK_OK)
    GST_WARNING("pulled input: cannot take a stream of the source apart");
  gst_object_unref(sinkpad);
}

bool has_property(GstElement *e, const char *name) {
  return g_object_class_find_property(G_OBJECT_GET_CLASS(e), name) != nullptr;
}

// The source element urisourcebin made: RTSP over TCP; SRT as a caller that does not reconnect by itself (the
// engine does, so that a drop is seen).
void on_source_setup(GstElement *, GstElement *source, gpointer) {
  const gchar *factory = GST_OBJECT_NAME(gst_element_get_factory(source));
  if (g_str_equal(factory, "rtspsrc")) {
    gst_util_set_object_arg(G_OBJECT(source), "protocols", "tcp");
    g_object_set(source, "latency", 200, nullptr);
  } else if (g_str_equal(factory, "srtsrc")) {
    if (has_property(source, "auto-reconnect"))
      g_object_set(source, "auto-reconnect", FALSE, nullptr);
  }
}

} // namespace

Puller::Puller(std::weak_ptr<Core> core, std::shared_ptr<Input> input, std::string uri)
    : core_(std::move(core)), input_(std::move(input)), uri_(std::move(uri)) {}

Puller::~Puller() {
  if (retry_id_)
    g_source_remove(retry_id_);
  retry_id_ = 0;
  teardown();
}

void Puller::start() {
  if (retry_id_ || pipeline_)
    return;
  attempt();
}

void Puller::attempt() {
  std::uint64_t claim = 0;
  {
    std::lock_guard<std::mutex> lock(input_->mutex);
    if (input_->removed || input_->via != Via::None)
      return;
    claim = input_->take_locked(Via::Pull);
  }
  auto at = std::make_shared<Attempt>();
  at->input = input_;
  at->claim = claim;
  at->pending = 1; // until the source says it has all its streams
  GstElement *src = gst_element_factory_make("urisourcebin", nullptr);
  if (!src) {
    input_->release(claim, "urisourcebin is missing (gstreamer1.0-plugins-base)");
    schedule();
    return;
  }
  g_object_set(src, "uri", uri_.c_str(), nullptr);
  g_signal_connect(src, "source-setup", G_CALLBACK(on_source_setup), nullptr);
  g_signal_connect_data(src, "pad-added", G_CALLBACK(on_source_pad), new AttemptPtr(at), free_attempt,
                        GConnectFlags(0));
  g_signal_connect_data(src, "no-more-pads", G_CALLBACK(on_source_done), new AttemptPtr(at), free_attempt,
                        GConnectFlags(0));
  GstPtr<GstElement> pipeline = adopt_floating(gst_pipeline_new("pull"));
  gst_bin_add(GST_BIN(pipeline.get()), src);
  GstPtr<GstBus> bus(gst_pipeline_get_bus(GST_PIPELINE(pipeline.get())));
  bus_watch_ = gst_bus_add_watch(bus.get(), &Puller::on_bus, this);
  attempt_ = at;
  pipeline_ = std::move(pipeline);
  claim_ = claim;
  bytes_at_start_ = 0;
  {
    std::lock_guard<std::mutex> lock(input_->mutex);
    bytes_at_start_ = input_->bytes;
  }
  data_since_us_ = 0;
  GST_INFO("stream %s: pulling %s (attempt %" G_GUINT64_FORMAT ")", input_->id.c_str(), uri_.c_str(), claim);
  if (auto c = core_.lock())
    c->post_connecting(input_->id, claim);
  if (gst_element_set_state(pipeline_.get(), GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    fail("cannot open the source");
    return;
  }
  if (!watchdog_id_)
    watchdog_id_ = g_timeout_add_seconds(
        1,
        [](gpointer p) -> gboolean {
          static_cast<Puller *>(p)->watch();
          return G_SOURCE_CONTINUE;
        },
        this);
}

gboolean Puller::on_bus(GstBus *, GstMessage *msg, gpointer self) {
  auto *p = static_cast<Puller *>(self);
  try { // a GLib callback: nothing crosses it
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_ERROR: {
      g_autoptr(GError) err = nullptr;
      g_autofree gchar *debug = nullptr;
      gst_message_parse_error(msg, &err, &debug);
      GST_WARNING("stream %s: the source failed: %s (%s)", p->input_->id.c_str(), err ? err->message : "?",
                  debug ? debug : "");
      p->bus_watch_ = 0;
      p->fail(std::string("the source failed: ") + (err ? err->message : "error"));
      return G_SOURCE_REMOVE;
    }
    case GST_MESSAGE_EOS:
      p->bus_watch_ = 0;
      p->fail("the source ended");
      return G_SOURCE_REMOVE;
    case GST_MESSAGE_WARNING: {
      g_autoptr(GError) err = nullptr;
      gst_message_parse_warning(msg, &err, nullptr);
      GST_INFO("stream %s: the source warns: %s", p->input_->id.c_str(), err ? err->message : "?");
      break;
    }
    default: break;
    }
  } catch (const std::exception &e) {
    GST_ERROR("pulled input: %s", e.what());
  }
  return G_SOURCE_CONTINUE;
}

void Puller::watch() {
  if (!pipeline_)
    return;
  const std::int64_t now = g_get_monotonic_time();
  std::int64_t last = 0;
  std::uint64_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(input_->mutex);
    if (input_->via != Via::Pull || input_->claim != claim_)
      return;
    last = input_->last_data_us;
    bytes = input_->bytes;
  }
  if (bytes > bytes_at_start_ && data_since_us_ == 0)
    data_since_us_ = now;
  if (now - last > kStallUs)
    fail("no data from the source for " + std::to_string(kStallUs / G_USEC_PER_SEC) + " s");
}

void Puller::fail(const std::string &why) {
  if (!pipeline_)
    return; // torn down already (the engine let it go, then its bus spoke)
  const std::int64_t now = g_get_monotonic_time();
  if (data_since_us_ && now - data_since_us_ >= kSteadyUs)
    backoff_ = 0;
  const std::uint64_t claim = claim_;
  teardown();
  GST_INFO("stream %s: %s; pulled again in %u s", input_->id.c_str(), why.c_str(), 1u << backoff_);
  input_->release(claim, why); // the engine hears of it (reconnecting); nothing if it let the input go itself
  schedule();
}

void Puller::schedule() {
  if (retry_id_)
    return;
  const guint delay = 1u << backoff_;
  backoff_ = std::min(backoff_ + 1, kMaxBackoffStep);
  retry_id_ = g_timeout_add_seconds(
      delay,
      [](gpointer p) -> gboolean {
        auto *self = static_cast<Puller *>(p);
        self->retry_id_ = 0;
        try { // a GLib callback: nothing crosses it
          self->attempt();
        } catch (const std::exception &e) {
          GST_ERROR("pulled input: %s", e.what());
        }
        return G_SOURCE_REMOVE;
      },
      this);
}

GstPtr<GstElement> Puller::let_go() {
  if (watchdog_id_) {
    g_source_remove(watchdog_id_);
    watchdog_id_ = 0;
  }
  if (bus_watch_) {
    g_source_remove(bus_watch_);
    bus_watch_ = 0;
  }
  if (attempt_) {
    std::lock_guard<std::mutex> lock(attempt_->mutex);
    attempt_->input.reset();
  }
  attempt_.reset();
  return std::move(pipeline_);
}

void Puller::teardown() {
  if (auto pipeline = let_go())
    stop_off_loop(std::move(pipeline)); // a stalled source may block its state change
}

void Puller::restart(const std::string &why) {
  fail(why);
}

void Puller::stop_blocking(int timeout_ms) {
  if (retry_id_) {
    g_source_remove(retry_id_);
    retry_id_ = 0;
  }
  auto pipeline = let_go();
  if (pipeline && !stop_waiting(std::move(pipeline), timeout_ms))
    GST_WARNING("stream %s: the pulled source did not stop within %d ms", input_->id.c_str(), timeout_ms);
}

} // namespace sluice::live
