// SPDX-License-Identifier: LGPL-2.1-or-later
// Signed playback tokens: HMAC-SHA256 over a video id and an expiry, with key ids for rotation; nothing of HTTP.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace sluice::auth {

// A token is "KID.EXP.MAC": the key id, the expiry (Unix seconds, decimal) and the base64url (no padding)
// HMAC-SHA256, under the key KID, of "sluice-playback:VIDEO:KID:EXP". The video id is not in the token but in
// the URL it opens, and bound by the MAC: a token opens one video only. Every character is URL-safe.
class PlaybackKeys {
public:
  // Keys from "id:secret;id:secret" (spaces around items ignored) and from a file of such items (one or
  // several a line, '#' starts a comment); signing_id names the key that signs (the first one when empty).
  // No key at all: a random 256-bit key made now (id "ephemeral"), so tokens die with the process. Key ids are
  // 1 to 64 of [A-Za-z0-9_-]; secrets at least 16 bytes. Throws Error (Invalid) naming what is wrong.
  static PlaybackKeys load(const std::string &keys, const std::string &keys_file, const std::string &signing_id);

  // A token for video_id that expires at expires_s.
  std::string sign(const std::string &video_id, std::int64_t expires_s) const;
  // Whether token was made by a configured key for video_id and has not expired at now_s (the MAC is compared
  // in constant time).
  bool verify(const std::string &token, const std::string &video_id, std::int64_t now_s) const;

  const std::string &signing_id() const { return signing_id_; }
  bool ephemeral() const { return ephemeral_; }

private:
  std::map<std::string, std::string> keys_; // id -> secret
  std::string signing_id_;
  bool ephemeral_ = false;
};

} // namespace sluice::auth
