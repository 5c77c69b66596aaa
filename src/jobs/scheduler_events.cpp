// SPDX-License-Identifier: LGPL-2.1-or-later
// The jobs as the scheduler publishes them: a job's JSON (with its live progress) and its events.
#include "jobs/scheduler_internal.h"

#include "core/json.h"

#include <cmath>

namespace sluice::jobs {

namespace detail {

// The progress members of a job's JSON and of a "progress" event: seconds, rounded for people.
void set_progress_members(JsonObject *o, const Progress &p) {
  json_object_set_int_member(o, "percent", p.percent);
  json_object_set_double_member(o, "position", p.position_ns / 1e9);
  if (p.duration_ns >= 0)
    json_object_set_double_member(o, "duration", p.duration_ns / 1e9);
  else
    json_object_set_null_member(o, "duration");
  json_object_set_double_member(o, "fps", std::round(p.fps * 10) / 10);
  json_object_set_double_member(o, "speed", std::round(p.speed * 100) / 100);
  if (p.eta_ns >= 0)
    json_object_set_double_member(o, "eta", std::round(p.eta_ns / 1e8) / 10);
  else
    json_object_set_null_member(o, "eta");
}

} // namespace detail

std::string iso_time(std::int64_t us) {
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
  if (!dt)
    return {};
  g_autofree gchar *s = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");
  return s;
}

void Scheduler::publish_job(const store::Job &job) {
  json::Node node(job_to_json(job));
  events_.publish("job", job.id, job.video_id, json::to_string(node.get(), false));
}

JsonNode *Scheduler::job_to_json(const store::Job &job) const {
  g_autoptr(JsonObject) o = json_object_new();
  auto set_time = [&](const char *name, std::int64_t us) {
    if (us > 0)
      json_object_set_string_member(o, name, iso_time(us).c_str());
    else
      json_object_set_null_member(o, name);
  };
  json_object_set_string_member(o, "id", job.id.c_str());
  json_object_set_string_member(o, "video_id", job.video_id.c_str());
  json_object_set_string_member(o, "pipeline", job.pipeline.c_str());
  // What the pipeline makes (hls, cmaf, poster, storyboard, preview): clients tell the streaming job
  // of a video from its extras by it.
  if (auto kind = output_kind(job.pipeline))
    json_object_set_string_member(o, "output", pipeline::output_name(*kind).c_str());
  else
    json_object_set_null_member(o, "output");
  json_object_set_string_member(o, "encoder", job.encoder.c_str());
  json_object_set_string_member(o, "ladder", job.ladder.c_str());
  try {
    json::Node p = json::parse(job.params_json.empty() ? "{}" : job.params_json, "params");
    json_object_set_member(o, "params", p.release());
  } catch (const Error &) {
    json_object_set_object_member(o, "params", json_object_new());
  }
  json_object_set_string_member(o, "state", store::job_state_name(job.state));
  json_object_set_int_member(o, "priority", job.priority);
  json_object_set_int_member(o, "attempts", job.attempts);
  json_object_set_int_member(o, "max_attempts", job.max_attempts);
  set_time("created", job.created);
  set_time("started", job.started);
  set_time("finished", job.finished);
  set_time("next_attempt", job.state == store::JobState::Queued ? job.not_before : 0);
  // The worker that runs or ran it (its name as GET /api/v1/workers lists it); null before any claim.
  if (job.worker.empty())
    json_object_set_null_member(o, "worker");
  else
    json_object_set_string_member(o, "worker", job.worker.c_str());

  const Progress *p = nullptr;
  if (auto it = active_.find(job.id); it != active_.end() && it->second->progress)
    p = &*it->second->progress;
  if (p) {
    JsonObject *po = json_object_new();
    detail::set_progress_members(po, *p);
    json_object_set_object_member(o, "progress", po);
  } else if (job.state == store::JobState::Succeeded) {
    JsonObject *po = json_object_new();
    json_object_set_int_member(po, "percent", 100);
    json_object_set_object_member(o, "progress", po);
  } else {
    json_object_set_null_member(o, "progress");
  }
  if (!job.error.empty() && job.state != store::JobState::Succeeded) {
    JsonObject *eo = json_object_new();
    json_object_set_string_member(eo, "code", job.error_code.c_str());
    json_object_set_string_member(eo, "message", job.error.c_str());
    json_object_set_object_member(o, "error", eo);
  } else {
    json_object_set_null_member(o, "error");
  }
  if (!job.result_json.empty()) {
    try {
      json::Node r = json::parse(job.result_json, "result");
      json_object_set_member(o, "result", r.release());
    } catch (const Error &) {
      json_object_set_null_member(o, "result");
    }
  } else {
    json_object_set_null_member(o, "result");
  }
  return json::object_node(static_cast<JsonObject *>(g_steal_pointer(&o)));
}

} // namespace sluice::jobs
