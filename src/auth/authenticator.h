// SPDX-License-Identifier: LGPL-2.1-or-later
// Who is asking: a bearer credential (an API key of the catalog or a JWT) -> the scopes it grants.
#pragma once

#include "auth/jwt.h"
#include "auth/keys.h"
#include "core/config.h"
#include "core/error.h"
#include "store/executor.h"
#include "store/store.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

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
  ~Authenticator() { *alive_ = false; }
  Authenticator(const Authenticator &) = delete;
  Authenticator &operator=(const Authenticator &) = delete;

  Mode mode() const { return mode_; }
  // The identity of a bearer credential (the text after "Bearer "), at now_us (g_get_real_time()).
  Identity authenticate(const std::string &credential, std::int64_t now_us);
  // A pool (a PostgreSQL catalog): keys are remembered as the catalog had them, read again on the executor once
  // older than a few seconds (used meanwhile), and their last use written there, nobody waiting for it. Inline or
  // none: every key is read and touched on the caller's thread, as it comes.
  void set_executor(store::Executor *executor) { executor_ = executor; }
  // Whether authenticate() knows the credential without waiting for the catalog (a JWT, a key remembered, an inline
  // executor or none). Otherwise (a pool, a key unseen or unseen for a minute) authenticate_later() reads it.
  bool answers_at_once(const std::string &credential) const;
  // The key's row read on the executor, then done(identity, nullptr) on the main loop, or done({}, &error) when the
  // catalog could not be read (the caller answers 503: neither admitted nor refused). Never after the authenticator
  // is gone.
  using Answered = std::function<void(const Identity &, const Error *)>;
  void authenticate_later(const std::string &credential, std::int64_t now_us, Answered done);

private:
  Identity by_key(const std::string &key, std::int64_t now_us);
  std::optional<store::ApiKey> cached_key(const std::string &hash);

  struct Cached {
    std::optional<store::ApiKey> row;
    std::int64_t at = 0; // monotonic microseconds
    bool refreshing = false;
  };

  Mode mode_;
  store::Store &store_;
  JwtSettings jwt_;
  store::Executor *executor_ = nullptr;
  std::unordered_map<std::string, Cached> keys_; // by hash
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Refuses (Error Invalid, saying how to make a key) auth mode none on an HTTP address other machines can reach.
// [rtsp] listen and [srt] listen may be any address in every mode: publishing needs a stream's key, and RTSP
// plays what HTTP plays to anyone (a video under its playback policy, a live stream), whatever [auth] says.
void check_listen(const ServerConfig &config);

} // namespace sluice::auth
