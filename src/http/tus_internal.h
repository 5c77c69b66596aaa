// SPDX-License-Identifier: LGPL-2.1-or-later
// What http/tus.cpp and http/direct_uploads.cpp share.
#pragma once

#include "http/context.h"
#include "http/routes.h"
#include "store/store.h"

#include <libsoup/soup.h>

#include <string>

namespace sluice::http::tus_detail {

// The direct upload whose token opened msg (set by the auth step), as a store::DirectUpload.
inline constexpr const char *kDirectKey = "sluice-direct-upload";
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

} // namespace sluice::http::tus_detail
