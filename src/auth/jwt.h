// SPDX-License-Identifier: LGPL-2.1-or-later
// JSON Web Tokens: signatures checked by libjwt against an explicit list of algorithms and keys, then the
// claims (exp, nbf, iss, aud, scope); public keys from a JWKS document or a PEM file.
#pragma once

#include "auth/keys.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::auth {

// A public key that verifies one algorithm.
struct PublicKey {
  std::string kid; // "" when the key has no id
  std::string alg; // "RS256" or "ES256"
  std::string pem; // SubjectPublicKeyInfo, PEM (what libjwt 1.10 reads)
};

// The RSA and P-256 keys of a JWKS document ({"keys": [...]}) as PEM; other keys (and keys whose "use" is not
// "sig") are skipped. Throws Error (Invalid) when the document is not a JWKS or holds no usable key.
std::vector<PublicKey> parse_jwks(const std::string &json);
// A PEM public key (RSA: RS256, EC P-256: ES256); throws Error (Invalid).
PublicKey parse_public_pem(const std::string &pem);

struct JwtSettings {
  std::string secret;          // HS256 ("" = HS256 not accepted)
  std::vector<PublicKey> keys; // RS256/ES256
  std::string issuer;          // "" = any
  std::string audience;        // "" = any
  std::int64_t leeway_s = 30;  // clock skew allowed on exp and nbf
};

struct JwtResult {
  bool ok = false;
  Scopes scopes = 0;
  std::string subject; // the sub claim, for the log
  std::string why;     // why a token was refused, for the client (never the token)
};

// Checks a token: its algorithm is HS256 (when a secret is set) or that of a configured public key (never
// "none", and never HS256 verified with a public key), its signature, exp (required), nbf, iss and aud.
JwtResult verify_jwt(const JwtSettings &settings, const std::string &token, std::int64_t now_s);

// base64url without padding -> bytes; false on a character outside the alphabet.
bool base64url_decode(const std::string &in, std::string &out);

} // namespace sluice::auth
