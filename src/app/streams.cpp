// SPDX-License-Identifier: LGPL-2.1-or-later
// Live streams as a resource: the catalog's rows, their keys (kept as hashes), and the state the engine reports.
#include "app/streams.h"

#include "app/service_internal.h"
#include "auth/keys.h"
#include "core/fs.h"
#include "core/json.h"
#include "media/ladder.h"
#include "store/executor.h"

namespace sluice::app {

using namespace detail;

namespace {

// What every stream key begins with (is_stream_key).
constexpr const char *kKeyPrefix = "lk_";

// Every this many microseconds a live stream's figures go out as an event.
constexpr std::int64_t kFiguresEvery = 2 * G_USEC_PER_SEC;

bool source_scheme_ok(const std::string &source) {
  for (const char *scheme : {"rtsp://", "rtsps://", "srt://", "http://", "https://"})
    if (g_str_has_prefix(source.c_str(), scheme))
      return true;
  return false;
}

// A host as it goes into a URL: an IPv6 address in brackets.
std::string url_host(const std::string &host) {
  return host.find(':') != std::string::npos && host.front() != '[' ? "[" + host + "]" : host;
}

} // namespace

std::string rtsp_url(const std::string &host, int port, const std::string &path) {
  return "rtsp://" + url_host(host) + ":" + std::to_string(port) + "/" + path;
}

std::string srt_url(const std::string &host, int port, const std::string &key) {
  return "srt://" + url_host(host) + ":" + std::to_string(port) + (key.empty() ? "" : "?streamid=" + key);
}

std::string live_path(const std::string &key_or_id) {
  return "live/" + key_or_id;
}

std::string video_path(const std::string &id) {
  return "videos/" + id;
}

bool is_stream_key(const std::string &text) {
  return g_str_has_prefix(text.c_str(), kKeyPrefix) && text.size() <= 100;
}

JsonObject *recording_json(const StreamFigures &f) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "state", f.recording.c_str());
  if (f.recording_video.empty())
    json_object_set_null_member(o, "video_id");
  else
    json_object_set_string_member(o, "video_id", f.recording_video.c_str());
  if (!f.recording_error.empty())
    json_object_set_string_member(o, "error", f.recording_error.c_str());
  return o;
}

const char *stream_state_name(StreamState s) {
  switch (s) {
  case StreamState::Idle: return "idle";
  case StreamState::Connecting: return "connecting";
  case StreamState::Live: return "live";
  case StreamState::Reconnecting: return "reconnecting";
  case StreamState::Ended: return "ended";
  }
  return "idle";
}

Streams::Streams(Service &service) : service_(service) {}

Streams::~Streams() {
  *alive_ = false;
}

void Streams::set_engine(LiveEngine *engine) {
  engine_ = engine;
  if (!engine_)
    return;
  for (const auto &s : service_.store().streams()) {
    figures_.try_emplace(s.id); // known: its files are served without asking the catalog
    engine_->add(s);
  }
}

std::string Streams::folder(const std::string &id) const {
  return fs::join(fs::join(service_.scheduler().layout().data_dir, "streams"), id);
}

Result<std::string> Streams::media_file(const std::string &id, const std::vector<std::string> &inside) {
  if (!store::is_id(id) || inside.empty() || inside.size() > 2)
    return refused(Refusal::NotFound, "no such file");
  // What a live output is made of: playlists, the MPD, MPEG-TS segments, and CMAF's NAME/init-S.mp4 and
  // NAME/S-N.m4s; never a hidden file (a playlist or segment being written).
  for (const auto &s : inside)
    if (s.empty() || s.front() == '.')
      return refused(Refusal::NotFound, "no such file");
  const std::string &name = inside.back();
  const bool cmaf_file = g_str_has_suffix(name.c_str(), ".m4s") || g_str_has_suffix(name.c_str(), ".mp4");
  const bool top_file = g_str_has_suffix(name.c_str(), ".m3u8") || g_str_has_suffix(name.c_str(), ".mpd") ||
                        g_str_has_suffix(name.c_str(), ".ts");
  if (inside.size() == 2 ? !cmaf_file : !top_file)
    return refused(Refusal::NotFound, "no such file");
  auto path = fs::resolve_under(folder(id), inside, fs::join(service_.scheduler().layout().data_dir, "streams"));
  if (!path)
    return refused(Refusal::NotFound, "no such file");
  return *path;
}

void Streams::create(const StreamRequest &r, std::function<void(Result<StreamView>)> done) {
  if (!service_.accepting())
    return done(shutting_down());
  if (r.pipeline != "live-hls" && r.pipeline != "live-cmaf")
    return done(refused(Refusal::InvalidParameter, "field 'pipeline': expected live-hls or live-cmaf", "pipeline"));
  if (!r.ladder.empty()) {
    try {
      media::parse_ladder(r.ladder);
    } catch (const Error &e) {
      return done(refused(Refusal::InvalidParameter, std::string("field 'ladder': ") + e.what(), "ladder"));
    }
  }
  if (!r.source.empty() && (!source_scheme_ok(r.source) || r.source.size() > 2000 ||
                            r.source.find_first_of(" \t\r\n\"'") != std::string::npos))
    return done(refused(
        Refusal::InvalidParameter,
        "field 'source': expected an rtsp://, srt://, http:// or https:// URL (or null: publishers push)", "source"));
  StreamView v;
  v.key = kKeyPrefix + auth::new_key().substr(auth::kKeyPrefix.size());
  // The key goes in URLs (RTSP paths, SRT stream ids): base64url only.
  v.stream.id = store::new_id();
  v.stream.title = r.title.substr(0, 200);
  v.stream.key_hash = auth::hash_key(v.key);
  v.stream.pipeline = r.pipeline;
  v.stream.ladder = r.ladder;
  v.stream.record = r.record;
  v.stream.source = r.source;
  v.stream.created = g_get_real_time();
  // The row first: the engine takes the stream's publishers only once it exists (the key is known nowhere else yet).
  // Copied before the call: v is moved into the answer, and the order in which arguments are made is unspecified.
  store::Stream row = v.stream;
  service_.executor().run(
      [row = std::move(row)](store::Store &s) {
        s.add_stream(row);
        return true;
      },
      [this, alive = alive_, v = std::move(v), done = std::move(done)](store::Outcome<bool> &o) mutable {
        if (!*alive)
          return done(shutting_down());
        if (!o.ok()) {
          SLUICE_LOG(app_log(), Error, "cannot create a stream: %s", o.error->what());
          return done(failure_of(*o.error));
        }
        SLUICE_LOG(app_log(), Info, "stream %s created (%s%s)", v.stream.id.c_str(), v.stream.pipeline.c_str(),
                   v.stream.source.empty() ? ", published" : ", pulled");
        v.figures.since = v.stream.created;
        if (v.stream.record)
          v.figures.recording = "recording";
        figures_[v.stream.id] = v.figures;
        if (engine_)
          engine_->add(v.stream);
        publish(v.stream.id, figures_[v.stream.id]);
        done(std::move(v));
      });
}

StreamView Streams::view(const store::Stream &s) const {
  StreamView v;
  v.stream = s;
  if (auto it = figures_.find(s.id); it != figures_.end())
    v.figures = it->second;
  return v;
}

void Streams::remove(const std::string &id, std::function<void(std::optional<Failure>)> done) {
  if (!store::is_id(id))
    return done(refused(Refusal::NotFound, "no stream " + id));
  // The row goes first, in one statement that says whether there was one (two deletions at once: one is 404). The
  // engine keeps the stream until it is gone, so that a deletion the catalog refused leaves it running as before.
  service_.executor().run([id](store::Store &s) { return s.delete_stream(id); },
                          [this, alive = alive_, id, done = std::move(done)](store::Outcome<bool> &o) {
                            if (!*alive)
                              return done(shutting_down());
                            if (!o.ok()) {
                              SLUICE_LOG(app_log(), Error, "cannot delete stream %s: %s", id.c_str(), o.error->what());
                              return done(failure_of(*o.error));
                            }
                            if (!*o.value)
                              return done(refused(Refusal::NotFound, "no stream " + id));
                            if (engine_)
                              engine_->remove(id);
                            fs::remove_all(folder(id));
                            figures_.erase(id);
                            published_.erase(id);
                            JsonObject *obj = json_object_new();
                            json_object_set_string_member(obj, "id", id.c_str());
                            json_object_set_string_member(obj, "action", "deleted");
                            json::Node n(json::object_node(obj));
                            service_.events().publish("stream", "", "", json::to_string(n.get(), false));
                            done(std::nullopt);
                          });
}

void Streams::report(const std::string &id, const StreamFigures &f) {
  auto &cur = figures_[id];
  const bool changed =
      cur.state != f.state || cur.playlist != f.playlist || cur.reason != f.reason || cur.recording != f.recording;
  if (cur.state != f.state && (f.state == StreamState::Live || f.state == StreamState::Ended)) {
    // The webhooks' outbox, on the executor (the state itself is the engine's, kept in memory).
    const char *type = f.state == StreamState::Live ? "stream.live" : "stream.ended";
    service_.executor().fire(
        [id, type, now = g_get_real_time()](store::Store &s) {
          s.add_events({{type, id}}, now);
        },
        std::string("write the ") + type + " event of stream " + id);
  }
  cur = f;
  const std::int64_t now = g_get_real_time();
  if (changed || now - published_[id] >= kFiguresEvery)
    publish(id, cur);
}

void Streams::publish(const std::string &id, const StreamFigures &f) {
  published_[id] = g_get_real_time();
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", id.c_str());
  json_object_set_string_member(o, "state", stream_state_name(f.state));
  if (!f.reason.empty())
    json_object_set_string_member(o, "reason", f.reason.c_str());
  json_object_set_double_member(o, "input_kbps", f.input_kbps);
  json_object_set_double_member(o, "fps", f.fps);
  json_object_set_int_member(o, "dropped_frames", f.dropped);
  if (f.latency_s >= 0)
    json_object_set_double_member(o, "latency", f.latency_s);
  if (!f.recording.empty())
    json_object_set_object_member(o, "recording", recording_json(f));
  json::Node n(json::object_node(o));
  service_.events().publish("stream", "", "", json::to_string(n.get(), false));
}

} // namespace sluice::app
