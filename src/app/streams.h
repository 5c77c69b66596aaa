// SPDX-License-Identifier: LGPL-2.1-or-later
// Live streams as a resource: created with a secret key, listed, deleted; their state as the live engine reports it.
#pragma once

#include "app/service.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

typedef struct _JsonObject JsonObject; // json-glib

namespace sluice::app {

enum class StreamState { Idle, Connecting, Live, Reconnecting, Ended };
const char *stream_state_name(StreamState s);

struct StreamRequest {
  std::string title;
  std::string pipeline = "live-hls";
  std::string ladder;
  bool record = false;
  std::string source; // "" or rtsp://, srt://, http(s)://
};

// What the live engine knows of a stream's input now.
struct StreamFigures {
  StreamState state = StreamState::Idle;
  std::string reason;       // why it is not live (an error, a publisher that left), "" if none
  double input_kbps = 0;    // the input's bitrate over the last seconds
  double fps = 0;           // frames per second decoded
  std::int64_t dropped = 0; // frames dropped since it went live
  double latency_s = -1;    // the live edge behind the input (-1: not known)
  std::int64_t since = 0;   // when the state began (microseconds since the epoch)
  bool playlist = false;    // a live master playlist is served
  // A `record: true` stream's recording: "" (not recorded), "recording" (its segments are kept), "saving" (the
  // event ended: one file is being made), "saved" (video_id is the video it became) or "failed" (error says why).
  std::string recording, recording_video, recording_error;
};

// The URLs of the live engine's listeners, spelled in this one place: "rtsp://HOST:PORT/PATH" and
// "srt://HOST:PORT" with "?streamid=KEY" when a key is given (an IPv6 HOST is put in brackets). A publisher's RTSP
// path is live_path(KEY), a viewer's live_path(ID), a ready video's video_path(ID) (the RTSP server reads its
// requests' paths with the same two functions, given "").
std::string rtsp_url(const std::string &host, int port, const std::string &path = "");
std::string srt_url(const std::string &host, int port, const std::string &key = "");
std::string live_path(const std::string &key_or_id);
std::string video_path(const std::string &id);

// Whether text has the shape of a stream key ("lk_" and base64url, as Streams makes them): the RTSP paths of
// publishers and viewers differ by it, and anything else is never looked up as a key.
bool is_stream_key(const std::string &text);

// A stream's `recording` member (a new object): state, video_id (null until saved), error when it failed.
JsonObject *recording_json(const StreamFigures &f);

struct StreamView {
  store::Stream stream;
  StreamFigures figures;
  std::string key; // only in the answer that made it
};

// The live engine (live/engine.h) as the service sees it: started and stopped per stream.
class LiveEngine {
public:
  virtual ~LiveEngine() = default;
  virtual void add(const store::Stream &s) = 0;
  virtual void remove(const std::string &id) = 0;
};

class Streams {
public:
  explicit Streams(Service &service);
  ~Streams();
  Streams(const Streams &) = delete;
  Streams &operator=(const Streams &) = delete;

  Service &service() { return service_; }

  // The engine that runs the streams (none: streams are made and listed, and stay idle). At start (the catalog is
  // read here, before anything is served) and at shutdown.
  void set_engine(LiveEngine *engine);

  // These write the catalog through the service's executor (off the main loop with PostgreSQL, at once with SQLite)
  // and call `done` on the main loop once the write is back, with what follows from it applied: the engine told,
  // the event published. A catalog that does not answer fails them as Unavailable within [store] timeout.
  void create(const StreamRequest &r, std::function<void(Result<StreamView>)> done);
  // The row goes first, then the engine lets its publisher go and its files are removed (NotFound: no such row).
  void remove(const std::string &id, std::function<void(std::optional<Failure>)> done);

  // A stream's row as the API shows it, with the figures the engine reported (its rows are read by the caller,
  // off the main loop: http/streams.cpp).
  StreamView view(const store::Stream &s) const;

  // The folder of a stream's live output (DATA/streams/ID).
  std::string folder(const std::string &id) const;
  // The file `inside` (decoded, checked path segments) of a stream's live output, when it exists (NotFound); the
  // catalog is not asked: the caller asks it when known(id) is false.
  Result<std::string> media_file(const std::string &id, const std::vector<std::string> &inside);
  // Whether the stream is one this process made or runs (its files are served without asking the catalog).
  bool known(const std::string &id) const { return figures_.count(id) > 0; }

  // From the engine: the stream's state and figures now (a `stream` event when the state changes, and every few
  // seconds while live with its figures).
  void report(const std::string &id, const StreamFigures &f);

private:
  void publish(const std::string &id, const StreamFigures &f);

  Service &service_;
  LiveEngine *engine_ = nullptr;
  std::map<std::string, StreamFigures> figures_;               // every stream this process made or runs
  std::map<std::string, std::int64_t> published_;              // when each stream's figures were last published
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true); // false once gone (answers coming back drop)
};

} // namespace sluice::app
