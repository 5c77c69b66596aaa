// SPDX-License-Identifier: LGPL-2.1-or-later
// Idempotency-Key: answers of creating requests kept in the store, replayed to a client that retries.
#include "http/idempotency.h"

#include "core/error.h"
#include "http/context.h"
#include "http/log.h"
#include "http/respond.h"

#include <algorithm>
#include <memory>

namespace sluice::http {

namespace {
constexpr const char *kHeldKey = "sluice-idempotency-key";
constexpr const char *kHeader = "Idempotency-Key";
} // namespace

// The key of a request being answered; it is released (for a retry) when the message goes.
struct IdempotencyKeys::Held {
  std::shared_ptr<std::set<std::string>> in_flight;
  std::string id, scope, key, fingerprint;
};

namespace {

bool well_formed(const std::string &key) {
  return !key.empty() && key.size() <= IdempotencyKeys::kMaxKeyLength &&
         std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

} // namespace

// Holds the key for msg (a second request with it is told 409) until msg goes.
void IdempotencyKeys::hold_key(SoupServerMessage *msg, const std::string &scope, const std::string &key,
                               const std::string &fingerprint) {
  std::string id = scope + "\n" + key;
  if (!in_flight_->insert(id).second)
    throw UploadError{SOUP_STATUS_CONFLICT, "conflict",
                      "a request with this Idempotency-Key is still being answered; retry once it is", kHeader};
  auto *held = new Held{in_flight_, std::move(id), scope, key, fingerprint};
  g_object_set_data_full(G_OBJECT(msg), kHeldKey, held, [](gpointer p) {
    auto *h = static_cast<Held *>(p);
    h->in_flight->erase(h->id);
    delete h;
  });
}

std::optional<std::string> IdempotencyKeys::key_of(SoupServerMessage *msg) {
  const char *raw = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), kHeader);
  return raw ? std::optional<std::string>(raw) : std::nullopt;
}

std::optional<store::StoredAnswer> IdempotencyKeys::lookup(store::Store &store, const std::string &scope,
                                                           const std::string &key) {
  if (!well_formed(key))
    return std::nullopt;
  return store.stored_answer(scope, key, g_get_real_time() - kTtlSeconds * G_USEC_PER_SEC);
}

bool IdempotencyKeys::begin(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint) {
  auto raw = key_of(msg);
  if (!raw)
    return false;
  const std::string key = *raw;
  store::Executor &ex = service_.executor();
  if (ex.is_inline() || !well_formed(key))
    return begin(msg, scope, fingerprint, lookup(service_.store(), scope, key));
  // The key is held at once (a second request with it is told 409), and the answer kept for it is read on the
  // executor with msg paused: its body is not taken before that read is back. A replay (or a refusal) then answers
  // msg, and an upload the body step attached meanwhile is dropped before a byte of it is written.
  hold_key(msg, scope, key, fingerprint);
  g_object_ref(msg);
  hold(msg);
  ex.run([scope, key](store::Store &s) { return lookup(s, scope, key); },
         [msg, scope, fingerprint](store::Outcome<std::optional<store::StoredAnswer>> &o) {
           // Answered meanwhile by what followed in the body step (a refusal): that answer stands.
           if (soup_server_message_get_status(msg) == 0 && (!o.ok() || *o.value)) {
             // Not this request's to keep: the key goes with the answer below.
             g_object_set_data(G_OBJECT(msg), kHeldKey, nullptr);
             UploadError why{SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "", ""};
             if (!o.ok()) {
               set_failure(msg, app::failure_of(*o.error));
               why.message = o.error->what();
             } else {
               try {
                 replay(msg, scope, fingerprint, **o.value);
                 why = UploadError{SOUP_STATUS_OK, "replayed", "its Idempotency-Key's answer was replayed", ""};
               } catch (const UploadError &e) {
                 set_error(msg, e.status, e.code, e.message, e.field);
                 why = e;
               }
             }
             if (auto up = Upload::from(msg))
               up->refuse(why);
           }
           release(msg);
           g_object_unref(msg);
         });
  return false;
}

void IdempotencyKeys::replay(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint,
                             const store::StoredAnswer &a) {
  if (a.fingerprint != fingerprint)
    throw UploadError{422, "idempotency_key_reused",
                      "this Idempotency-Key was used for a different request; use a new key for a new request",
                      kHeader};
  SLUICE_LOG(http_log(), Info, "%s: replaying the answer kept for its Idempotency-Key", scope.c_str());
  soup_server_message_set_status(msg, static_cast<guint>(a.status), nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, a.body.data(), a.body.size());
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_replace(h, "Cache-Control", "no-store");
  soup_message_headers_replace(h, "Idempotent-Replayed", "true");
  if (!a.location.empty())
    soup_message_headers_replace(h, "Location", a.location.c_str());
}

bool IdempotencyKeys::begin(SoupServerMessage *msg, const std::string &scope, const std::string &fingerprint,
                            const std::optional<store::StoredAnswer> &found) {
  auto raw = key_of(msg);
  if (!raw)
    return false;
  const std::string &key = *raw;
  if (!well_formed(key))
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                      "Idempotency-Key must be 1 to " + std::to_string(kMaxKeyLength) +
                          " visible ASCII characters (a UUID, for example)",
                      kHeader};
  if (const auto &a = found) {
    replay(msg, scope, fingerprint, *a);
    return true;
  }
  hold_key(msg, scope, key, fingerprint);
  return false;
}

void IdempotencyKeys::remember(SoupServerMessage *msg) {
  auto *held = static_cast<Held *>(g_object_get_data(G_OBJECT(msg), kHeldKey));
  guint status = soup_server_message_get_status(msg);
  if (!held || status < 200 || status > 299)
    return;
  store::StoredAnswer a;
  a.scope = held->scope;
  a.key = held->key;
  a.fingerprint = held->fingerprint;
  a.status = static_cast<int>(status);
  g_autoptr(GBytes) body = soup_message_body_flatten(soup_server_message_get_response_body(msg));
  gsize len = 0;
  auto data = static_cast<const char *>(g_bytes_get_data(body, &len));
  a.body.assign(data ? data : "", len);
  if (const char *loc = soup_message_headers_get_one(soup_server_message_get_response_headers(msg), "Location"))
    a.location = loc;
  a.created = g_get_real_time();
  // The key goes with the write, not with the message (which may be gone first): released when it has landed.
  g_object_steal_data(G_OBJECT(msg), kHeldKey);
  std::shared_ptr<Held> keep(held, [](Held *h) {
    h->in_flight->erase(h->id);
    delete h;
  });
  // The answer goes out once it is kept (or could not be): a client that has it finds it again with the key, even
  // after a crash right after the answer.
  g_object_ref(msg);
  hold(msg);
  service_.executor().run(
      [a](store::Store &s) {
        s.store_answer(a, a.created - kTtlSeconds * G_USEC_PER_SEC);
        return true;
      },
      [keep, msg, scope = a.scope](store::Outcome<bool> &o) {
        // The answer still goes out; only a retry would not find it.
        if (!o.ok())
          SLUICE_LOG(http_log(), Warning, "%s: cannot keep the answer for its Idempotency-Key: %s", scope.c_str(),
                     o.error->what());
        release(msg);
        g_object_unref(msg);
      });
}

} // namespace sluice::http
