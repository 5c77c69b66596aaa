// SPDX-License-Identifier: LGPL-2.1-or-later
// Bearer credentials checked against the catalog's API keys and the configured JWT keys.
#include "auth/authenticator.h"

#include "core/error.h"

#include <glib.h>

namespace sluice::auth {

namespace {

constexpr std::int64_t kTouchEveryUs = 60LL * 1000000; // last_used is written at most once a minute per key
constexpr std::size_t kMinSecret = 32;
// With a pool: a key row is used as read for this long, then read again on the executor (the old row still used
// until the new one is back, for at most kKeyStaleUs); a key the catalog did not have is read again after kNoKeyUs.
constexpr std::int64_t kKeyFreshUs = 5LL * 1000000;
constexpr std::int64_t kKeyStaleUs = 60LL * 1000000;
constexpr std::int64_t kNoKeyUs = 1LL * 1000000;
constexpr std::size_t kMaxKeys = 10000;

std::string read_file(const std::string &path, const char *what) {
  g_autofree gchar *text = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &text, &len, &err))
    throw Error::from_gerror(ErrorCode::Invalid, std::string("[auth] ") + what, err);
  return std::string(text, len);
}

} // namespace

Authenticator::Authenticator(const ServerConfig &config, store::Store &store)
    : mode_(parse_mode(config.auth_mode)), store_(store) {
  if (!uses_jwt(mode_))
    return;
  jwt_.issuer = config.jwt_issuer;
  jwt_.audience = config.jwt_audience;
  jwt_.leeway_s = config.jwt_leeway_s;
  jwt_.secret = config.jwt_secret;
  if (!config.jwt_secret_file.empty()) {
    jwt_.secret = read_file(config.jwt_secret_file, "jwt-secret-file");
    while (!jwt_.secret.empty() && g_ascii_isspace(jwt_.secret.back()))
      jwt_.secret.pop_back();
  }
  if (!jwt_.secret.empty() && jwt_.secret.size() < kMinSecret)
    throw Error("[auth] jwt-secret: an HS256 secret must be at least 32 bytes long");
  try {
    if (!config.jwks_file.empty())
      jwt_.keys = parse_jwks(read_file(config.jwks_file, "jwks-file"));
    if (!config.jwt_public_key.empty())
      jwt_.keys.push_back(parse_public_pem(read_file(config.jwt_public_key, "jwt-public-key")));
  } catch (const Error &e) {
    throw Error(std::string("[auth] ") + e.what());
  }
  if (jwt_.secret.empty() && jwt_.keys.empty())
    throw Error(std::string("[auth] mode ") + mode_name(mode_) +
                " needs jwt-secret (or jwt-secret-file), jwks-file or jwt-public-key");
}

Identity Authenticator::by_key(const std::string &key, std::int64_t now_us) {
  Identity id;
  // Looked up by its hash; the hash found is compared again in constant time (the index lookup's timing tells
  // at most something of a SHA-256, which tells nothing of the key).
  const std::string hash = hash_key(key);
  auto row = cached_key(hash);
  if (!row || !constant_time_equal(row->hash, hash)) {
    id.why = "unknown API key";
    return id;
  }
  if (row->revoked) {
    id.why = "this API key was revoked";
    return id;
  }
  if (now_us - row->last_used > kTouchEveryUs && executor_ && !executor_->is_inline()) {
    // Noted on the executor, nobody waiting; the remembered row says so, so that it is noted once a minute.
    keys_[hash].row->last_used = now_us;
    executor_->fire([hash, now_us](store::Store &s) { s.touch_key(hash, now_us); }, "note the use of an API key");
  } else if (now_us - row->last_used > kTouchEveryUs) {
    try {
      store_.touch_key(hash, now_us);
    } catch (const Error &) {
      // Noting the use is not worth refusing the request for (a catalog that cannot be written).
    }
  }
  id.ok = true;
  id.scopes = parse_scopes(row->scopes);
  id.who = "key " + row->name;
  return id;
}

std::optional<store::ApiKey> Authenticator::cached_key(const std::string &hash) {
  if (!executor_ || executor_->is_inline())
    return store_.key_by_hash(hash);
  const std::int64_t now = g_get_monotonic_time();
  auto it = keys_.find(hash);
  if (it != keys_.end() && now - it->second.at < (it->second.row ? kKeyStaleUs : kNoKeyUs)) {
    Cached &c = it->second;
    if (c.row && now - c.at > kKeyFreshUs && !c.refreshing) {
      c.refreshing = true;
      executor_->run([hash](store::Store &s) { return s.key_by_hash(hash); },
                     [this, alive = alive_, hash](store::Outcome<std::optional<store::ApiKey>> &o) {
                       if (!*alive)
                         return;
                       auto found = keys_.find(hash);
                       if (found == keys_.end())
                         return;
                       found->second.refreshing = false;
                       if (o.ok()) {
                         found->second.row = *o.value;
                         found->second.at = g_get_monotonic_time();
                       }
                     });
    }
    return c.row;
  }
  // First sight of this key (or one not seen for a minute), asked by a caller that did not ask answers_at_once():
  // read here, bounded by [store] timeout.
  auto row = store_.key_by_hash(hash);
  if (keys_.size() >= kMaxKeys)
    keys_.clear();
  keys_[hash] = Cached{row, now, false};
  return row;
}

bool Authenticator::answers_at_once(const std::string &credential) const {
  if (!uses_keys(mode_) || !looks_like_key(credential) || !executor_ || executor_->is_inline())
    return true;
  auto it = keys_.find(hash_key(credential));
  return it != keys_.end() && g_get_monotonic_time() - it->second.at < (it->second.row ? kKeyStaleUs : kNoKeyUs);
}

void Authenticator::authenticate_later(const std::string &credential, std::int64_t now_us, Answered done) {
  const std::string hash = hash_key(credential);
  executor_->run([hash](store::Store &s) { return s.key_by_hash(hash); },
                 [this, alive = alive_, hash, credential, now_us,
                  done = std::move(done)](store::Outcome<std::optional<store::ApiKey>> &o) {
                   if (!*alive)
                     return;
                   if (!o.ok())
                     return done(Identity{}, &*o.error);
                   if (keys_.size() >= kMaxKeys)
                     keys_.clear();
                   keys_[hash] = Cached{*o.value, g_get_monotonic_time(), false};
                   // Remembered now: answered as a key seen a moment ago (revoked, scopes, its use noted).
                   done(by_key(credential, now_us), nullptr);
                 });
}

Identity Authenticator::authenticate(const std::string &credential, std::int64_t now_us) {
  if (uses_keys(mode_) && looks_like_key(credential))
    return by_key(credential, now_us);
  Identity id;
  if (!uses_jwt(mode_)) {
    id.why = "unknown API key";
    return id;
  }
  JwtResult r = verify_jwt(jwt_, credential, now_us / 1000000);
  id.ok = r.ok;
  id.scopes = r.scopes;
  id.who = "jwt " + (r.subject.empty() ? std::string("-") : r.subject);
  id.why = r.why;
  return id;
}

void check_listen(const ServerConfig &config) {
  if (parse_mode(config.auth_mode) != Mode::None || is_loopback_host(config.host))
    return;
  throw Error("refusing to listen on " + config.host +
              " without access control: anyone who reaches the port could upload and delete. Create an API key "
              "(sluice keys create --data DIR --name NAME --scope admin) and set [auth] mode=keys in the "
              "configuration (or use jwt), or listen on 127.0.0.1");
}

} // namespace sluice::auth
