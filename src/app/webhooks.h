// SPDX-License-Identifier: LGPL-2.1-or-later
// Webhooks' rules: the event types, the checks of an endpoint, its secrets and signatures, which addresses a
// delivery may reach, and when a failed delivery is tried again.
#pragma once

#include "app/service.h"
#include "store/store.h"

#include <gio/gio.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::app {

// The event types an endpoint may subscribe to, in the order the documentation lists them.
const std::vector<std::string> &webhook_event_types();

// What a creation asks for.
struct WebhookRequest {
  std::string url;
  std::vector<std::string> events;
  std::string description;
};

// The checks of a creation: an http or https url with a host and no user or password, at most 2048 bytes, whose
// host is not a loopback, private or link-local address written out (or localhost) unless allow_private (a name is
// resolved and checked at every delivery); one or more known event types, none twice; a description of at most
// 1000 bytes. The Failure names the field.
std::optional<Failure> check_webhook(const WebhookRequest &r, bool allow_private);

// A fresh secret: "whsec_" and 64 hex digits (32 random bytes).
std::string new_webhook_secret();

// The Sluice-Signature header: "t=T,v1=HEX" with one v1 per secret, HEX the HMAC-SHA256 of "T.BODY" with that secret.
std::string webhook_signature(std::int64_t t, const std::string &body, const std::vector<std::string> &secrets);
// The secrets that sign now: the endpoint's, and its previous one while the rotation's grace lasts.
std::vector<std::string> signing_secrets(const store::Webhook &w, std::int64_t now);

// Whether a delivery may go to this address: not loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
// link-local, unspecified, multicast, shared (100.64/10) or broadcast; an IPv4 address mapped into IPv6 is judged
// as the IPv4 one.
bool is_public_address(GInetAddress *a);

// How long to wait before the next attempt after `attempts` failed ones: base * 2^(attempts - 1), at most max, of
// which a random part (up to half) is taken off, so that endpoints that failed together are not retried together.
std::int64_t webhook_backoff_us(int attempts, double base_s, double max_s);

// Whether a failed answer is tried again: 408, 429 and 5xx are; other statuses (a 3xx, as redirects are not
// followed, and 4xx) are not.
bool webhook_status_retried(int status);

} // namespace sluice::app
