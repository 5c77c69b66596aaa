// SPDX-License-Identifier: LGPL-2.1-or-later
// Health, and what this server can run: its pipeline descriptions and encoders.
#include "core/json.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "pipeline/description.h"
#include "sluice-config.h"

namespace sluice::http::handlers {

namespace {

void answer_health(SoupServerMessage *msg, const app::HealthView &h) {
  const bool ready = h.ready();
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "status", ready ? "ok" : "unavailable");
  json_object_set_string_member(o, "version", SLUICE_VERSION);
  json_object_set_boolean_member(o, "live", TRUE);
  json_object_set_boolean_member(o, "ready", ready);
  JsonObject *checks = json_object_new();
  JsonObject *s = json_object_new();
  json_object_set_boolean_member(s, "ok", h.readable && h.writable);
  json_object_set_boolean_member(s, "readable", h.readable);
  json_object_set_boolean_member(s, "writable", h.writable);
  // Job states the catalog refused, written again until they land.
  json_object_set_int_member(s, "unsaved_jobs", static_cast<gint64>(h.unsaved_jobs));
  json_object_set_object_member(checks, "store", s);
  JsonObject *d = json_object_new();
  json_object_set_boolean_member(d, "ok", h.free_bytes >= h.min_free_bytes);
  json_object_set_int_member(d, "free_bytes", h.free_bytes);
  json_object_set_int_member(d, "min_free_bytes", h.min_free_bytes);
  json_object_set_object_member(checks, "disk", d);
  json_object_set_object_member(o, "checks", checks);
  JsonObject *j = json_object_new();
  if (h.queued)
    json_object_set_int_member(j, "queued", *h.queued);
  if (h.running)
    json_object_set_int_member(j, "running", *h.running);
  json_object_set_int_member(j, "slots", h.slots);
  json_object_set_object_member(o, "jobs", j);
  set_json(msg, ready ? SOUP_STATUS_OK : SOUP_STATUS_SERVICE_UNAVAILABLE, json::object_node(o));
}

} // namespace

void health(Context &cx, Request &rq) {
  // Never waits for the catalog: readiness is the latest probe's (app/service_async.cpp).
  SoupServerMessage *msg = rq.msg;
  if (cx.service.executor().is_inline())
    return answer_health(msg, cx.service.health());
  cx.service.health(later(cx, msg, [msg](const app::HealthView &h) { answer_health(msg, h); }));
}

void pipelines(Context &cx, Request &rq) {
  JsonArray *arr = json_array_new();
  for (const auto &d : pipeline::list_descriptions())
    json_array_add_element(arr, pipeline::description_to_json(d));
  JsonObject *o = json_object_new();
  json_object_set_array_member(o, "pipelines", arr);
  json_object_set_string_member(o, "default", cx.config.pipeline.c_str());
  set_json(rq.msg, SOUP_STATUS_OK, json::object_node(o));
}

void encoders(Context &cx, Request &rq) {
  auto &table = cx.service.scheduler().encoders();
  JsonNode *enc = table.to_json(true);
  JsonObject *o = json_object_ref(json_node_get_object(enc));
  json_node_unref(enc);
  json_object_set_string_member(o, "default", cx.config.encoder.c_str());
  try {
    json_object_set_string_member(o, "auto", table.resolve("auto").c_str());
  } catch (const Error &) {
    json_object_set_null_member(o, "auto");
  }
  set_json(rq.msg, SOUP_STATUS_OK, json::object_node(o));
}

} // namespace sluice::http::handlers
