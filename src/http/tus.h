// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads over HTTP: the tus 1.0.0 protocol at /api/v1/uploads, and direct-upload tokens.
#pragma once

#include "http/context.h"
#include "http/routes.h"

#include <string>

namespace sluice::http {

inline constexpr const char *kTusVersion = "1.0.0";

// Whether path is under /api/v1/uploads (every answer there carries Tus-Resumable).
bool is_tus_path(const std::string &path);
// The tus headers of an OPTIONS answer there.
void tus_options(Context &cx, SoupServerMessage *msg);

// The chain's body step for Body::Tus routes: Tus-Resumable and the upload headers are checked, the upload is
// created (POST) or locked for this PATCH, and the body is streamed into it as it arrives. True: answered.
bool tus_body(Context &cx, SoupServerMessage *msg, const Match &m);

// A direct-upload token (?token=) on a tus route. The CORS step calls direct_cors (true when the token is good
// for this route and the request's Origin is its origin: the CORS headers are set for it); the auth step
// calls direct_auth instead of checking a key: Allowed lets the request through without one.
enum class DirectAuth { None, Allowed, Refused };
bool direct_cors(Context &cx, SoupServerMessage *msg, const Match &m);
DirectAuth direct_auth(Context &cx, SoupServerMessage *msg, const Match &m);
// Whether msg carries a direct-upload token on a tus route (the auth step checks it, and its origin, itself).
bool carries_direct_token(SoupServerMessage *msg, const Match &m);

} // namespace sluice::http
