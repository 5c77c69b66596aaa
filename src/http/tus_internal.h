// SPDX-License-Identifier: LGPL-2.1-or-later
// What http/tus.cpp, http/tus_state.cpp and http/direct_uploads.cpp share.
#pragma once

#include "app/service.h"
#include "app/uploads.h"
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
#include <type_traits>
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

// The headers that describe an upload's progress (every tus answer about one upload).
void upload_headers(SoupServerMessage *msg, const store::ResumableUpload &u);
// Tus-Resumable must be 1.0.0: 412 with the versions this server speaks otherwise.
bool check_version(SoupServerMessage *msg);

// What the body step and the handlers read on the executor before anything else: the pending token's direct upload
// and the upload's row.
struct Read {
  std::optional<store::DirectUpload> direct;
  std::optional<store::ResumableUpload> upload;
};

// `take`: a HEAD's or a PATCH's (at `patch_at`): an upload another process holds is taken over (Uploads::held), by a
// request admit_direct() will let through (`origin`: its Origin header).
inline auto read_for(const std::string &token, const std::string &id, const app::Uploads *take = nullptr,
                     std::optional<std::int64_t> patch_at = std::nullopt, const std::string &origin = "") {
  return [token, id, take, patch_at, origin](store::Store &s) {
    Read r;
    if (!token.empty())
      r.direct = app::Uploads::direct_for_token(s, token);
    if (!id.empty())
      r.upload = app::Uploads::row(s, id);
    // Only once a direct upload's token is known good: a request it does not admit changes nothing.
    if (take && (token.empty() ||
                 (r.direct && r.direct->upload_id == id && (r.direct->origin.empty() || r.direct->origin == origin))))
      r.upload = take->held(s, std::move(r.upload), patch_at);
    return r;
  };
}

// work's answer on the main loop, msg paused meanwhile with a pool (at once, inline).
template <typename Work, typename Answer>
void on_catalog(Context &cx, SoupServerMessage *msg, Work work, Answer answer) {
  using T = std::invoke_result_t<Work &, store::Store &>;
  cx.service.executor().run(std::move(work),
                            answer_on<store::Outcome<T> &>(cx, msg, catalog_waits(cx), std::move(answer)));
}

} // namespace sluice::http::tus_detail
