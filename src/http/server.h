// SPDX-License-Identifier: LGPL-2.1-or-later
// The HTTP front of `sluice serve`: the REST API, Server-Sent Events and media serving on libsoup 3.
#pragma once

#include "app/service.h"
#include "core/config.h"

#include <memory>
#include <string>

namespace sluice::http {

struct Context;
struct MetricsListener;

class Server {
public:
  Server(const ServerConfig &config, app::Service &service);
  ~Server();
  Server(const Server &) = delete;
  Server &operator=(const Server &) = delete;

  // Starts listening on the configured address, and on [metrics] listen when set; throws sluice::Error (Io).
  void listen();
  // "http://127.0.0.1:8080/", with the real port when the configured one was 0.
  const std::string &url() const { return url_; }
  // The same for the metrics address, which serves GET /metrics alone; "" when there is none.
  const std::string &metrics_url() const { return metrics_url_; }
  // Refuses new API writes (503) from now on; open event streams are closed.
  void stop_accepting();

private:
  std::unique_ptr<Context> cx_;
  std::unique_ptr<MetricsListener> metrics_;
  std::string url_, metrics_url_;
};

} // namespace sluice::http
