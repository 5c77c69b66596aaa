// SPDX-License-Identifier: LGPL-2.1-or-later
// The live engine: publishers over RTSP and SRT, one HLS ladder per live stream, its state and figures.
#pragma once

#include "app/streams.h"
#include "core/config.h"

#include <memory>
#include <string>

namespace sluice::app {
class Service;
}

namespace sluice::live {

class Core;

class Engine final : public app::LiveEngine {
public:
  Engine(const ServerConfig &config, app::Streams &streams);
  ~Engine() override;
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  // Takes publishers on [rtsp] listen and [srt] listen (port 0: a free one). An address that cannot be bound
  // is reported on stderr and left off (rtsp_port()/srt_port() say -1). On the main loop, before it runs.
  void start();
  // Stops the listeners and every ladder, ending the live playlists; blocks a few seconds at most. After the
  // main loop has stopped, before the service goes.
  void stop();

  // The ports taken (-1: off), and "rtsp://ADDR:PORT/" / "srt://ADDR:PORT" ("" when off).
  int rtsp_port() const;
  int srt_port() const;
  std::string rtsp_url() const;
  std::string srt_url() const;

  // Plays ready videos on rtsp://HOST:PORT/videos/ID (live/rtsp_play.cpp). Before start().
  void serve_videos(app::Service &service);

  void add(const store::Stream &s) override;
  void remove(const std::string &id) override;

private:
  const ServerConfig &config_;
  app::Streams &streams_;
  std::shared_ptr<Core> core_;
};

} // namespace sluice::live
