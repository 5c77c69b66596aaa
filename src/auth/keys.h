// SPDX-License-Identifier: LGPL-2.1-or-later
// Scopes, API keys (made, hashed and compared) and the modes of access control; nothing of HTTP.
#pragma once

#include <string>
#include <string_view>

namespace sluice::auth {

// What a caller may do: a set of bits. `admin` implies every other.
using Scopes = unsigned;
inline constexpr Scopes kRead = 1, kUpload = 2, kMetrics = 4, kAdmin = 8;

// "upload,read" or "upload read" (commas, spaces or both) -> bits; throws Error (Invalid) naming a word that
// is no scope, or when there is none.
Scopes parse_scopes(std::string_view text);
// Like parse_scopes, but words that are no scope of sluice's are skipped (a JWT's `scope` claim may
// carry other services' scopes); never throws.
Scopes scopes_in_claim(std::string_view text);
// "read,upload" (in the order read, upload, metrics, admin).
std::string scopes_string(Scopes s);
// Whether `have` allows everything `need` asks for.
bool allows(Scopes have, Scopes need);

// An API key: "sk_" and 32 random bytes (a CSPRNG's) in base64url, 46 characters.
inline constexpr std::string_view kKeyPrefix = "sk_";
std::string new_key();
bool looks_like_key(std::string_view text);
// What the catalog keeps of a key: its SHA-256, in hex. A key has 256 random bits, so a fast hash is enough
// (no salt, no key stretching): nothing can be guessed from it that is cheaper than guessing the key.
std::string hash_key(std::string_view key);
// a == b in a time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

// [auth] mode.
enum class Mode { None, Keys, Jwt, KeysJwt };
// "none", "keys", "jwt", "keys+jwt"; throws Error (Invalid).
Mode parse_mode(std::string_view text);
const char *mode_name(Mode m);
inline bool uses_keys(Mode m) {
  return m == Mode::Keys || m == Mode::KeysJwt;
}
inline bool uses_jwt(Mode m) {
  return m == Mode::Jwt || m == Mode::KeysJwt;
}

// Whether a listen host is a loopback address ("localhost", 127.0.0.0/8, ::1).
bool is_loopback_host(const std::string &host);

} // namespace sluice::auth
