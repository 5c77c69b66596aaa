// SPDX-License-Identifier: LGPL-2.1-or-later
// JSON answers and errors, and the mapping of the service's refusals to HTTP statuses.
#include "http/respond.h"

#include "core/json.h"

namespace sluice::http {

void set_json(SoupServerMessage *msg, guint status, JsonNode *node) {
  std::string body = json::to_string(node, false) + "\n";
  json_node_unref(node);
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body.data(), body.size());
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control", "no-store");
}

void set_error(SoupServerMessage *msg, guint status, const std::string &code, const std::string &message,
               const std::string &field) {
  JsonObject *e = json_object_new();
  json_object_set_string_member(e, "code", code.c_str());
  json_object_set_string_member(e, "message", message.c_str());
  if (!field.empty())
    json_object_set_string_member(e, "field", field.c_str());
  JsonObject *o = json_object_new();
  json_object_set_object_member(o, "error", e);
  set_json(msg, status, json::object_node(o));
}

void set_not_found(SoupServerMessage *msg, const std::string &what) {
  set_error(msg, SOUP_STATUS_NOT_FOUND, "not_found", what);
}

void set_method_not_allowed(SoupServerMessage *msg, const std::string &allow) {
  set_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed",
            std::string(soup_server_message_get_method(msg)) + " is not allowed here; allowed: " + allow);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", allow.c_str());
}

void set_failure(SoupServerMessage *msg, const app::Failure &f) {
  using app::Refusal;
  struct Answer {
    guint status;
    const char *code;
  };
  Answer a{SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal"};
  switch (f.refusal) {
  case Refusal::InvalidField: a = {SOUP_STATUS_BAD_REQUEST, "invalid_field"}; break;
  case Refusal::InvalidParameter: a = {SOUP_STATUS_UNPROCESSABLE_ENTITY, "invalid_parameter"}; break;
  case Refusal::NotFound: a = {SOUP_STATUS_NOT_FOUND, "not_found"}; break;
  case Refusal::Conflict: a = {SOUP_STATUS_CONFLICT, "conflict"}; break;
  case Refusal::NotMedia: a = {SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "not_media"}; break;
  case Refusal::QueueFull: a = {SOUP_STATUS_SERVICE_UNAVAILABLE, "queue_full"}; break;
  case Refusal::Unavailable: a = {SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable"}; break;
  case Refusal::NoSpace: a = {SOUP_STATUS_INSUFFICIENT_STORAGE, "insufficient_storage"}; break;
  case Refusal::Internal: break;
  case Refusal::Gone: a = {SOUP_STATUS_GONE, "gone"}; break;
  case Refusal::Locked: a = {SOUP_STATUS_LOCKED, "locked"}; break;
  case Refusal::OffsetMismatch: a = {SOUP_STATUS_CONFLICT, "offset_mismatch"}; break;
  case Refusal::TooLarge: a = {SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large"}; break;
  case Refusal::ChecksumMismatch: a = {460, "checksum_mismatch"}; break; // tus's checksum extension
  case Refusal::Forbidden: a = {SOUP_STATUS_FORBIDDEN, "forbidden"}; break;
  }
  set_error(msg, a.status, a.code, f.message, f.field);
  if (a.status == 460)
    soup_server_message_set_status(msg, 460, "Checksum Mismatch");
}

namespace {

// libsoup 3.2 removes a 204's Content-Length as it writes the headers (as HTTP wants), which forgets the answer's
// encoding: soup_server_message_is_keepalive then takes it for an answer that ends with the connection (EOF) and
// closes the connection after it, so that a client of PATCHes (tus) opened a connection for each. Once the headers
// are written, the answer is said to have no body (what write_headers sent): the connection is kept, as HTTP/1.1
// wants unless a side asked for Connection: close.
void keep_alive_after_no_content(SoupServerMessage *msg, gpointer) {
  if (soup_server_message_get_status(msg) == SOUP_STATUS_NO_CONTENT)
    soup_message_headers_set_encoding(soup_server_message_get_response_headers(msg), SOUP_ENCODING_NONE);
}

} // namespace

void set_no_content(SoupServerMessage *msg) {
  soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, nullptr);
  g_signal_handlers_disconnect_by_func(msg, reinterpret_cast<gpointer>(keep_alive_after_no_content), nullptr);
  g_signal_connect(msg, "wrote-headers", G_CALLBACK(keep_alive_after_no_content), nullptr);
}

bool is_method(SoupServerMessage *msg, const char *method) {
  return g_strcmp0(soup_server_message_get_method(msg), method) == 0;
}

bool is_write_method(SoupServerMessage *msg) {
  return is_method(msg, "POST") || is_method(msg, "PUT") || is_method(msg, "PATCH") || is_method(msg, "DELETE");
}

std::string header(SoupServerMessage *msg, const char *name) {
  const char *v = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), name);
  return v ? v : "";
}

std::string query_value(GHashTable *query, const char *name) {
  if (!query)
    return {};
  auto v = static_cast<const char *>(g_hash_table_lookup(query, name));
  return v ? v : "";
}

} // namespace sluice::http
