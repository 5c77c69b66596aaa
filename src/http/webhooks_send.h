// SPDX-License-Identifier: LGPL-2.1-or-later
// Delivers webhooks from the catalog's outbox: claims, builds, checks, signs and POSTs them, and writes the outcomes.
#pragma once

#include "app/service.h"
#include "core/config.h"
#include "store/store.h"

#include <libsoup/soup.h>

#include <memory>
#include <set>

namespace sluice::http {

// One per `sluice serve` process (roles all, api and worker: with PostgreSQL any process delivers, each delivery
// claimed by one of them per attempt). Everything happens on the main loop but the catalog calls, which go through the
// service's executor: every [webhooks] poll seconds it claims the due deliveries (the oldest pending one of each
// endpoint), builds the body of one sent for the first time (the video, job or stream as the API shows it then; later
// attempts send the body kept with the first), resolves the url's host and refuses a loopback, private or link-local
// address (unless [webhooks] allow-private), checks the address connected to again (a name that resolves differently
// the second time does not get through), POSTs it with libsoup's client (no redirect followed, no proxy, [webhooks]
// timeout for the whole attempt) and writes the outcome: succeeded on 2xx; retried after a backoff on a timeout, a
// connection error, 408, 429 or 5xx until [webhooks] give-up-after; failed otherwise.
class WebhookSender {
public:
  WebhookSender(const ServerConfig &config, app::Service &service);
  ~WebhookSender();
  WebhookSender(const WebhookSender &) = delete;
  WebhookSender &operator=(const WebhookSender &) = delete;

  void start();
  // Stops claiming and cancels the attempts in flight (their leases run out and they are attempted again: at least
  // once).
  void stop();

  struct Attempt; // webhooks_send.cpp

private:
  static gboolean on_poll(gpointer self);
  void poll();
  void begin(store::ClaimedDelivery c);
  void build(Attempt *a);
  void resolve(Attempt *a);
  void post(Attempt *a);
  void sent(Attempt *a, GInputStream *in, GError *err);
  // Writes the attempt's outcome on the executor; status 0 when no answer came. retry: whether it is tried again.
  void finish(Attempt *a, int status, const std::string &error, bool retry);
  void done(Attempt *a);

  const ServerConfig &config_;
  app::Service &service_;
  SoupSession *session_ = nullptr;
  guint timer_ = 0, idle_ = 0;
  bool claiming_ = false, stopped_ = true, again_ = false;
  std::set<Attempt *> attempts_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace sluice::http
