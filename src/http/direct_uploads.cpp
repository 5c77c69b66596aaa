// SPDX-License-Identifier: LGPL-2.1-or-later
// Direct uploads: one-time tus endpoints for a client that holds no key (POST /api/v1/direct-uploads), their CORS
// and their check in the auth step.
#include "app/uploads.h"
#include "core/json.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/tus.h"
#include "http/tus_internal.h"
#include "jobs/scheduler.h"

#include <map>
#include <string>

namespace sluice::http {

using namespace tus_detail;

bool carries_direct_token(SoupServerMessage *msg, const Match &m) {
  return is_upload_route(m) && !token_query(msg).empty();
}

namespace {

// The CORS headers of a direct upload's origin (its page is on another site).
void direct_cors_headers(SoupServerMessage *msg, const std::string &origin) {
  SoupMessageHeaders *h = out_headers(msg);
  soup_message_headers_replace(h, "Access-Control-Allow-Origin", origin.c_str());
  if (!soup_message_headers_header_contains(h, "Vary", "Origin"))
    soup_message_headers_append(h, "Vary", "Origin");
  soup_message_headers_replace(h, "Access-Control-Expose-Headers",
                               "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, "
                               "Upload-Concat, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
                               "Tus-Checksum-Algorithm, Sluice-Video-Id, X-Request-Id");
  if (is_method(msg, "OPTIONS")) {
    soup_message_headers_replace(h, "Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
    soup_message_headers_replace(h, "Access-Control-Allow-Headers",
                                 "Content-Type, Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Metadata, "
                                 "Upload-Offset, Upload-Checksum, Upload-Concat, X-Requested-With, X-Request-Id");
    soup_message_headers_replace(h, "Access-Control-Max-Age", "600");
  }
}

} // namespace

bool direct_cors(Context &cx, SoupServerMessage *msg, const Match &m) {
  std::string origin = header(msg, "Origin");
  if (origin.empty() || (!is_upload_route(m) && !is_method(msg, "OPTIONS")))
    return false;
  const char *path = g_uri_get_path(soup_server_message_get_uri(msg));
  const std::string token = token_query(msg);
  if (token.empty() || !path || !is_tus_path(path) || !app::Uploads::direct_token_form(token))
    return false;
  // A request of the upload's own gets its headers once the route has read the token (admit_direct).
  if (!is_method(msg, "OPTIONS"))
    return false;
  // A preflight: the token's row is read on the executor, the preflight paused meanwhile (at once, inline); the
  // server's own CORS headers are set now and replaced by the token's when it is good for this origin.
  bool set = false;
  cx.service.executor().run([token](store::Store &s) { return app::Uploads::direct_for_token(s, token); },
                            answer_on<store::Outcome<std::optional<store::DirectUpload>> &>(
                                cx, msg, catalog_waits(cx), [msg, origin, &set, waits = catalog_waits(cx)](auto &o) {
                                  if (!o.ok() || !*o.value || (*o.value)->origin != origin)
                                    return;
                                  direct_cors_headers(msg, origin);
                                  if (!waits)
                                    set = true;
                                }));
  return set;
}

bool tus_detail::admit_direct(SoupServerMessage *msg, const std::string &upload_id,
                              const std::optional<store::DirectUpload> &d) {
  g_object_set_data(G_OBJECT(msg), kDirectPendingKey, nullptr);
  auto refuse = [&](const std::string &why) {
    set_error(msg, SOUP_STATUS_UNAUTHORIZED, "unauthorized", why);
    soup_message_headers_replace(out_headers(msg), "WWW-Authenticate",
                                 "Bearer realm=\"sluice\", error=\"invalid_token\"");
    return false;
  };
  if (!d)
    return refuse("the upload token is unknown or has expired");
  // A token opens the creation it was made for (once) and then that upload alone, from its origin alone.
  const std::string origin = header(msg, "Origin");
  if (!origin.empty() && d->origin == origin)
    direct_cors_headers(msg, origin);
  if (!d->origin.empty() && origin != d->origin) {
    set_error(msg, SOUP_STATUS_FORBIDDEN, "origin_not_allowed",
              "this upload token is for pages of " + d->origin + " only");
    return false;
  }
  const bool create = upload_id.empty();
  if (create ? !d->upload_id.empty() : d->upload_id != upload_id)
    return refuse(create ? "this upload token has been used" : "this upload token is for another upload");
  g_object_set_data_full(G_OBJECT(msg), kDirectKey, new store::DirectUpload(*d),
                         [](gpointer p) { delete static_cast<store::DirectUpload *>(p); });
  return true;
}

DirectAuth direct_auth(Context &, SoupServerMessage *msg, const Match &m) {
  const std::string token = token_query(msg);
  if (token.empty() || !is_upload_route(m))
    return DirectAuth::None;
  if (!app::Uploads::direct_token_form(token)) {
    set_error(msg, SOUP_STATUS_UNAUTHORIZED, "unauthorized", "the upload token is unknown or has expired");
    soup_message_headers_replace(out_headers(msg), "WWW-Authenticate",
                                 "Bearer realm=\"sluice\", error=\"invalid_token\"");
    return DirectAuth::Refused;
  }
  // Its row is read by the route on the executor with what else it reads, and admit_direct() decides before the
  // route does anything (every upload route does: tus_body, get_upload, delete_upload).
  g_object_set_data_full(G_OBJECT(msg), kDirectPendingKey, g_strdup(token.c_str()), g_free);
  return DirectAuth::Allowed;
}

namespace handlers {

static void answer_grant(SoupServerMessage *msg, const app::DirectGrant &g, const std::string &host,
                         const std::string &origin);

void create_direct_upload(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string *body = json_body(msg);
  const std::string text = body ? *body : "";
  json::Limits limits;
  limits.max_depth = 3;
  auto invalid = [&](const std::string &why, const char *field = "") {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", why, field);
  };
  if (text.empty())
    return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_json", "the request body must be a JSON object");
  json::Node root = read_json_object(text, limits);
  JsonObject *o = json_node_get_object(root.get());
  std::int64_t max_size = -1, ttl = 3600;
  std::string origin;
  std::map<std::string, std::string> metadata;
  g_autoptr(GList) members = json_object_get_members(o);
  for (GList *l = members; l; l = l->next) {
    std::string name = static_cast<const char *>(l->data);
    JsonNode *n = json_object_get_member(o, name.c_str());
    const bool integer = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64;
    const bool string = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING;
    if (name == "max_size" || name == "ttl") {
      if (!integer)
        return invalid("field '" + name + "': expected an integer", name.c_str());
      (name == "ttl" ? ttl : max_size) = json_node_get_int(n);
    } else if (name == "cors_origin") {
      if (!string && !JSON_NODE_HOLDS_NULL(n))
        return invalid("field 'cors_origin': expected an origin such as https://app.example", "cors_origin");
      origin = string ? json_node_get_string(n) : "";
      g_autoptr(GUri) u = origin.empty() ? nullptr : g_uri_parse(origin.c_str(), G_URI_FLAGS_NONE, nullptr);
      if (!origin.empty() &&
          (!u || !g_uri_get_host(u) ||
           (g_strcmp0(g_uri_get_scheme(u), "http") != 0 && g_strcmp0(g_uri_get_scheme(u), "https") != 0) ||
           (g_uri_get_path(u) && *g_uri_get_path(u)) || g_uri_get_query(u)))
        return invalid("field 'cors_origin': expected an origin such as https://app.example (scheme, host and "
                       "port only)",
                       "cors_origin");
    } else if (name == "metadata") {
      if (!JSON_NODE_HOLDS_OBJECT(n))
        return invalid("field 'metadata': expected an object of strings", "metadata");
      JsonObject *mo = json_node_get_object(n);
      g_autoptr(GList) keys = json_object_get_members(mo);
      for (GList *k = keys; k; k = k->next) {
        JsonNode *v = json_object_get_member(mo, static_cast<const char *>(k->data));
        if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING)
          return invalid(std::string("field 'metadata': '") + static_cast<const char *>(k->data) + "' must be a string",
                         "metadata");
        metadata[static_cast<const char *>(k->data)] = json_node_get_string(v);
      }
    } else {
      return invalid("unknown field '" + name + "' (expected max_size, ttl, metadata, cors_origin)", name.c_str());
    }
  }
  if (max_size < 0)
    return invalid("field 'max_size': the largest file the upload may be, in bytes", "max_size");
  // The grant's row is written on the executor, the message paused meanwhile (at once, inline).
  std::string host = header(msg, "Host");
  cx.service.uploads().create_direct(
      max_size, ttl, metadata, origin,
      answer_on<app::Result<app::DirectGrant>>(cx, msg, catalog_waits(cx),
                                               [msg, host, origin](app::Result<app::DirectGrant> r) {
                                                 if (auto *f = std::get_if<app::Failure>(&r))
                                                   return set_failure(msg, *f);
                                                 const auto &g = std::get<app::DirectGrant>(r);
                                                 answer_grant(msg, g, host, origin);
                                               }));
}

static void answer_grant(SoupServerMessage *msg, const app::DirectGrant &g, const std::string &host,
                         const std::string &origin) {
  // The URL as the client reached this server (a proxy in front: its Host).
  g_autofree gchar *t = g_uri_escape_string(g.token.c_str(), nullptr, FALSE);
  std::string url = (host.empty() ? "" : "http://" + host) + kUploads + "?token=" + t;
  JsonObject *out = json_object_new();
  json_object_set_string_member(out, "id", g.direct.id.c_str());
  json_object_set_string_member(out, "url", url.c_str());
  json_object_set_string_member(out, "token", g.token.c_str());
  json_object_set_int_member(out, "max_size", g.direct.max_size);
  json_object_set_string_member(out, "expires", jobs::iso_time(g.direct.expires).c_str());
  if (origin.empty())
    json_object_set_null_member(out, "cors_origin");
  else
    json_object_set_string_member(out, "cors_origin", origin.c_str());
  set_json(msg, SOUP_STATUS_CREATED, json::object_node(out));
}
} // namespace handlers

} // namespace sluice::http
