// SPDX-License-Identifier: LGPL-2.1-or-later
// JWT checks with libjwt, and JWKS keys turned into the PEM that libjwt reads (OpenSSL).
#include "auth/jwt.h"

#include "core/error.h"
#include "core/json.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <memory>

namespace sluice::auth {

bool base64url_decode(const std::string &in, std::string &out) {
  std::string s;
  s.reserve(in.size() + 3);
  for (char c : in) {
    if (c == '-')
      s += '+';
    else if (c == '_')
      s += '/';
    else if (g_ascii_isalnum(c))
      s += c;
    else
      return false;
  }
  if (s.size() % 4 == 1)
    return false;
  while (s.size() % 4)
    s += '=';
  gsize len = 0;
  g_autofree guchar *bytes = g_base64_decode(s.c_str(), &len);
  out.assign(reinterpret_cast<const char *>(bytes), len);
  return true;
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY *k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// A parsed JSON object (nullptr when text is not one, or nested deeper or bigger than a token's header,
// claims or a JWKS can be: json-glib recurses once per level); the parser owns the object.
JsonObject *parse_object(JsonParser *parser, const std::string &text) {
  if (json::check_limits(text, json::Limits{16, 10000}))
    return nullptr;
  if (!json_parser_load_from_data(parser, text.data(), static_cast<gssize>(text.size()), nullptr))
    return nullptr;
  JsonNode *root = json_parser_get_root(parser);
  return root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : nullptr;
}

std::string string_member(JsonObject *o, const char *name) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    return "";
  return json_node_get_string(n);
}

// A number member as whole seconds; false when absent or not a number.
bool number_member(JsonObject *o, const char *name, std::int64_t &out) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || !JSON_NODE_HOLDS_VALUE(n))
    return false;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_INT64)
    out = json_node_get_int(n);
  else if (t == G_TYPE_DOUBLE)
    out = static_cast<std::int64_t>(json_node_get_double(n));
  else
    return false;
  return true;
}

std::string pem_of(EVP_PKEY *key) {
  BIO *bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char *data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    out.assign(data, static_cast<std::size_t>(len));
  }
  BIO_free(bio);
  if (out.empty())
    throw Error(ErrorCode::Internal, "cannot write a public key as PEM");
  return out;
}

// A key made from OSSL_PARAMs of type ("RSA", "EC").
PkeyPtr key_from_params(const char *type, OSSL_PARAM_BLD *bld) {
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY *key = nullptr;
  bool ok = params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return PkeyPtr(ok ? key : nullptr);
}

std::string decoded_member(JsonObject *jwk, const char *name, const std::string &where) {
  std::string out;
  if (!base64url_decode(string_member(jwk, name), out) || out.empty())
    throw Error(where + ": member '" + name + "' is missing or not base64url");
  return out;
}

PublicKey rsa_key(JsonObject *jwk, const std::string &where) {
  std::string n = decoded_member(jwk, "n", where), e = decoded_member(jwk, "e", where);
  BIGNUM *bn_n = BN_bin2bn(reinterpret_cast<const unsigned char *>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM *bn_e = BN_bin2bn(reinterpret_cast<const unsigned char *>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  PkeyPtr key;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1)
    key = key_from_params("RSA", bld);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  if (!key)
    throw Error(where + ": not a valid RSA public key");
  if (EVP_PKEY_get_bits(key.get()) < 2048)
    throw Error(where + ": RSA keys shorter than 2048 bits are not accepted");
  return {string_member(jwk, "kid"), "RS256", pem_of(key.get())};
}

PublicKey ec_key(JsonObject *jwk, const std::string &where) {
  if (string_member(jwk, "crv") != "P-256")
    throw Error(where + ": only the EC curve P-256 (ES256) is supported");
  std::string x = decoded_member(jwk, "x", where), y = decoded_member(jwk, "y", where);
  if (x.size() != 32 || y.size() != 32)
    throw Error(where + ": x and y of a P-256 key are 32 bytes each");
  std::string point = std::string(1, '\x04') + x + y;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  PkeyPtr key;
  if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1)
    key = key_from_params("EC", bld);
  OSSL_PARAM_BLD_free(bld);
  if (!key)
    throw Error(where + ": not a valid P-256 public key");
  return {string_member(jwk, "kid"), "ES256", pem_of(key.get())};
}

} // namespace

std::vector<PublicKey> parse_jwks(const std::string &json) {
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *doc = parse_object(parser, json);
  JsonNode *keys = doc ? json_object_get_member(doc, "keys") : nullptr;
  if (!keys || !JSON_NODE_HOLDS_ARRAY(keys))
    throw Error("JWKS: expected a JSON object with a \"keys\" array");
  std::vector<PublicKey> out;
  JsonArray *a = json_node_get_array(keys);
  for (guint i = 0; i < json_array_get_length(a); ++i) {
    JsonNode *n = json_array_get_element(a, i);
    if (!JSON_NODE_HOLDS_OBJECT(n))
      continue;
    JsonObject *jwk = json_node_get_object(n);
    std::string where = "JWKS key " + std::to_string(i), kty = string_member(jwk, "kty"),
                use = string_member(jwk, "use"), alg = string_member(jwk, "alg");
    if (!use.empty() && use != "sig")
      continue;
    if (kty == "RSA" && (alg.empty() || alg == "RS256"))
      out.push_back(rsa_key(jwk, where));
    else if (kty == "EC" && (alg.empty() || alg == "ES256"))
      out.push_back(ec_key(jwk, where));
  }
  if (out.empty())
    throw Error("JWKS: no RS256 (RSA) or ES256 (EC P-256) signing key in it");
  return out;
}

PublicKey parse_public_pem(const std::string &pem) {
  BIO *bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  PkeyPtr key(bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr);
  BIO_free(bio);
  if (!key)
    throw Error("not a PEM public key (-----BEGIN PUBLIC KEY-----)");
  switch (EVP_PKEY_get_base_id(key.get())) {
  case EVP_PKEY_RSA:
    if (EVP_PKEY_get_bits(key.get()) < 2048)
      throw Error("RSA keys shorter than 2048 bits are not accepted");
    return {"", "RS256", pem_of(key.get())};
  case EVP_PKEY_EC:
    if (!EVP_PKEY_is_a(key.get(), "EC") || EVP_PKEY_get_bits(key.get()) != 256)
      throw Error("only EC keys on P-256 (ES256) are supported");
    return {"", "ES256", pem_of(key.get())};
  default: throw Error("only RSA (RS256) and EC P-256 (ES256) public keys are supported");
  }
}

namespace {

// Whether libjwt verifies token with key under alg (and reads alg back from it).
bool signature_ok(const std::string &token, const std::string &key, jwt_alg_t alg) {
  jwt_t *jwt = nullptr;
  int rc = jwt_decode(&jwt, token.c_str(), reinterpret_cast<const unsigned char *>(key.data()),
                      static_cast<int>(key.size()));
  bool ok = rc == 0 && jwt && jwt_get_alg(jwt) == alg;
  jwt_free(jwt);
  return ok;
}

bool audience_ok(JsonObject *claims, const std::string &want) {
  JsonNode *n = json_object_get_member(claims, "aud");
  if (!n)
    return false;
  if (JSON_NODE_HOLDS_VALUE(n))
    return json_node_get_value_type(n) == G_TYPE_STRING && want == json_node_get_string(n);
  if (!JSON_NODE_HOLDS_ARRAY(n))
    return false;
  JsonArray *a = json_node_get_array(n);
  for (guint i = 0; i < json_array_get_length(a); ++i) {
    JsonNode *e = json_array_get_element(a, i);
    if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING && want == json_node_get_string(e))
      return true;
  }
  return false;
}

JwtResult refuse(std::string why) {
  JwtResult r;
  r.why = std::move(why);
  return r;
}

} // namespace

JwtResult verify_jwt(const JwtSettings &settings, const std::string &token, std::int64_t now_s) {
  // header.payload.signature, each base64url.
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos || token.find('.', dot2 + 1) != std::string::npos)
    return refuse("the token is not a JWT");
  std::string header_text, payload_text;
  if (!base64url_decode(token.substr(0, dot1), header_text) ||
      !base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload_text))
    return refuse("the token is not a JWT");
  g_autoptr(JsonParser) hp = json_parser_new();
  JsonObject *header = parse_object(hp, header_text);
  if (!header)
    return refuse("the token is not a JWT");
  // The allow-list: the algorithm decides which key verifies, and HS256 is only ever verified with the secret.
  const std::string alg = string_member(header, "alg"), kid = string_member(header, "kid");
  bool verified = false;
  if (alg == "HS256") {
    if (settings.secret.empty())
      return refuse("tokens signed with HS256 are not accepted here");
    verified = signature_ok(token, settings.secret, JWT_ALG_HS256);
  } else if (alg == "RS256" || alg == "ES256") {
    bool any_key = false;
    for (const auto &k : settings.keys) {
      if (k.alg != alg || (!kid.empty() && !k.kid.empty() && k.kid != kid))
        continue;
      any_key = true;
      if ((verified = signature_ok(token, k.pem, alg == "RS256" ? JWT_ALG_RS256 : JWT_ALG_ES256)))
        break;
    }
    if (!any_key)
      return refuse("no key here verifies " + alg + " tokens" + (kid.empty() ? "" : " with the key id given"));
  } else {
    return refuse("the token's algorithm '" + alg + "' is not accepted (accepted: HS256, RS256, ES256 as configured)");
  }
  if (!verified)
    return refuse("the token's signature does not verify");

  g_autoptr(JsonParser) pp = json_parser_new();
  JsonObject *claims = parse_object(pp, payload_text);
  if (!claims)
    return refuse("the token's claims are not a JSON object");
  std::int64_t exp = 0, nbf = 0;
  if (!number_member(claims, "exp", exp))
    return refuse("the token has no expiry (exp)");
  if (now_s > exp + settings.leeway_s)
    return refuse("the token has expired");
  if (number_member(claims, "nbf", nbf) && now_s + settings.leeway_s < nbf)
    return refuse("the token is not valid yet (nbf)");
  if (!settings.issuer.empty() && string_member(claims, "iss") != settings.issuer)
    return refuse("the token's issuer (iss) is not the one expected here");
  if (!settings.audience.empty() && !audience_ok(claims, settings.audience))
    return refuse("the token's audience (aud) does not name this server");
  JwtResult r;
  r.ok = true;
  r.scopes = scopes_in_claim(string_member(claims, "scope"));
  r.subject = string_member(claims, "sub");
  return r;
}

} // namespace sluice::auth
