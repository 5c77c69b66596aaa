// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is asking: a bearer credential (an API key of the catalog or a JWT) -> the scopes it grants.
#pragma once

#include "auth/jwt.h"
#include "auth/keys.h"
#include "core/config.h"
#include "store/store.h"

#include <cstdint>
#include <string>

namespace sluice::auth {

struct Identity {
  bool ok = false;
  Scopes scopes = 0;
  std::string who; // "key NAME" or "jwt SUBJECT", for the log (never the credential)
  std::string why; // why a credential was refused, for the client
};

class Authenticator {
public:
  // Reads [auth] (the JWT secret and key files too); throws Error (Invalid) naming what is wrong.
  Authenticator(const ServerConfig &config, store::Store &store);

  Mode mode() const { return mode_; }
  // The identity of a bearer credential (the text after "Bearer "), at now_us (g_get_real_time()).
  Identity authenticate(const std::string &credential, std::int64_t now_us);

private:
  Identity by_key(const std::string &key, std::int64_t now_us);

  Mode mode_;
  store::Store &store_;
  JwtSettings jwt_;
};

// Refuses (Error Invalid, saying how to make a key) auth mode none on an HTTP address other machines can reach.
// [rtsp] listen and [srt] listen may be any address in every mode: publishing needs a stream's key, and RTSP
// plays what HTTP plays to anyone (a video under its playback policy, a live stream), whatever [auth] says.
void check_listen(const ServerConfig &config);

} // namespace sluice::auth
