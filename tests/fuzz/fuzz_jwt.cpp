// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: bearer tokens and key documents. The input is checked as a JWT against an HS256 secret and
// public keys (a token is accepted only with a real signature, exp, iss and aud), read as a JWKS document and
// as a PEM key (every key read gives back a PEM key of the same algorithm), and decoded as base64url.
#include "auth/jwt.h"
#include "core/error.h"

#include "fuzz.h"

#include <cstdint>
#include <string>

namespace {

using sluice::Error;
using namespace sluice::auth;

// The secret, issuer and audience the seeds' tokens are signed for (tests/fuzz/seeds.cpp).
constexpr const char *kSecret = "sluice-fuzz-secret";
constexpr std::int64_t kNow = 1700000000;

JwtSettings settings;

void check_keys(const std::vector<PublicKey> &keys) {
  for (const auto &k : keys) {
    FUZZ_CHECK(k.alg == "RS256" || k.alg == "ES256", "a key for " + k.alg);
    PublicKey again;
    try {
      again = parse_public_pem(k.pem);
    } catch (const Error &e) {
      FUZZ_CHECK(false, "a key read from a JWKS is not a PEM key sluice reads: " + std::string(e.what()));
    }
    FUZZ_CHECK(again.alg == k.alg, "the PEM of a " + k.alg + " key reads as " + again.alg);
  }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  settings.secret = kSecret;
  settings.issuer = "https://issuer.example";
  settings.audience = "sluice";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string text = sluice::fuzz::text_of(data, size);

  JwtResult r = verify_jwt(settings, text, kNow);
  if (r.ok) {
    FUZZ_CHECK(r.why.empty(), "an accepted token with a reason");
    // Only a token signed with the secret can pass: its header says HS256.
    std::string header;
    FUZZ_CHECK(base64url_decode(text.substr(0, text.find('.')), header), "an accepted token's header");
    FUZZ_CHECK(header.find("HS256") != std::string::npos, "a token accepted without HS256: " + header);
  } else {
    FUZZ_CHECK(!r.why.empty(), "a refused token without a reason");
  }

  try {
    check_keys(parse_jwks(text));
  } catch (const Error &) {
  }
  try {
    check_keys({parse_public_pem(text)});
  } catch (const Error &) {
  }
  std::string decoded;
  if (base64url_decode(text, decoded))
    FUZZ_CHECK(decoded.size() <= text.size() * 3 / 4, "base64url decoded to more bytes than it holds");
  return 0;
}
