// SPDX-License-Identifier: LGPL-2.1-or-later
// Signed playback tokens: made and checked with GLib's HMAC-SHA256, keys from the configuration.
#include "auth/playback.h"

#include "auth/keys.h"
#include "core/error.h"
#include "core/fs.h"

#include <glib.h>
#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <vector>

namespace sluice::auth {

namespace {

bool valid_id(const std::string &id) {
  if (id.empty() || id.size() > 64)
    return false;
  for (char c : id)
    if (!g_ascii_isalnum(c) && c != '-' && c != '_')
      return false;
  return true;
}

std::string trim(const std::string &s) {
  auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos)
    return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

std::string base64url(const unsigned char *data, std::size_t len) {
  g_autofree gchar *b64 = g_base64_encode(data, len);
  std::string s(b64);
  while (!s.empty() && s.back() == '=')
    s.pop_back();
  for (auto &c : s)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

std::string mac(const std::string &secret, const std::string &video_id, const std::string &kid, std::int64_t exp) {
  const std::string text = "sluice-playback:" + video_id + ":" + kid + ":" + std::to_string(exp);
  g_autoptr(GHmac) h = g_hmac_new(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(secret.data()), secret.size());
  g_hmac_update(h, reinterpret_cast<const guchar *>(text.data()), static_cast<gssize>(text.size()));
  std::array<guint8, 32> digest{};
  gsize len = digest.size();
  g_hmac_get_digest(h, digest.data(), &len);
  return base64url(digest.data(), len);
}

} // namespace

PlaybackKeys PlaybackKeys::load(const std::string &keys, const std::string &keys_file, const std::string &signing_id) {
  PlaybackKeys out;
  std::vector<std::string> order;
  auto add_items = [&](const std::string &text, const std::string &where) {
    g_auto(GStrv) items = g_strsplit_set(text.c_str(), ";\n", -1);
    for (gchar **it = items; *it; ++it) {
      std::string item = trim(*it);
      if (item.empty() || item[0] == '#')
        continue;
      auto colon = item.find(':');
      std::string id = colon == std::string::npos ? "" : trim(item.substr(0, colon));
      std::string secret = colon == std::string::npos ? "" : trim(item.substr(colon + 1));
      if (!valid_id(id))
        throw Error(where + ": expected items 'id:secret' with an id of 1 to 64 letters, digits, '-' or '_'");
      if (secret.size() < 16)
        throw Error(where + ": the secret of key '" + id + "' is shorter than 16 bytes");
      if (out.keys_.count(id))
        throw Error(where + ": key '" + id + "' is given twice");
      out.keys_[id] = secret;
      order.push_back(id);
    }
  };
  add_items(keys, "[playback] keys");
  if (!keys_file.empty()) {
    std::string text;
    try {
      text = fs::read_file(keys_file);
    } catch (const Error &e) {
      throw Error(std::string("[playback] keys-file: ") + e.what());
    }
    add_items(text, "[playback] keys-file " + keys_file);
  }
  if (out.keys_.empty()) {
    if (!signing_id.empty())
      throw Error("[playback] signing-key-id '" + signing_id + "': no [playback] keys are configured");
    std::array<unsigned char, 32> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
      throw Error(ErrorCode::Internal, "no random bytes for a playback key (the system's random source failed)");
    out.keys_["ephemeral"] = std::string(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    out.signing_id_ = "ephemeral";
    out.ephemeral_ = true;
    return out;
  }
  out.signing_id_ = signing_id.empty() ? order.front() : signing_id;
  if (!out.keys_.count(out.signing_id_))
    throw Error("[playback] signing-key-id '" + signing_id + "' is not one of the [playback] keys");
  return out;
}

std::string PlaybackKeys::sign(const std::string &video_id, std::int64_t expires_s) const {
  return signing_id_ + "." + std::to_string(expires_s) + "." +
         mac(keys_.at(signing_id_), video_id, signing_id_, expires_s);
}

bool PlaybackKeys::verify(const std::string &token, const std::string &video_id, std::int64_t now_s) const {
  if (token.size() > 256)
    return false;
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos)
    return false;
  const std::string kid = token.substr(0, dot1), exp_text = token.substr(dot1 + 1, dot2 - dot1 - 1);
  auto key = keys_.find(kid);
  if (key == keys_.end() || exp_text.empty() || exp_text.size() > 18)
    return false;
  for (char c : exp_text)
    if (!g_ascii_isdigit(c))
      return false;
  const std::int64_t exp = std::strtoll(exp_text.c_str(), nullptr, 10);
  // The MAC is checked first, in constant time, whatever the expiry says.
  const bool good = constant_time_equal(token.substr(dot2 + 1), mac(key->second, video_id, kid, exp));
  return good && exp > now_s;
}

} // namespace sluice::auth
