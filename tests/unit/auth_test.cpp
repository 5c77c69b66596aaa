// SPDX-License-Identifier: LGPL-2.1-or-later
// Tests of src/auth: scopes, keys and their hashes, constant-time comparison, JWT checks (HS256, RS256 and ES256
// from JWKS, the algorithm allow-list, the claims), the catalog's keys, and signed playback tokens.
#include "auth/authenticator.h"
#include "auth/jwt.h"
#include "auth/keys.h"
#include "auth/playback.h"
#include "core/error.h"
#include "core/fs.h"
#include "media.h"
#include "store/store.h"

#include <glib.h>
#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <set>

using namespace sluice;
using namespace sluice::auth;

namespace {

constexpr const char *kSecret = "a test secret that is longer than thirty-two bytes";
const std::int64_t kNow = 1'800'000'000;

std::string b64url(const std::string &bytes) {
  g_autofree gchar *b = g_base64_encode(reinterpret_cast<const guchar *>(bytes.data()), bytes.size());
  std::string s(b);
  while (!s.empty() && s.back() == '=')
    s.pop_back();
  for (auto &c : s)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

// A token signed by libjwt; claims is a JSON object's text.
std::string sign(jwt_alg_t alg, const std::string &key, const std::string &claims) {
  jwt_t *jwt = nullptr;
  EXPECT_EQ(jwt_new(&jwt), 0);
  EXPECT_EQ(jwt_add_grants_json(jwt, claims.c_str()), 0);
  EXPECT_EQ(jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char *>(key.data()), static_cast<int>(key.size())),
            0);
  char *s = jwt_encode_str(jwt);
  std::string out = s ? s : "";
  free(s);
  jwt_free(jwt);
  return out;
}

std::string claims(const std::string &extra = "") {
  return "{\"sub\":\"t\",\"iss\":\"iss\",\"aud\":\"aud\",\"exp\":" + std::to_string(kNow + 600) +
         ",\"scope\":\"read upload other:x\"" + extra + "}";
}

std::string pem(EVP_PKEY *k, bool priv) {
  BIO *bio = BIO_new(BIO_s_mem());
  if (priv)
    PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  else
    PEM_write_bio_PUBKEY(bio, k);
  char *data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return out;
}

std::string bn_bytes(EVP_PKEY *k, const char *param) {
  BIGNUM *bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(k, param, &bn), 1);
  std::string out(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char *>(out.data()));
  BN_free(bn);
  return out;
}

struct Pkey {
  EVP_PKEY *k;
  ~Pkey() { EVP_PKEY_free(k); }
};

JwtSettings hs_settings() {
  JwtSettings s;
  s.secret = kSecret;
  s.issuer = "iss";
  s.audience = "aud";
  return s;
}

} // namespace

TEST(AuthScopes, ParseAndAllow) {
  EXPECT_EQ(parse_scopes("upload,read"), kUpload | kRead);
  EXPECT_EQ(parse_scopes(" upload read, metrics "), kUpload | kRead | kMetrics);
  EXPECT_EQ(scopes_string(parse_scopes("admin,read")), "read,admin");
  EXPECT_THROW(parse_scopes("read,bogus"), Error);
  EXPECT_THROW(parse_scopes(" , "), Error);
  EXPECT_EQ(scopes_in_claim("openid read profile"), kRead);
  EXPECT_TRUE(allows(kAdmin, kRead | kUpload | kMetrics | kAdmin));
  EXPECT_TRUE(allows(kRead | kUpload, kUpload));
  EXPECT_FALSE(allows(kRead, kUpload));
  EXPECT_FALSE(allows(kUpload | kRead | kMetrics, kAdmin));
  EXPECT_FALSE(allows(0, kRead));
}

TEST(AuthKeys, RandomPrefixedAndHashed) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    std::string k = new_key();
    EXPECT_EQ(k.size(), 46u) << k;
    EXPECT_TRUE(looks_like_key(k));
    EXPECT_EQ(k.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 3),
              std::string::npos);
    seen.insert(k);
  }
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_FALSE(looks_like_key("eyJhbGciOi"));
  // SHA-256 test vector.
  EXPECT_EQ(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthKeys, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(AuthKeys, ModesAndLoopback) {
  EXPECT_EQ(parse_mode("keys+jwt"), Mode::KeysJwt);
  EXPECT_THROW(parse_mode("open"), Error);
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("::"));
  EXPECT_FALSE(is_loopback_host("192.168.1.2"));
  ServerConfig c;
  c.host = "0.0.0.0";
  EXPECT_THROW(check_listen(c), Error);
  c.auth_mode = "keys";
  EXPECT_NO_THROW(check_listen(c));
}

TEST(AuthJwt, Hs256Claims) {
  JwtSettings s = hs_settings();
  auto r = verify_jwt(s, sign(JWT_ALG_HS256, kSecret, claims()), kNow);
  EXPECT_TRUE(r.ok) << r.why;
  EXPECT_EQ(r.scopes, kRead | kUpload);
  EXPECT_EQ(r.subject, "t");
  // exp, with the leeway.
  EXPECT_TRUE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, claims()), kNow + 600 + 30).ok);
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, claims()), kNow + 600 + 31).ok);
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, "{\"iss\":\"iss\",\"aud\":\"aud\"}"), kNow).ok);
  // nbf.
  std::string later = sign(JWT_ALG_HS256, kSecret, claims(",\"nbf\":" + std::to_string(kNow + 100)));
  EXPECT_FALSE(verify_jwt(s, later, kNow).ok);
  EXPECT_TRUE(verify_jwt(s, later, kNow + 100).ok);
  // aud as an array; a wrong aud or iss.
  std::string arr = "{\"iss\":\"iss\",\"aud\":[\"x\",\"aud\"],\"exp\":" + std::to_string(kNow + 5) + "}";
  EXPECT_TRUE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, arr), kNow).ok);
  std::string other = "{\"iss\":\"iss\",\"aud\":\"x\",\"exp\":" + std::to_string(kNow + 5) + "}";
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, other), kNow).ok);
  std::string iss = "{\"iss\":\"evil\",\"aud\":\"aud\",\"exp\":" + std::to_string(kNow + 5) + "}";
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, iss), kNow).ok);
  // Another secret, a changed payload, garbage.
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, std::string(kSecret) + "!", claims()), kNow).ok);
  std::string t = sign(JWT_ALG_HS256, kSecret, claims());
  auto dot = t.find('.');
  std::string forged = t.substr(0, dot + 1) + b64url(claims(",\"scope\":\"admin\"")) + t.substr(t.rfind('.'));
  EXPECT_FALSE(verify_jwt(s, forged, kNow).ok);
  for (const char *bad : {"", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"})
    EXPECT_FALSE(verify_jwt(s, bad, kNow).ok) << bad;
}

// A token's header and claims are JSON read before the signature is checked: bounded like every JSON
// input (json-glib recurses once per level), refused, never parsed, when nested deeper.
TEST(AuthJwt, DeeplyNestedTokenPartsAreRefused) {
  JwtSettings s = hs_settings();
  // 200,000 levels overflow the stack of a json-glib parse (as the server's did): refused before it.
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  std::string header = b64url("{\"alg\":\"HS256\",\"x\":" + deep + "}");
  std::string token = header + "." + b64url(claims()) + ".c2ln";
  auto r = verify_jwt(s, token, kNow);
  EXPECT_FALSE(r.ok);
  std::string deep_claims = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}") + "." + b64url(claims(",\"x\":" + deep)) + ".c2ln";
  EXPECT_FALSE(verify_jwt(s, deep_claims, kNow).ok);
}

TEST(AuthJwt, AlgNoneIsRefused) {
  JwtSettings s = hs_settings();
  std::string none = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + b64url(claims()) + ".";
  auto r = verify_jwt(s, none, kNow);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.why.find("none"), std::string::npos) << r.why;
  EXPECT_FALSE(verify_jwt(s, b64url("{\"alg\":\"HS512\"}") + "." + b64url(claims()) + ".x", kNow).ok);
}

TEST(AuthJwt, Rs256FromJwksAndTheConfusion) {
  Pkey rsa{EVP_RSA_gen(2048)};
  ASSERT_NE(rsa.k, nullptr);
  std::string jwks = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k1\",\"use\":\"sig\",\"n\":\"" +
                     b64url(bn_bytes(rsa.k, OSSL_PKEY_PARAM_RSA_N)) + "\",\"e\":\"" +
                     b64url(bn_bytes(rsa.k, OSSL_PKEY_PARAM_RSA_E)) + "\"},{\"kty\":\"oct\",\"k\":\"AAAA\"}]}";
  JwtSettings s;
  s.keys = parse_jwks(jwks);
  ASSERT_EQ(s.keys.size(), 1u);
  EXPECT_EQ(s.keys[0].alg, "RS256");
  EXPECT_EQ(s.keys[0].pem, pem(rsa.k, false));
  auto r = verify_jwt(s, sign(JWT_ALG_RS256, pem(rsa.k, true), claims()), kNow);
  EXPECT_TRUE(r.ok) << r.why;
  // Another RSA key's signature.
  Pkey other{EVP_RSA_gen(2048)};
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_RS256, pem(other.k, true), claims()), kNow).ok);
  // HS256 whose HMAC key is the public key, in every spelling of it an attacker could try.
  for (const std::string &k : {s.keys[0].pem, pem(rsa.k, false)})
    EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, k, claims()), kNow).ok);
  // libjwt alone would take it (the check this allow-list exists for).
  jwt_t *jwt = nullptr;
  std::string confused = sign(JWT_ALG_HS256, s.keys[0].pem, claims());
  int rc = jwt_decode(&jwt, confused.c_str(), reinterpret_cast<const unsigned char *>(s.keys[0].pem.data()),
                      static_cast<int>(s.keys[0].pem.size()));
  EXPECT_EQ(rc, 0) << "libjwt refuses the confusion by itself now";
  jwt_free(jwt);
  // A PEM file gives the same key.
  PublicKey p = parse_public_pem(pem(rsa.k, false));
  EXPECT_EQ(p.alg, "RS256");
  EXPECT_THROW(parse_jwks("{\"keys\":[]}"), Error);
  EXPECT_THROW(parse_jwks("[1]"), Error);
  EXPECT_THROW(parse_public_pem("not a key"), Error);
}

TEST(AuthJwt, Es256FromJwks) {
  Pkey ec{EVP_EC_gen("P-256")};
  ASSERT_NE(ec.k, nullptr);
  unsigned char point[65];
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_octet_string_param(ec.k, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len), 1);
  ASSERT_EQ(len, 65u);
  std::string x(reinterpret_cast<char *>(point) + 1, 32), y(reinterpret_cast<char *>(point) + 33, 32);
  JwtSettings s;
  s.keys = parse_jwks("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" + b64url(x) + "\",\"y\":\"" + b64url(y) +
                      "\"}]}");
  ASSERT_EQ(s.keys.size(), 1u);
  EXPECT_EQ(s.keys[0].alg, "ES256");
  auto r = verify_jwt(s, sign(JWT_ALG_ES256, pem(ec.k, true), claims()), kNow);
  EXPECT_TRUE(r.ok) << r.why;
  // RS256 and HS256 are not accepted with only an EC key.
  EXPECT_FALSE(verify_jwt(s, sign(JWT_ALG_HS256, kSecret, claims()), kNow).ok);
}

TEST(AuthStore, KeysAreKeptAsHashes) {
  test::TempDir dir;
  auto st = store::open_sqlite(fs::join(dir.path(), "c.db"));
  ServerConfig config;
  config.auth_mode = "keys";
  Authenticator a(config, *st);
  const std::string key = new_key();
  st->add_key({"ci", hash_key(key), "read,upload", 1, 0, 0});
  EXPECT_THROW(st->add_key({"ci", hash_key(new_key()), "read", 2, 0, 0}), Error);
  auto id = a.authenticate(key, 5'000'000'000);
  EXPECT_TRUE(id.ok) << id.why;
  EXPECT_EQ(id.scopes, kRead | kUpload);
  EXPECT_EQ(id.who, "key ci");
  EXPECT_EQ(st->keys().at(0).last_used, 5'000'000'000);
  EXPECT_FALSE(a.authenticate(new_key(), 0).ok);
  EXPECT_FALSE(a.authenticate("eyJ.eyJ.x", 0).ok); // keys only: no JWT
  EXPECT_TRUE(st->revoke_key("ci", 7));
  EXPECT_FALSE(st->revoke_key("ci", 8));
  EXPECT_FALSE(a.authenticate(key, 0).ok);
  // The name can be given again once revoked.
  EXPECT_NO_THROW(st->add_key({"ci", hash_key(new_key()), "read", 9, 0, 0}));
  EXPECT_EQ(st->keys().size(), 2u);
}

TEST(AuthPlayback, TokensBindTheVideoTheExpiryAndTheKey) {
  const std::string a = "0123456789abcdef", b = "fedcba9876543210";
  auto keys = sluice::auth::PlaybackKeys::load("k1:0123456789abcdef-one; k2:0123456789abcdef-two", "", "k2");
  EXPECT_EQ(keys.signing_id(), "k2");
  EXPECT_FALSE(keys.ephemeral());
  const std::string t = keys.sign(a, 1000);
  EXPECT_EQ(t.rfind("k2.1000.", 0), 0u) << t;
  for (char c : t)
    EXPECT_TRUE(g_ascii_isalnum(c) || c == '.' || c == '-' || c == '_') << t;
  EXPECT_TRUE(keys.verify(t, a, 999));
  EXPECT_FALSE(keys.verify(t, a, 1000)) << "expired at its expiry";
  EXPECT_FALSE(keys.verify(t, b, 999)) << "another video";
  EXPECT_FALSE(keys.verify("k2.2000." + t.substr(8), a, 999)) << "another expiry under the same MAC";
  EXPECT_FALSE(keys.verify("k1." + t.substr(3), a, 999)) << "another key id";
  EXPECT_FALSE(keys.verify(t.substr(0, t.size() - 1), a, 999));
  EXPECT_FALSE(keys.verify("", a, 0));
  EXPECT_FALSE(keys.verify("k2..x", a, 0));
  // Rotation: a token of k2 verifies with k2 still configured, whichever key signs; not once k2 is gone.
  auto rotated = sluice::auth::PlaybackKeys::load("k2:0123456789abcdef-two;k3:0123456789abcdef-three", "", "k3");
  EXPECT_TRUE(rotated.verify(t, a, 999));
  EXPECT_EQ(rotated.sign(a, 1000).rfind("k3.", 0), 0u);
  auto gone = sluice::auth::PlaybackKeys::load("k3:0123456789abcdef-three", "", "");
  EXPECT_FALSE(gone.verify(t, a, 999));
  // The same id with another secret verifies nothing of the old one.
  auto changed = sluice::auth::PlaybackKeys::load("k2:0123456789abcdef-TWO", "", "");
  EXPECT_FALSE(changed.verify(t, a, 999));
}

TEST(AuthPlayback, KeyConfiguration) {
  using sluice::auth::PlaybackKeys;
  auto none = PlaybackKeys::load("", "", "");
  EXPECT_TRUE(none.ephemeral());
  EXPECT_TRUE(none.verify(none.sign("0123456789abcdef", 50), "0123456789abcdef", 10));
  // Another process's random key verifies nothing of this one's.
  EXPECT_FALSE(PlaybackKeys::load("", "", "").verify(none.sign("0123456789abcdef", 50), "0123456789abcdef", 10));
  EXPECT_THROW(PlaybackKeys::load("k1:short", "", ""), sluice::Error);
  EXPECT_THROW(PlaybackKeys::load("k 1:0123456789abcdef", "", ""), sluice::Error);
  EXPECT_THROW(PlaybackKeys::load("k1:0123456789abcdef;k1:0123456789abcdef", "", ""), sluice::Error);
  EXPECT_THROW(PlaybackKeys::load("k1:0123456789abcdef", "", "k9"), sluice::Error);
  EXPECT_THROW(PlaybackKeys::load("", "", "k1"), sluice::Error);
  EXPECT_THROW(PlaybackKeys::load("", "/nonexistent/playback.keys", ""), sluice::Error);
  g_autofree gchar *tmp = g_dir_make_tmp("sluice-playback-XXXXXX", nullptr);
  ASSERT_NE(tmp, nullptr);
  const std::string dir = tmp;
  const std::string file = dir + "/keys";
  ASSERT_TRUE(g_file_set_contents(file.c_str(), "# keys\nf1:0123456789abcdef-file\n\nf2:0123456789abcdef-file2\n", -1,
                                  nullptr));
  auto from_file = PlaybackKeys::load("", file, "f2");
  EXPECT_EQ(from_file.signing_id(), "f2");
  EXPECT_TRUE(PlaybackKeys::load("f1:0123456789abcdef-file", "", "")
                  .verify(PlaybackKeys::load("", file, "f1").sign("0123456789abcdef", 50), "0123456789abcdef", 10));
  sluice::fs::remove_all(dir);
}
