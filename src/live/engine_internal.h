// SPDX-License-Identifier: LGPL-2.1-or-later
// What the parts of the live engine share: a stream's input as the ingest threads see it, the engine's core.
#pragma once

#include "app/streams.h"
#include "core/config.h"
#include "core/gobj.h"
#include "live/ladder.h"
#include "live/playlist.h"

#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(sluice_live_debug);

namespace sluice::live {

enum class Via { None, Rtsp, Srt, Pull };

struct Input;

// What the appsinks of an ingest pipeline (an SRT listener, a pulled source) share: the input they feed, under
// the claim of its publisher, and which streams they took.
struct SinkFeed {
  std::mutex mutex; // guards what follows (and what a subclass says it guards)
  std::shared_ptr<Input> input;
  std::uint64_t claim = 0;
  bool video = false, audio = false;
  // Streams of the source not taken apart yet (a pulled source's RTP streams come one by one): while there are
  // some, the first video sample does not tell every stream there is (2 s of video at most are waited for).
  int pending = 0;
};
// A parsebin's new pad: the first video and the first audio into appsinks that feed `feed`'s input (via `via`),
// anything else into a fakesink. `what` names the input in the log.
void link_parsed_pad(GstElement *parsebin, GstPad *pad, std::shared_ptr<SinkFeed> feed, Via via, const char *what);

// Where a publisher's samples go: the running ladder's appsrcs, and how its timestamps are moved onto the
// ladder's timeline.
struct Feed {
  GstElement *pipeline = nullptr, *video = nullptr, *audio = nullptr; // refs
  std::uint64_t claim = 0;                                            // the publisher it takes
  bool started = false;                                               // a keyframe went in: what follows goes in too
  std::int64_t offset = 0;                                            // ns added to the input's running time
  GstCaps *vcaps = nullptr, *acaps = nullptr;                         // what the appsrcs were told (refs)
  void clear();
};

class Core;
class Puller;
struct Viewer; // an RTSP viewer's media of a live stream (live/rtsp_play.cpp)

// What RTSP playback may serve of a video (live/rtsp_play.cpp): 200 with its source file and media types,
// or the status to answer (401, 403, 404, 503).
struct VodAnswer {
  int status = 404;
  std::string file, video, audio;
};

// A stream as the ingest threads (RTSP clients, srtsrc, streaming threads) see it. `mutex` guards the members
// after it; nothing here touches the main loop's objects: events go there through post().
struct Input {
  Input(std::weak_ptr<Core> core, std::string id, std::string key_hash);
  ~Input();
  Input(const Input &) = delete;
  Input &operator=(const Input &) = delete;

  const std::weak_ptr<Core> core;
  const std::string id;
  const std::string key_hash;

  std::mutex mutex;
  // The publisher that holds the stream now (Via::None: nobody). `claim` increases with every one.
  Via via = Via::None;
  std::uint64_t claim = 0;
  GstRTSPClient *client = nullptr;        // ref
  GstRTSPMedia *media = nullptr;          // compared only
  GstRTSPMediaFactory *factory = nullptr; // ref: the RTSP record factory (it knows this Input weakly)
  std::string mount;                      // the RTSP path mounted for the key ("" until a publisher came)
  bool removed = false;                   // the stream was deleted
  bool streams_known = false;             // whether it is known if it has audio
  bool expects_audio = false;
  GstCaps *vcaps = nullptr, *acaps = nullptr;                                       // refs
  GstClockTime first_video = GST_CLOCK_TIME_NONE, last_video = GST_CLOCK_TIME_NONE; // running times
  bool ready_posted = false;
  std::uint64_t bytes = 0, frames = 0;
  std::int64_t last_data_us = 0;
  std::int64_t taken_us = 0; // when the publisher took it (monotonic)
  Feed feed;
  std::vector<std::shared_ptr<Viewer>> viewers; // RTSP viewers of the live input (live/rtsp_play.cpp)

  // A publisher takes the stream (under `mutex`): returns its claim.
  std::uint64_t take_locked(Via v);
  // The publisher of `claim` is gone (any thread): the main loop hears of it once.
  void release(std::uint64_t claim, const std::string &why);
  // A sample of the publisher of `claim` (a streaming thread).
  void on_sample(std::uint64_t claim, GstSample *sample, bool video);
  // Bytes of the publisher of `claim` came in, samples or not (a streaming thread): it is not idle.
  void touch(std::uint64_t claim);
  // Under `mutex`: posts "ready" once the caps the ladder is planned from are known.
  void check_ready_locked();
  // Under `mutex`: a video sample goes to the RTSP viewers too; the publisher left: their media ends.
  void feed_viewers_locked(GstBuffer *buf, GstCaps *caps, GstClockTime pts, GstClockTime dts, bool video);
  void end_viewers_locked();
};

// The recording of a `record: true` stream (live/record.cpp): the top rung's segments are kept, out of the
// sliding window's reach (hard links in DATA/streams/ID.rec/), until the event ends; then they become one
// MPEG-TS file, made off the main loop, that the service ingests as a video. Main loop only.
class Recorder {
public:
  // Takes up the segments an earlier run of the server kept.
  Recorder(app::Streams &streams, std::string stream_id, std::string title);
  // A segment of the top rung was listed (its file, still there).
  void add(const std::string &segment_path);
  // A CMAF segment of the top rung (video) or of the audio was listed (live-cmaf): its file, still there, its init
  // segment, the ladder's session and its number in it.
  void add_cmaf(bool video, int session, const std::string &init_path, const std::string &segment_path, int number);
  bool empty() const { return count_ == 0; }
  // The event ended: what was kept becomes a video. `done(video_id, error)` runs on the main loop (after the
  // stream was deleted too: the recording is the library's from now on). Nothing when nothing was kept.
  using DoneFn = std::function<void(const std::string &video_id, const std::string &error)>;
  void finish(DoneFn done);
  // The stream was deleted before its event ended: what was kept goes.
  void discard();

private:
  app::Streams &streams_;
  std::string id_, title_, dir_;
  int count_ = 0; // segments kept
  int next_ = 0;  // the number of the next one
  // CMAF: the part of the recording (a publisher session of the event) each ladder session records into, and the
  // number of the next one.
  std::map<int, int> parts_;
  int part_ = 0;
};

// One live stream on the main loop.
struct Live {
  store::Stream row;
  std::shared_ptr<Input> input;
  std::unique_ptr<Output> output;
  std::unique_ptr<Ladder> ladder;                // fed by the publisher now
  std::vector<std::unique_ptr<Ladder>> draining; // their publisher left; the last segments are closing
  int session = 0;
  app::StreamFigures figures;
  guint end_timer = 0;
  bool end_pending = false; // ends once the draining ladders are done
  std::uint64_t tick_bytes = 0, tick_frames = 0;
  std::int64_t tick_us = 0;
  std::int64_t dropped_before = 0;    // frames dropped by the earlier ladders of this publisher
  std::int64_t edge_us = 0;           // wall time of the newest listed frame of the top rung (0: none yet)
  std::unique_ptr<Recorder> recorder; // a `record: true` stream's
  std::unique_ptr<Puller> puller;     // a stream with a `source`: the engine pulls it
};

// A pulled source (live/pull.cpp): urisourcebin (rtspsrc over TCP, srtsrc caller without auto-reconnect,
// souphttpsrc) and a parsebin per stream feed the Input like a publisher. On an error, EOS or no data for 5 s
// the attempt is torn down (off the loop) and rebuilt after 1, 2, 4, 8 s (reset after 10 s of data). Main loop.
class Puller {
public:
  Puller(std::weak_ptr<Core> core, std::shared_ptr<Input> input, std::string uri);
  ~Puller();
  Puller(const Puller &) = delete;
  Puller &operator=(const Puller &) = delete;
  void start();
  // The engine let the input go (no input, the ladder failed): pulled again after the backoff.
  void restart(const std::string &why);
  // At shutdown, once the loop no longer runs.
  void stop_blocking(int timeout_ms);

  struct Attempt;

private:
  void attempt();
  void watch();
  void fail(const std::string &why);
  void schedule();
  // Stops watching the attempt and lets its appsinks feed nothing; returns its pipeline, to be stopped.
  GstPtr<GstElement> let_go();
  void teardown();
  static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer self);

  std::weak_ptr<Core> core_;
  std::shared_ptr<Input> input_;
  std::string uri_;
  std::shared_ptr<Attempt> attempt_;
  GstPtr<GstElement> pipeline_;
  std::uint64_t claim_ = 0, bytes_at_start_ = 0;
  std::int64_t data_since_us_ = 0;
  guint backoff_ = 0, bus_watch_ = 0, watchdog_id_ = 0, retry_id_ = 0;
};

class Rtsp;
class Srt;

class Core : public std::enable_shared_from_this<Core> {
public:
  Core(const ServerConfig &config, app::Streams &streams);
  ~Core();

  // Main loop.
  void start();
  void stop();
  void add(const store::Stream &s);
  void remove(const std::string &id);
  int rtsp_port() const;
  int srt_port() const;

  // Any thread.
  std::shared_ptr<Input> find_key(const std::string &key);
  std::shared_ptr<Input> find_id(const std::string &id); // live/rtsp_play.cpp
  void post_connecting(const std::string &id, std::uint64_t claim);
  void post_ready(const std::string &id, std::uint64_t claim);
  void post_left(const std::string &id, std::uint64_t claim, const std::string &why);
  // A publisher was refused before it took the stream (what it sends cannot be used): the stream's state says why
  // while nobody publishes.
  void post_refused(const std::string &id, const std::string &why);

  const ServerConfig &config;
  app::Streams &streams;
  // Looks a video up for RTSP playback (set before start; called on the main loop): id, token.
  std::function<VodAnswer(const std::string &, const std::string &)> vod;

private:
  void connecting(const std::string &id, std::uint64_t claim);
  void ready(const std::string &id, std::uint64_t claim);
  void left(const std::string &id, std::uint64_t claim, const std::string &why);
  void segment(const std::string &id, Ladder *ladder, std::size_t rendition, const LiveSegment &seg);
  void ladder_done(const std::string &id, Ladder *ladder, const std::string &error);
  void end(Live &l);
  void kick(Live &l, const std::string &why);
  void tick();
  void set_state(Live &l, app::StreamState state, const std::string &reason);
  Live *find(const std::string &id);

  std::mutex mutex_; // by_hash_
  std::map<std::string, std::shared_ptr<Input>> by_hash_;
  std::map<std::string, std::unique_ptr<Live>> lives_;
  std::unique_ptr<Rtsp> rtsp_;
  std::unique_ptr<Srt> srt_;
  guint tick_id_ = 0;
  bool stopped_ = false;
};

// The RTSP server: publishers ANNOUNCE and RECORD on /live/KEY (live/rtsp.cpp).
class Rtsp {
public:
  explicit Rtsp(std::weak_ptr<Core> core);
  ~Rtsp();
  // Binds host:port (0: a free one); false with the reason when it cannot.
  bool start(const std::string &host, int port, std::string &error);
  void stop();
  int port() const { return port_; }
  // The record factory of a stream (a new reference): mounted at /live/KEY on the first request that names
  // its key.
  static GstRTSPMediaFactory *make_factory(const std::shared_ptr<Input> &input);
  void unmount(const std::string &path);
  // Closes a publisher's connection.
  static void kick(GstRTSPClient *client);

private:
  std::weak_ptr<Core> core_;
  GstRTSPServer *server_ = nullptr;
  GstRTSPMountPoints *mounts_ = nullptr;
  GSource *source_ = nullptr;
  guint cleanup_id_ = 0;
  int port_ = -1;
};

// RTSP playback (live/rtsp_play.cpp): status checks on every client of the server, and the mount of a
// /videos/ID or /live/ID path the first time a request names it.
void play_start(GstRTSPServer *server, const std::weak_ptr<Core> &core);
// An ANNOUNCE or RECORD on them gets *path replaced by one that matches nothing.
void play_mount(GstRTSPMountPoints *mounts, const std::shared_ptr<Core> &core, gchar **path);

// The SRT listener (live/srt.cpp): callers connect with streamid=KEY, one at a time.
class Srt {
public:
  explicit Srt(std::weak_ptr<Core> core);
  ~Srt();
  bool start(const std::string &host, int port, std::string &error);
  void stop();
  int port() const { return port_; }
  // The caller of this stream goes (its listener starts again).
  void kick(const std::string &id);

  struct Listener;

private:
  bool listen(std::string &error);
  // Listens again after delay_s; its caller is let go (`why`).
  void restart(guint delay_s, const std::string &why = "the publisher left");
  static gboolean on_bus(GstBus *bus, GstMessage *msg, gpointer self);
  gboolean handle(GstMessage *msg);

  std::weak_ptr<Core> core_;
  std::string host_;
  int port_ = -1;
  std::shared_ptr<Listener> listener_;
  GstPtr<GstElement> pipeline_;
  GSource *watch_ = nullptr;
  guint restart_id_ = 0;
  guint failures_ = 0;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace sluice::live
