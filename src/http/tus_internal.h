// SPDX-License-Identifier: LGPL-2.1-or-later
// What http/tus.cpp and http/direct_uploads.cpp share.
#pragma once

#include "app/service.h"
#include "http/context.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "http/upload.h"
#include "store/store.h"

#include <libsoup/soup.h>

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace sluice::http::tus_detail {

// The direct upload whose token opened msg (set once its row is read), as a store::DirectUpload.
inline constexpr const char *kDirectKey = "sluice-direct-upload";
// The token of msg whose row is still to be read (set by the auth step): the route reads it on the executor with
// what else it reads, and admit_direct() decides before anything else is done.
inline constexpr const char *kDirectPendingKey = "sluice-direct-pending";
inline const std::string kUploads = std::string(kApi) + "/uploads";

inline bool is_create(const Match &m) {
  return m.route && m.route->handler == handlers::create_upload;
}

inline bool is_upload_route(const Match &m) {
  return m.route && (m.route->handler == handlers::create_upload || m.route->handler == handlers::get_upload ||
                     m.route->handler == handlers::patch_upload || m.route->handler == handlers::delete_upload);
}

inline std::string token_query(SoupServerMessage *msg) {
  const char *query = g_uri_get_query(soup_server_message_get_uri(msg));
  if (!query)
    return "";
  g_autoptr(GHashTable) params = g_uri_parse_params(query, -1, "&", G_URI_PARAMS_NONE, nullptr);
  auto *t = params ? static_cast<const char *>(g_hash_table_lookup(params, "token")) : nullptr;
  return t ? t : "";
}

inline const store::DirectUpload *direct_of(SoupServerMessage *msg) {
  return static_cast<const store::DirectUpload *>(g_object_get_data(G_OBJECT(msg), kDirectKey));
}

inline SoupMessageHeaders *out_headers(SoupServerMessage *msg) {
  return soup_server_message_get_response_headers(msg);
}

// The token the auth step left to be read ("" when none).
inline std::string pending_token(SoupServerMessage *msg) {
  auto *t = static_cast<const char *>(g_object_get_data(G_OBJECT(msg), kDirectPendingKey));
  return t ? t : "";
}

// The auth step's second half, with the token's row as the executor read it (none: unknown or expired): the CORS
// headers of its origin, then the checks (its origin, the creation it opens once, then that upload alone). True: msg
// may go on (kDirectKey set); false: it is answered 401 or 403. `upload_id` is "" for a creation.
bool admit_direct(SoupServerMessage *msg, const std::string &upload_id, const std::optional<store::DirectUpload> &d);

// fn(Args...) made safe to call back on the main loop for msg: what it throws is answered on msg (never crosses the
// loop's callback), and when `pause` msg is paused until it has run (later()). Without `pause` (an inline executor
// answers before the call that took fn returns) msg is not paused.
template <typename... Args, typename Fn>
std::function<void(Args...)> answer_on(Context &cx, SoupServerMessage *msg, bool pause, Fn fn) {
  auto guarded = [msg, fn = std::move(fn)](Args... args) {
    answering_failures(msg, [&] { fn(std::forward<Args>(args)...); });
  };
  if (!pause)
    return guarded;
  return later(cx, msg, std::move(guarded));
}

// Whether the service's catalog calls answer later (a pool) rather than at once (inline).
inline bool catalog_waits(Context &cx) {
  return !cx.service.executor().is_inline();
}

} // namespace sluice::http::tus_detail
