// SPDX-License-Identifier: LGPL-2.1-or-later
// The workers resource: the processes that claim jobs from the catalog, their heartbeats and the jobs they run.
#include "core/json.h"
#include "http/respond.h"
#include "http/routes.h"
#include "jobs/scheduler.h"

#include <map>

namespace sluice::http::handlers {

void workers(Context &cx, Request &rq) {
  store::Store &store = cx.service.store();
  store::JobFilter running;
  running.state = store::JobState::Running;
  running.limit = 100000;
  std::map<std::string, std::vector<std::string>> jobs_of;
  for (const auto &j : store.jobs(running))
    jobs_of[j.worker].push_back(j.id);
  const std::int64_t now = g_get_real_time();
  // Alive: heard from within a lease (a worker silent for longer has lost its jobs to the others).
  const std::int64_t alive_within = static_cast<std::int64_t>(cx.config.lease_s) * G_USEC_PER_SEC;
  JsonArray *arr = json_array_new();
  for (const auto &w : store.workers()) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "name", w.name.c_str());
    json_object_set_string_member(o, "role", w.role.c_str());
    json_object_set_string_member(o, "started", jobs::iso_time(w.started).c_str());
    json_object_set_string_member(o, "heartbeat", jobs::iso_time(w.heartbeat).c_str());
    json_object_set_boolean_member(o, "alive", now - w.heartbeat < alive_within);
    json_object_set_int_member(o, "concurrent", w.concurrent);
    JsonArray *encoders = json_array_new();
    for (const auto &e : w.encoders)
      json_array_add_string_element(encoders, e.c_str());
    json_object_set_array_member(o, "encoders", encoders);
    JsonArray *jobs = json_array_new();
    for (const auto &id : jobs_of[w.name])
      json_array_add_string_element(jobs, id.c_str());
    json_object_set_array_member(o, "jobs", jobs);
    json_array_add_object_element(arr, o);
  }
  JsonObject *o = json_object_new();
  json_object_set_array_member(o, "workers", arr);
  set_json(rq.msg, SOUP_STATUS_OK, json::object_node(o));
}

} // namespace sluice::http::handlers
