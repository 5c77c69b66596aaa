// SPDX-License-Identifier: LGPL-2.1-or-later
// GET /metrics: the server's metrics in the Prometheus text format, served by libsoup.
#include "http/respond.h"
#include "http/routes.h"

namespace sluice::http::handlers {

void metrics(Context &cx, Request &rq) {
  // What is read rather than counted: jobs by state, free space, event streams.
  cx.service.refresh_metrics();
  auto &m = cx.service.metrics();
  m.set_sse_clients(static_cast<double>(cx.sse_clients.size()));
  const std::string text = m.text();
  soup_server_message_set_status(rq.msg, SOUP_STATUS_OK, nullptr);
  soup_message_headers_replace(soup_server_message_get_response_headers(rq.msg), "Cache-Control", "no-store");
  soup_server_message_set_response(rq.msg, "text/plain; version=0.0.4; charset=utf-8", SOUP_MEMORY_COPY, text.data(),
                                   text.size());
}

} // namespace sluice::http::handlers
