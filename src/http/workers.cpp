// SPDX-License-Identifier: LGPL-2.1-or-later
// The workers resource: the processes that claim jobs from the catalog, their heartbeats and the jobs they run.
#include "core/json.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "jobs/scheduler.h"

#include <map>
#include <string>
#include <vector>

namespace sluice::http::handlers {

namespace {

// What the resource shows, read in one call on the executor.
struct WorkerRows {
  std::vector<store::Worker> workers;
  std::map<std::string, std::vector<std::string>> jobs_of; // running job ids by worker
};

WorkerRows read_workers(store::Store &store) {
  WorkerRows r;
  store::JobFilter running;
  running.state = store::JobState::Running;
  running.limit = 100000;
  for (const auto &j : store.jobs(running))
    r.jobs_of[j.worker].push_back(j.id);
  r.workers = store.workers();
  return r;
}

} // namespace

void workers(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  // Alive: heard from within a lease (a worker silent for longer has lost its jobs to the others).
  const std::int64_t alive_within = static_cast<std::int64_t>(cx.config.lease_s) * G_USEC_PER_SEC;
  with_store(cx, msg, read_workers, [msg, alive_within](WorkerRows &rows) {
    const std::int64_t now = g_get_real_time();
    JsonArray *arr = json_array_new();
    for (const auto &w : rows.workers) {
      JsonObject *o = json_object_new();
      json_object_set_string_member(o, "name", w.name.c_str());
      json_object_set_string_member(o, "role", w.role.c_str());
      json_object_set_string_member(o, "started", jobs::iso_time(w.started).c_str());
      json_object_set_string_member(o, "heartbeat", jobs::iso_time(w.heartbeat).c_str());
      json_object_set_boolean_member(o, "alive", now - w.heartbeat < alive_within);
      json_object_set_int_member(o, "concurrent", w.concurrent);
      json_object_set_int_member(o, "capacity", w.capacity);
      json_object_set_int_member(o, "used", w.used);
      JsonArray *encoders = json_array_new();
      for (const auto &e : w.encoders)
        json_array_add_string_element(encoders, e.c_str());
      json_object_set_array_member(o, "encoders", encoders);
      JsonArray *jobs = json_array_new();
      for (const auto &id : rows.jobs_of[w.name])
        json_array_add_string_element(jobs, id.c_str());
      json_object_set_array_member(o, "jobs", jobs);
      json_array_add_object_element(arr, o);
    }
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "workers", arr);
    set_json(msg, SOUP_STATUS_OK, json::object_node(o));
  });
}

} // namespace sluice::http::handlers
