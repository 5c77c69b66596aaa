// SPDX-License-Identifier: LGPL-2.1-or-later
// The rate-limit step of the middleware chain: who is asking, the route's budget, 429 and the RateLimit-* headers.
#pragma once

#include "http/context.h"
#include "http/routes.h"

#include <string>

namespace sluice::http {

// Where authentication leaves the caller's name on a message ("key NAME", "jwt SUBJECT"): its budgets are the
// caller's, else the client address's.
inline constexpr const char *kCallerKey = "sluice-caller";
// Set on a message whose upload bytes went over the budget (its body is no longer written).
inline constexpr const char *kRateRefusedKey = "sluice-rate-refused";

// Draws msg on its route's budget ([limits]); answers 429 rate_limited with Retry-After and returns true when it
// is spent. Every limited answer carries RateLimit-Limit, -Remaining and -Reset. An upload also draws its bytes
// as they arrive and is refused (its file removed) when they run out.
bool rate_limit(Context &cx, SoupServerMessage *msg, const Match &m);

// The client's address: the connection's peer, or, when the peer is one of [server] trusted-proxies, the nearest
// address of X-Forwarded-For that is not.
std::string client_address(Context &cx, SoupServerMessage *msg);
// The same for a request read without libsoup: the connection's remote address and the request's headers.
std::string client_address(Context &cx, GSocketAddress *remote, SoupMessageHeaders *headers);

// The media budget's part of the chain for a request answered without libsoup (http/fast.cpp): true when the
// request may be answered (its RateLimit-* headers then set on response, when [limits] count media), false when it
// is over the budget (libsoup's path then answers it: 429).
bool take_media_request(Context &cx, GSocketAddress *remote, SoupMessageHeaders *request, SoupMessageHeaders *response);

} // namespace sluice::http
