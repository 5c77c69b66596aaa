// SPDX-License-Identifier: LGPL-2.1-or-later
// The Idempotency-Key header on requests that create something: a retried request gets the first one's answer.
#pragma once

#include "app/service.h"
#include "http/upload.h"
#include "store/store.h"

#include <libsoup/soup.h>

#include <memory>
#include <optional>
#include <set>
#include <string>

namespace sluice::http {

// A client that lost the answer to an upload or a job request (its network dropped while the server
// worked) sends the same request again with the same `Idempotency-Key`: it gets the answer the first
// request got (with `Idempotent-Replayed: true`) instead of a second video or job. Answers are kept in
// the store for `kTtlSeconds`, across restarts; only successful (2xx) answers are kept, so a failed
// request can be retried with its key.
class IdempotencyKeys {
public:
  static constexpr std::int64_t kTtlSeconds = 24 * 3600;
  static constexpr std::size_t kMaxKeyLength = 255;

  explicit IdempotencyKeys(app::Service &service) : service_(service) {}

  // At the start of a request to `scope` (its method and route, e.g. "POST /api/v1/videos") whose
  // content hashes to `fingerprint` ("" when it cannot be known yet). Without the header: nothing.
  // With it: a stored answer is replayed on msg (true: msg is answered); a key whose first request is
  // still running or that was used for another request throws UploadError (409, 422); a malformed key
  // 400. Otherwise the key is held until msg is gone and false is returned. With a pool executor the stored answer
  // is read there, msg paused (its body is not read) until it is back, and false is returned at once: a replay, a 409
  // or 422 or the catalog's 503 then answers msg, and the Upload attached to it meanwhile (http/upload.h) is refused
  // before it writes a byte. Inline, it is read at once.
  bool begin(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint);
  // begin() in two halves, for a handler that reads the catalog on the executor: the request's key (none without
  // the header), the answer stored for it (read on any thread, with a Store of its own; none for a malformed key),
  // then begin() with what that read found.
  static std::optional<std::string> key_of(SoupServerMessage *msg);
  static std::optional<store::StoredAnswer> lookup(store::Store &store, const std::string &scope,
                                                   const std::string &key);
  bool begin(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint,
             const std::optional<store::StoredAnswer> &found);
  // msg has its final answer: a 2xx is stored under its key (when it has one). With a pool the write is made on
  // the executor and the key stays held (a retry is told 409) until it has landed, so that a retry never finds
  // neither the first request nor its answer.
  void remember(SoupServerMessage *msg);

private:
  struct Held;
  void hold_key(SoupServerMessage *msg, const std::string &scope, const std::string &key,
                const std::string &fingerprint);
  // Answers msg with a kept answer (422 when it was kept for another request).
  static void replay(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint,
                     const store::StoredAnswer &a);
  app::Service &service_;
  // scope + "\n" + key of the requests being answered; shared with the messages, which may outlive us.
  std::shared_ptr<std::set<std::string>> in_flight_ = std::make_shared<std::set<std::string>>();
};

} // namespace sluice::http
