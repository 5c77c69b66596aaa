// SPDX-License-Identifier: LGPL-2.1-or-later
// Scopes, API keys and modes of access control.
#include "auth/keys.h"

#include "core/error.h"

#include <gio/gio.h>
#include <glib.h>
#include <openssl/rand.h>

#include <array>

namespace sluice::auth {

namespace {

struct ScopeName {
  const char *name;
  Scopes bit;
};
constexpr ScopeName kScopeNames[] = {{"read", kRead}, {"upload", kUpload}, {"metrics", kMetrics}, {"admin", kAdmin}};

// Calls fn for every word of text (separated by commas and white space).
template <typename Fn> void for_each_word(std::string_view text, Fn &&fn) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || g_ascii_isspace(text[i])))
      ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ',' && !g_ascii_isspace(text[j]))
      ++j;
    if (j > i)
      fn(text.substr(i, j - i));
    i = j;
  }
}

Scopes scope_bit(std::string_view word) {
  for (const auto &s : kScopeNames)
    if (word == s.name)
      return s.bit;
  return 0;
}

} // namespace

Scopes parse_scopes(std::string_view text) {
  Scopes out = 0;
  for_each_word(text, [&](std::string_view w) {
    Scopes bit = scope_bit(w);
    if (!bit)
      throw Error("unknown scope '" + std::string(w) + "' (scopes: read, upload, metrics, admin)");
    out |= bit;
  });
  if (!out)
    throw Error("no scope given (scopes: read, upload, metrics, admin)");
  return out;
}

Scopes scopes_in_claim(std::string_view text) {
  Scopes out = 0;
  for_each_word(text, [&](std::string_view w) { out |= scope_bit(w); });
  return out;
}

std::string scopes_string(Scopes s) {
  std::string out;
  for (const auto &n : kScopeNames)
    if (s & n.bit)
      out += (out.empty() ? "" : ",") + std::string(n.name);
  return out;
}

bool allows(Scopes have, Scopes need) {
  if (have & kAdmin)
    return true;
  return (have & need) == need;
}

std::string new_key() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw Error(ErrorCode::Internal, "no random bytes for a key (the system's random source failed)");
  g_autofree gchar *b64 = g_base64_encode(bytes.data(), bytes.size());
  std::string s(b64);
  while (!s.empty() && s.back() == '=')
    s.pop_back();
  for (auto &c : s)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return std::string(kKeyPrefix) + s;
}

bool looks_like_key(std::string_view text) {
  return text.size() > kKeyPrefix.size() && text.substr(0, kKeyPrefix.size()) == kKeyPrefix;
}

std::string hash_key(std::string_view key) {
  g_autofree gchar *hex =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(key.data()), key.size());
  return hex;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

Mode parse_mode(std::string_view text) {
  if (text == "none")
    return Mode::None;
  if (text == "keys")
    return Mode::Keys;
  if (text == "jwt")
    return Mode::Jwt;
  if (text == "keys+jwt" || text == "jwt+keys")
    return Mode::KeysJwt;
  throw Error("[auth] mode: expected none, keys, jwt or keys+jwt, got '" + std::string(text) + "'");
}

const char *mode_name(Mode m) {
  switch (m) {
  case Mode::None: return "none";
  case Mode::Keys: return "keys";
  case Mode::Jwt: return "jwt";
  case Mode::KeysJwt: return "keys+jwt";
  }
  return "none";
}

bool is_loopback_host(const std::string &host) {
  if (host == "localhost")
    return true;
  g_autoptr(GInetAddress) a = g_inet_address_new_from_string(host.c_str());
  return a && g_inet_address_get_is_loopback(a);
}

} // namespace sluice::auth
