// SPDX-License-Identifier: LGPL-2.1-or-later
// The live engine's core: each stream's publisher, ladder and playlists, its state and figures on the main loop.
#include "live/engine.h"

#include "auth/keys.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/mainloop.h"
#include "live/engine_internal.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

GST_DEBUG_CATEGORY(sluice_live_debug);
#define GST_CAT_DEFAULT sluice_live_debug

namespace sluice::live {

namespace {

// A publisher's figures are measured over this many microseconds.
constexpr std::int64_t kFiguresEvery = 2 * G_USEC_PER_SEC;
// Segments kept on disk after they left the playlist.
constexpr int kKeepExtra = 2;
// A publisher that sends this long without a video stream (audio only, or data in which none was found) is let go.
constexpr std::int64_t kNoVideoUs = 6 * G_USEC_PER_SEC;

double round1(double v) {
  return std::round(v * 10.0) / 10.0;
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// Core: the main loop's side.

Core::Core(const ServerConfig &c, app::Streams &s) : config(c), streams(s) {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(sluice_live_debug, "sluice-live", 0, "sluice live engine"); });
}

Core::~Core() = default;

int Core::rtsp_port() const {
  return rtsp_ ? rtsp_->port() : -1;
}
int Core::srt_port() const {
  return srt_ ? srt_->port() : -1;
}

void Core::start() {
  std::weak_ptr<Core> self = weak_from_this();
  if (!rtsp_)
    rtsp_ = std::make_unique<Rtsp>(self);
  if (!srt_)
    srt_ = std::make_unique<Srt>(self);
  std::string error;
  if (config.rtsp_port >= 0 && !rtsp_->start(config.rtsp_host, config.rtsp_port, error))
    std::fprintf(stderr, "sluice: warning: RTSP publishing is off: %s\n", error.c_str());
  if (config.srt_port >= 0 && !srt_->start(config.srt_host, config.srt_port, error))
    std::fprintf(stderr, "sluice: warning: SRT publishing is off: %s\n", error.c_str());
  tick_id_ = g_timeout_add_seconds(
      1,
      [](gpointer self_) -> gboolean {
        try { // a GLib callback: nothing crosses it
          static_cast<Core *>(self_)->tick();
        } catch (const std::exception &e) {
          GST_ERROR("live engine: %s", e.what());
        }
        return G_SOURCE_CONTINUE;
      },
      this);
}

void Core::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  if (tick_id_) {
    g_source_remove(tick_id_);
    tick_id_ = 0;
  }
  if (rtsp_)
    rtsp_->stop();
  if (srt_)
    srt_->stop();
  for (auto &[id, l] : lives_) {
    if (l->puller)
      l->puller->stop_blocking(2000);
    {
      std::lock_guard<std::mutex> lock(l->input->mutex);
      l->input->feed.clear();
    }
    if (l->end_timer) {
      g_source_remove(l->end_timer);
      l->end_timer = 0;
    }
    // The open segments are closed and listed, then every playlist ends.
    if (l->ladder)
      l->ladder->drain_blocking(2000);
    for (auto &d : l->draining)
      d->drain_blocking(1000);
    l->ladder.reset();
    l->draining.clear();
    try {
      if (!l->output->ended())
        l->output->end();
    } catch (const Error &e) {
      GST_WARNING("stream %s: %s", id.c_str(), e.what());
    }
  }
}

Live *Core::find(const std::string &id) {
  auto it = lives_.find(id);
  return it == lives_.end() ? nullptr : it->second.get();
}

std::shared_ptr<Input> Core::find_key(const std::string &key) {
  if (!app::is_stream_key(key))
    return nullptr;
  const std::string hash = auth::hash_key(key);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_hash_.find(hash);
  return it == by_hash_.end() ? nullptr : it->second;
}

void Core::add(const store::Stream &s) {
  if (stopped_ || lives_.count(s.id))
    return;
  auto l = std::make_unique<Live>();
  l->row = s;
  l->input = std::make_shared<Input>(weak_from_this(), s.id, s.key_hash);
  int segment_s = kSegmentSeconds; // of the stream's description (pipelines/live-*.json)
  try {
    segment_s = load_live_description(s.pipeline).segment_seconds;
  } catch (const Error &e) {
    GST_WARNING("stream %s: %s", s.id.c_str(), e.what()); // said again when a publisher comes
  }
  const int window = std::max(3, (config.live_window_s + segment_s - 1) / segment_s);
  l->output = std::make_unique<Output>(streams.folder(s.id), window, kKeepExtra);
  l->output->set_time_url("/streams/" + s.id + "/manifest.mpd"); // as http/streams.cpp serves it
  l->figures.since = s.created;
  if (s.source.empty())
    l->input->factory = Rtsp::make_factory(l->input);
  if (s.record) {
    l->recorder = std::make_unique<Recorder>(streams, s.id, s.title);
    l->figures.recording = "recording";
    streams.report(s.id, l->figures);
  }
  if (!s.source.empty()) {
    // The engine pulls it (live/pull.cpp): its key takes no publisher.
    l->puller = std::make_unique<Puller>(weak_from_this(), l->input, s.source);
    l->puller->start();
  } else {
    std::lock_guard<std::mutex> lock(mutex_);
    by_hash_[s.key_hash] = l->input;
  }
  lives_[s.id] = std::move(l);
}

void Core::remove(const std::string &id) {
  Live *l = find(id);
  if (!l)
    return;
  l->puller.reset(); // its pipeline stops off the loop
  {
    std::lock_guard<std::mutex> lock(mutex_);
    by_hash_.erase(l->input->key_hash);
  }
  kick(*l, "the stream was deleted");
  std::string mount;
  {
    std::lock_guard<std::mutex> lock(l->input->mutex);
    l->input->feed.clear();
    l->input->removed = true;
    mount = l->input->mount;
    l->input->mount.clear();
  }
  if (rtsp_ && !mount.empty())
    rtsp_->unmount(mount);
  if (l->recorder)
    l->recorder->discard(); // its event did not end
  if (l->end_timer)
    g_source_remove(l->end_timer);
  l->ladder.reset(); // stopped off the loop
  l->draining.clear();
  lives_.erase(id);
}

void Core::post_connecting(const std::string &id, std::uint64_t claim) {
  post([w = weak_from_this(), id, claim] {
    if (auto c = w.lock(); c && !c->stopped_)
      c->connecting(id, claim);
  });
}

void Core::post_ready(const std::string &id, std::uint64_t claim) {
  post([w = weak_from_this(), id, claim] {
    if (auto c = w.lock(); c && !c->stopped_)
      c->ready(id, claim);
  });
}

void Core::post_left(const std::string &id, std::uint64_t claim, const std::string &why) {
  post([w = weak_from_this(), id, claim, why] {
    if (auto c = w.lock(); c && !c->stopped_)
      c->left(id, claim, why);
  });
}

void Core::post_refused(const std::string &id, const std::string &why) {
  post([w = weak_from_this(), id, why] {
    auto c = w.lock();
    Live *l = c && !c->stopped_ ? c->find(id) : nullptr;
    if (!l)
      return;
    {
      std::lock_guard<std::mutex> lock(l->input->mutex);
      if (l->input->via != Via::None)
        return; // someone publishes: their state stands
    }
    c->set_state(*l, l->figures.state, why);
  });
}

void Core::set_state(Live &l, app::StreamState state, const std::string &reason) {
  if (l.figures.state != state)
    l.figures.since = g_get_real_time();
  l.figures.state = state;
  l.figures.reason = reason;
  l.figures.playlist = l.output->master_written();
  if (state != app::StreamState::Live && state != app::StreamState::Connecting) {
    l.figures.input_kbps = 0;
    l.figures.fps = 0;
    l.figures.latency_s = -1;
    l.edge_us = 0;
  }
  streams.report(l.row.id, l.figures);
}

void Core::connecting(const std::string &id, std::uint64_t claim) {
  Live *l = find(id);
  if (!l)
    return;
  {
    std::lock_guard<std::mutex> lock(l->input->mutex);
    if (l->input->via == Via::None || l->input->claim != claim)
      return;
  }
  if (l->end_timer) {
    g_source_remove(l->end_timer);
    l->end_timer = 0;
  }
  l->end_pending = false;
  l->tick_us = 0;
  l->dropped_before = 0;
  l->figures.dropped = 0;
  if (l->puller && l->figures.state == app::StreamState::Reconnecting)
    return; // a pulled source being opened again: reconnecting until its first segment
  set_state(*l, app::StreamState::Connecting, "");
}

void Core::ready(const std::string &id, std::uint64_t claim) {
  Live *l = find(id);
  if (!l)
    return;
  GstCaps *vcaps = nullptr, *acaps = nullptr;
  {
    std::lock_guard<std::mutex> lock(l->input->mutex);
    if (l->input->via == Via::None || l->input->claim != claim)
      return;
    vcaps = l->input->vcaps ? gst_caps_ref(l->input->vcaps) : nullptr;
    acaps = l->input->expects_audio && l->input->acaps ? gst_caps_ref(l->input->acaps) : nullptr;
  }
  std::unique_ptr<GstCaps, void (*)(GstCaps *)> vhold(vcaps, [](GstCaps *c) { gst_clear_caps(&c); });
  std::unique_ptr<GstCaps, void (*)(GstCaps *)> ahold(acaps, [](GstCaps *c) { gst_clear_caps(&c); });
  if (l->ladder) {
    // Still the ladder of an earlier publisher (its departure not handled yet): it drains.
    l->ladder->finish();
    l->draining.push_back(std::move(l->ladder));
  }
  try {
    LadderPlan plan = plan_ladder(load_live_description(l->row.pipeline), l->row.ladder, l->output->dir(),
                                  l->session + 1, vcaps, acaps);
    l->session++;
    l->output->begin(plan.renditions, plan.frame_rate(), plan.audio, plan.session, plan.cmaf, plan.segment_seconds);
    auto ladder = std::make_unique<Ladder>(plan, claim);
    Ladder *raw = ladder.get();
    std::weak_ptr<Core> w = weak_from_this();
    ladder->start(
        [w, id, raw](std::size_t i, const LiveSegment &s) {
          if (auto c = w.lock())
            c->segment(id, raw, i, s);
        },
        [w, id, raw](const std::string &e) {
          if (auto c = w.lock())
            c->ladder_done(id, raw, e);
        });
    {
      std::lock_guard<std::mutex> lock(l->input->mutex);
      Feed &f = l->input->feed;
      f.clear();
      if (l->input->via != Via::None && l->input->claim == claim) {
        f.claim = claim;
        f.pipeline = GST_ELEMENT(gst_object_ref(ladder->pipeline()));
        f.video = GST_ELEMENT(gst_object_ref(ladder->video_src()));
        f.audio = ladder->audio_src() ? GST_ELEMENT(gst_object_ref(ladder->audio_src())) : nullptr;
      }
    }
    std::string rungs;
    for (const auto &r : plan.renditions)
      rungs += (rungs.empty() ? "" : ",") + r.name;
    GST_INFO("stream %s: ladder %d of %s (%s at %d/%d fps%s)", id.c_str(), plan.session, plan.description.c_str(),
             rungs.c_str(), plan.fps_n, plan.fps_d, plan.audio ? ", audio to AAC" : ", no audio");
    l->ladder = std::move(ladder);
  } catch (const Error &e) {
    GST_WARNING("stream %s: %s", id.c_str(), e.what());
    kick(*l, e.what());
  }
}

void Core::segment(const std::string &id, Ladder *ladder, std::size_t rendition, const LiveSegment &seg) {
  Live *l = find(id);
  if (!l)
    return;
  const bool current = l->ladder.get() == ladder;
  if (!current && std::none_of(l->draining.begin(), l->draining.end(),
                               [ladder](const std::unique_ptr<Ladder> &d) { return d.get() == ladder; }))
    return;
  try {
    l->output->add(rendition, ladder->plan().session, seg);
  } catch (const Error &e) {
    GST_WARNING("stream %s: %s", id.c_str(), e.what());
    return;
  }
  // The live edge: where the newest segment of the top rung ends, in wall time.
  if (current && rendition == 0 && seg.date_us > 0)
    l->edge_us = seg.date_us + static_cast<std::int64_t>(seg.duration * G_USEC_PER_SEC);
  const bool cmaf = !seg.map.empty();
  const bool audio_track = cmaf && rendition == ladder->plan().renditions.size();
  if (l->recorder && (rendition == 0 || audio_track)) { // the top rung (and the audio of CMAF)
    if (cmaf)
      l->recorder->add_cmaf(!audio_track, ladder->plan().session, fs::join(l->output->dir(), seg.map),
                            fs::join(l->output->dir(), seg.uri), seg.number);
    else
      l->recorder->add(fs::join(l->output->dir(), seg.uri));
    if (l->figures.recording != "recording" && l->figures.recording != "saving") {
      l->figures.recording = "recording";
      l->figures.recording_error.clear();
    }
  }
  if (current && l->output->master_written() && l->figures.state != app::StreamState::Live)
    set_state(*l, app::StreamState::Live, "");
}

void Core::ladder_done(const std::string &id, Ladder *ladder, const std::string &error) {
  Live *l = find(id);
  if (!l)
    return;
  if (l->ladder.get() == ladder) {
    // It failed while it was fed: the publisher goes (and may come back).
    {
      std::lock_guard<std::mutex> lock(l->input->mutex);
      if (l->input->feed.claim == ladder->claim())
        l->input->feed.clear();
    }
    l->ladder.reset();
    GST_WARNING("stream %s: the live ladder failed: %s", id.c_str(), error.c_str());
    kick(*l, "the live ladder failed: " + error);
  } else {
    l->draining.erase(std::remove_if(l->draining.begin(), l->draining.end(),
                                     [ladder](const std::unique_ptr<Ladder> &d) { return d.get() == ladder; }),
                      l->draining.end());
  }
  if (l->end_pending && l->draining.empty() && !l->ladder) {
    l->end_pending = false;
    end(*l);
  }
}

void Core::left(const std::string &id, std::uint64_t claim, const std::string &why) {
  Live *l = find(id);
  if (!l)
    return;
  std::int64_t last_data = 0;
  bool someone = false;
  {
    std::lock_guard<std::mutex> lock(l->input->mutex);
    if (l->input->feed.claim == claim)
      l->input->feed.clear();
    someone = l->input->via != Via::None;
    last_data = l->input->last_data_us;
  }
  if (l->ladder && l->ladder->claim() == claim) {
    // Its last segments close now: the gap until a publisher comes back is in no segment.
    l->dropped_before += l->ladder->dropped();
    l->ladder->finish();
    l->draining.push_back(std::move(l->ladder));
  }
  if (someone)
    return; // another publisher took it already
  const bool playing = l->output->has_segments() && !l->output->ended();
  if (l->puller) {
    // The engine pulls it again (live/pull.cpp), for as long as the stream exists.
    set_state(*l, playing ? app::StreamState::Reconnecting : app::StreamState::Connecting, why);
    return;
  }
  set_state(*l, playing ? app::StreamState::Reconnecting : app::StreamState::Idle, why);
  if (!playing)
    return;
  // After the idle timeout without input, the stream ends.
  if (l->end_timer)
    g_source_remove(l->end_timer);
  const std::int64_t quiet_ms = (g_get_monotonic_time() - last_data) / 1000;
  const std::int64_t delay = std::max<std::int64_t>(200, config.live_idle_timeout_s * 1000LL - quiet_ms);
  struct Timer {
    std::weak_ptr<Core> core;
    std::string id;
  };
  l->end_timer = g_timeout_add_full(
      G_PRIORITY_DEFAULT, static_cast<guint>(delay),
      [](gpointer d) -> gboolean {
        auto *t = static_cast<Timer *>(d);
        try { // a GLib callback: nothing crosses it
          if (auto c = t->core.lock())
            if (Live *x = c->find(t->id)) {
              x->end_timer = 0;
              c->end(*x);
            }
        } catch (const std::exception &e) {
          GST_ERROR("live engine: %s", e.what());
        }
        return G_SOURCE_REMOVE;
      },
      new Timer{weak_from_this(), id}, [](gpointer d) { delete static_cast<Timer *>(d); });
}

void Core::end(Live &l) {
  {
    std::lock_guard<std::mutex> lock(l.input->mutex);
    if (l.input->via != Via::None)
      return; // a publisher came back
  }
  if (!l.draining.empty() || l.ladder) {
    l.end_pending = true;
    return;
  }
  try {
    l.output->end();
  } catch (const Error &e) {
    GST_WARNING("stream %s: %s", l.row.id.c_str(), e.what());
  }
  const bool ended = l.output->ended();
  if (ended && l.recorder && !l.recorder->empty())
    l.figures.recording = "saving";
  set_state(l, ended ? app::StreamState::Ended : app::StreamState::Idle,
            "no input for " + std::to_string(config.live_idle_timeout_s) + " s");
  if (!ended || !l.recorder)
    return;
  // The event is over: its recording becomes a video.
  l.recorder->finish([w = weak_from_this(), id = l.row.id](const std::string &video, const std::string &error) {
    auto c = w.lock();
    Live *x = c ? c->find(id) : nullptr;
    if (!x)
      return;
    if (x->figures.recording == "saving")
      x->figures.recording = error.empty() ? "saved" : "failed";
    if (!video.empty())
      x->figures.recording_video = video;
    x->figures.recording_error = error;
    c->streams.report(id, x->figures);
  });
}

void Core::kick(Live &l, const std::string &why) {
  Via via;
  std::uint64_t claim;
  GstRTSPClient *client = nullptr;
  {
    std::lock_guard<std::mutex> lock(l.input->mutex);
    via = l.input->via;
    claim = l.input->claim;
    if (l.input->client)
      client = GST_RTSP_CLIENT(g_object_ref(l.input->client));
  }
  // Released first, so that the reason is this one and not what closing the connection says.
  if (via != Via::None)
    l.input->release(claim, why);
  if (via == Via::Rtsp && client)
    Rtsp::kick(client);
  if (client)
    g_object_unref(client);
  if (via == Via::Srt && srt_)
    srt_->kick(l.row.id);
  if (via == Via::Pull && l.puller)
    l.puller->restart(why);
}

void Core::tick() {
  const std::int64_t now = g_get_monotonic_time();
  for (auto &[id, lp] : lives_) {
    Live &l = *lp;
    Via via;
    std::int64_t last_data, taken;
    std::uint64_t bytes, frames;
    bool video;
    {
      std::lock_guard<std::mutex> lock(l.input->mutex);
      via = l.input->via;
      last_data = l.input->last_data_us;
      taken = l.input->taken_us;
      bytes = l.input->bytes;
      frames = l.input->frames;
      video = l.input->vcaps != nullptr;
    }
    if (via == Via::None)
      continue;
    if (!video && now - taken > kNoVideoUs) {
      kick(l, "no video in the input after " + std::to_string(kNoVideoUs / G_USEC_PER_SEC) + " s");
      continue;
    }
    // A publisher that sends nothing (frozen, or its connection half open) is let go.
    if (now - last_data > config.live_idle_timeout_s * G_USEC_PER_SEC) {
      kick(l, "no input for " + std::to_string(config.live_idle_timeout_s) + " s");
      continue;
    }
    if (l.tick_us == 0) {
      l.tick_us = now;
      l.tick_bytes = bytes;
      l.tick_frames = frames;
      continue;
    }
    if (now - l.tick_us < kFiguresEvery)
      continue;
    const double dt = static_cast<double>(now - l.tick_us) / G_USEC_PER_SEC;
    l.figures.input_kbps = round1(static_cast<double>(bytes - l.tick_bytes) * 8.0 / 1000.0 / dt);
    l.figures.fps = round1(static_cast<double>(frames - l.tick_frames) / dt);
    l.figures.dropped = l.dropped_before + (l.ladder ? l.ladder->dropped() : 0);
    // How far the live edge is behind the present: what a player at the edge is behind the input at best.
    l.figures.latency_s =
        l.edge_us > 0 ? round1(static_cast<double>(g_get_real_time() - l.edge_us) / G_USEC_PER_SEC) : -1;
    l.tick_us = now;
    l.tick_bytes = bytes;
    l.tick_frames = frames;
    streams.report(id, l.figures);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Engine

Engine::Engine(const ServerConfig &config, app::Streams &streams)
    : config_(config), streams_(streams), core_(std::make_shared<Core>(config, streams)) {}

Engine::~Engine() {
  stop();
}

void Engine::start() {
  core_->start();
}

void Engine::stop() {
  core_->stop();
  // Pipelines stopped on threads of their own (a publisher's ladder, the SRT listener after each caller) end before
  // the process does.
  if (!wait_for_stops(5000))
    GST_WARNING("live pipelines still stopping after 5 s: left behind");
}

int Engine::rtsp_port() const {
  return core_->rtsp_port();
}

int Engine::srt_port() const {
  return core_->srt_port();
}

std::string Engine::rtsp_url() const {
  const int port = rtsp_port();
  return port < 0 ? "" : app::rtsp_url(config_.rtsp_host, port);
}

std::string Engine::srt_url() const {
  const int port = srt_port();
  return port < 0 ? "" : app::srt_url(config_.srt_host, port);
}

void Engine::add(const store::Stream &s) {
  core_->add(s);
}

void Engine::remove(const std::string &id) {
  core_->remove(id);
}

} // namespace sluice::live
