// SPDX-License-Identifier: LGPL-2.1-or-later
// The webhooks resource: endpoints (made, listed, read, deleted, their secret rotated) and their deliveries.
#include "app/webhooks.h"
#include "core/json.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "jobs/scheduler.h"

#include <optional>
#include <string>
#include <vector>

namespace sluice::http {

namespace {

void set_time_or_null(JsonObject *o, const char *name, std::int64_t us) {
  if (us)
    json_object_set_string_member(o, name, jobs::iso_time(us).c_str());
  else
    json_object_set_null_member(o, name);
}

// An endpoint as the API shows it: its secret only when `secret` (at creation and rotation, once).
JsonNode *webhook_json(const store::Webhook &w, bool secret) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", w.id.c_str());
  json_object_set_string_member(o, "url", w.url.c_str());
  JsonArray *events = json_array_new();
  for (const auto &e : w.events)
    json_array_add_string_element(events, e.c_str());
  json_object_set_array_member(o, "events", events);
  json_object_set_string_member(o, "description", w.description.c_str());
  json_object_set_string_member(o, "created", jobs::iso_time(w.created).c_str());
  // Until when the secret a rotation replaced still signs (null: none does).
  set_time_or_null(o, "previous_secret_expires", w.previous_until > g_get_real_time() ? w.previous_until : 0);
  if (secret)
    json_object_set_string_member(o, "secret", w.secret.c_str());
  return json::object_node(o);
}

JsonNode *delivery_json(const store::Delivery &d) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", d.id.c_str());
  json_object_set_string_member(o, "event_id", d.event_id.c_str());
  json_object_set_string_member(o, "type", d.type.c_str());
  json_object_set_string_member(o, "subject", d.subject.c_str());
  json_object_set_string_member(o, "created", jobs::iso_time(d.created).c_str());
  json_object_set_string_member(o, "state", d.state.c_str());
  json_object_set_int_member(o, "attempts", d.attempts);
  if (d.last_status)
    json_object_set_int_member(o, "last_status", d.last_status);
  else
    json_object_set_null_member(o, "last_status");
  if (d.last_error.empty())
    json_object_set_null_member(o, "last_error");
  else
    json_object_set_string_member(o, "last_error", d.last_error.c_str());
  set_time_or_null(o, "last_attempt", d.last_attempt);
  set_time_or_null(o, "next_attempt", d.state == "pending" ? std::max(d.next_attempt, d.created) : 0);
  return json::object_node(o);
}

// The fields of a creation; a Failure names the one that is wrong.
std::optional<app::Failure> read_request(const std::string &text, app::WebhookRequest &r) {
  auto invalid = [](const std::string &why, const std::string &field) {
    return app::Failure{app::Refusal::InvalidField, why, field};
  };
  json::Limits limits;
  limits.max_depth = 2;
  json::Node root = read_json_object(text.empty() ? "{}" : text, limits);
  JsonObject *o = json_node_get_object(root.get());
  bool url = false, events = false;
  g_autoptr(GList) members = json_object_get_members(o);
  for (GList *l = members; l; l = l->next) {
    const std::string name = static_cast<const char *>(l->data);
    JsonNode *n = json_object_get_member(o, name.c_str());
    const bool string = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING;
    if (name == "url" || name == "description") {
      if (!string)
        return invalid("field '" + name + "': expected a string", name);
      (name == "url" ? r.url : r.description) = json_node_get_string(n);
      url = url || name == "url";
    } else if (name == "events") {
      if (!JSON_NODE_HOLDS_ARRAY(n))
        return invalid("field 'events': expected an array of event types", name);
      JsonArray *arr = json_node_get_array(n);
      for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *e = json_array_get_element(arr, i);
        if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
          return invalid("field 'events': expected an array of event types", name);
        r.events.emplace_back(json_node_get_string(e));
      }
      events = true;
    } else {
      return invalid("unknown field '" + name + "' (expected url, events, description)", name);
    }
  }
  if (!url)
    return invalid("field 'url' is required", "url");
  if (!events)
    return invalid("field 'events' is required", "events");
  return std::nullopt;
}

} // namespace

namespace handlers {

void create_webhook(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string *body = json_body(msg);
  app::WebhookRequest r;
  if (auto f = read_request(body ? *body : "", r))
    return set_failure(msg, *f);
  if (auto f = app::check_webhook(r, cx.config.webhooks_allow_private))
    return set_failure(msg, *f);
  store::Webhook w;
  w.id = store::new_id();
  w.url = r.url;
  w.events = r.events;
  w.description = r.description;
  w.secret = app::new_webhook_secret();
  w.created = g_get_real_time();
  with_store(
      cx, msg,
      [w](store::Store &s) {
        s.add_webhook(w);
        return w;
      },
      [msg](store::Webhook &made) {
        set_json(msg, SOUP_STATUS_CREATED, webhook_json(made, true));
        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                                     (std::string(kApi) + "/webhooks/" + made.id).c_str());
      });
}

void list_webhooks(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  with_store(
      cx, msg, [](store::Store &s) { return s.webhooks(); },
      [msg](std::vector<store::Webhook> &rows) {
        JsonArray *arr = json_array_new();
        for (const auto &w : rows)
          json_array_add_element(arr, webhook_json(w, false));
        JsonObject *o = json_object_new();
        json_object_set_array_member(o, "webhooks", arr);
        set_json(msg, SOUP_STATUS_OK, json::object_node(o));
      });
}

void get_webhook(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params.at(0);
  if (!store::is_id(id))
    return set_not_found(msg, "no webhook " + id);
  with_store(
      cx, msg, [id](store::Store &s) { return s.webhook(id); },
      [msg, id](std::optional<store::Webhook> &w) {
        if (!w)
          return set_not_found(msg, "no webhook " + id);
        set_json(msg, SOUP_STATUS_OK, webhook_json(*w, false));
      });
}

void delete_webhook(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params.at(0);
  if (!store::is_id(id))
    return set_not_found(msg, "no webhook " + id);
  with_store(
      cx, msg, [id](store::Store &s) { return s.delete_webhook(id); },
      [msg, id](bool &gone) {
        if (!gone)
          return set_not_found(msg, "no webhook " + id);
        set_no_content(msg);
      });
}

void rotate_webhook_secret(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params.at(0);
  if (!store::is_id(id))
    return set_not_found(msg, "no webhook " + id);
  const std::string secret = app::new_webhook_secret();
  const std::int64_t until =
      g_get_real_time() + static_cast<std::int64_t>(cx.config.webhooks_rotation_grace_s) * G_USEC_PER_SEC;
  with_store(
      cx, msg,
      [id, secret, until](store::Store &s) -> std::optional<store::Webhook> {
        if (!s.rotate_webhook_secret(id, secret, until))
          return std::nullopt;
        return s.webhook(id);
      },
      [msg, id](std::optional<store::Webhook> &w) {
        if (!w)
          return set_not_found(msg, "no webhook " + id);
        set_json(msg, SOUP_STATUS_OK, webhook_json(*w, true));
      });
}

void webhook_deliveries(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params.at(0);
  if (!store::is_id(id))
    return set_not_found(msg, "no webhook " + id);
  int limit = 100;
  if (std::string l = query_value(rq.query, "limit"); !l.empty()) {
    gchar *end = nullptr;
    const gint64 v = g_ascii_strtoll(l.c_str(), &end, 10);
    if (!end || *end || v < 1 || v > 1000)
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", "limit: expected a whole number from 1 to 1000",
                       "limit");
    limit = static_cast<int>(v);
  }
  with_store(
      cx, msg,
      [id, limit](store::Store &s) -> std::optional<std::vector<store::Delivery>> {
        if (!s.webhook(id))
          return std::nullopt;
        return s.deliveries(id, limit);
      },
      [msg, id](std::optional<std::vector<store::Delivery>> &rows) {
        if (!rows)
          return set_not_found(msg, "no webhook " + id);
        JsonArray *arr = json_array_new();
        for (const auto &d : *rows)
          json_array_add_element(arr, delivery_json(d));
        JsonObject *o = json_object_new();
        json_object_set_array_member(o, "deliveries", arr);
        set_json(msg, SOUP_STATUS_OK, json::object_node(o));
      });
}

} // namespace handlers

} // namespace sluice::http
