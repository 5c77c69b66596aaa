// SPDX-License-Identifier: LGPL-2.1-or-later
// GET /api/v1/stats: the operator's figures (app/stats.h) as JSON: jobs by state, the last hour per minute, transcode
// speed, recent failures, live streams and the stored files' use.
#include "app/stats.h"
#include "app/streams.h"
#include "core/json.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "jobs/scheduler.h"

#include <cmath>

namespace sluice::http::handlers {

namespace {

void set_time(JsonObject *o, const char *name, std::int64_t us) {
  if (us > 0)
    json_object_set_string_member(o, name, jobs::iso_time(us).c_str());
  else
    json_object_set_null_member(o, name);
}

// Media seconds per wall second, two decimals; null when nothing was measured.
void set_speed(JsonObject *o, const char *name, double media_s, double wall_s) {
  if (wall_s > 0)
    json_object_set_double_member(o, name, std::round(media_s / wall_s * 100) / 100);
  else
    json_object_set_null_member(o, name);
}

JsonObject *minutes_json(const app::Stats &s) {
  JsonObject *o = json_object_new();
  set_time(o, "start", s.window_start);
  json_object_set_int_member(o, "seconds", 60);
  JsonArray *ok = json_array_new(), *failed = json_array_new(), *speed = json_array_new();
  for (const auto &m : s.minutes) {
    json_array_add_int_element(ok, m.succeeded);
    json_array_add_int_element(failed, m.failed);
    if (m.wall_s > 0)
      json_array_add_double_element(speed, std::round(m.media_s / m.wall_s * 100) / 100);
    else
      json_array_add_null_element(speed);
  }
  json_object_set_array_member(o, "succeeded", ok);
  json_object_set_array_member(o, "failed", failed);
  json_object_set_array_member(o, "speed", speed);
  return o;
}

JsonObject *last_hour_json(const app::Stats &s) {
  int ok = 0, failed = 0;
  double media = 0, wall = 0;
  for (const auto &m : s.minutes) {
    ok += m.succeeded;
    failed += m.failed;
    media += m.media_s;
    wall += m.wall_s;
  }
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "succeeded", ok);
  json_object_set_int_member(o, "failed", failed);
  json_object_set_double_member(o, "media_seconds", std::round(media * 1000) / 1000);
  json_object_set_double_member(o, "wall_seconds", std::round(wall * 1000) / 1000);
  set_speed(o, "speed", media, wall);
  return o;
}

JsonArray *failures_json(const app::Stats &s) {
  JsonArray *arr = json_array_new();
  for (const auto &f : s.failures) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "job_id", f.job.id.c_str());
    json_object_set_string_member(o, "video_id", f.job.video_id.c_str());
    json_object_set_string_member(o, "video_title", f.video_title.c_str());
    json_object_set_string_member(o, "pipeline", f.job.pipeline.c_str());
    json_object_set_int_member(o, "attempts", f.job.attempts);
    set_time(o, "finished", f.job.finished);
    JsonObject *e = json_object_new();
    json_object_set_string_member(e, "code", f.job.error_code.c_str());
    json_object_set_string_member(e, "message", f.job.error.c_str());
    json_object_set_object_member(o, "error", e);
    json_array_add_object_element(arr, o);
  }
  return arr;
}

// Every stream's state as this process's live engine reports it, and those with an input (connecting, live,
// reconnecting) with their figures.
JsonObject *streams_json(Context &cx, const app::Stats &s) {
  JsonObject *by_state = json_object_new();
  for (auto st : {app::StreamState::Idle, app::StreamState::Connecting, app::StreamState::Live,
                  app::StreamState::Reconnecting, app::StreamState::Ended})
    json_object_set_int_member(by_state, app::stream_state_name(st), 0);
  JsonArray *active = json_array_new();
  for (const auto &row : s.streams) {
    const app::StreamView v = cx.service.streams().view(row);
    const char *state = app::stream_state_name(v.figures.state);
    json_object_set_int_member(by_state, state, json_object_get_int_member(by_state, state) + 1);
    if (v.figures.state == app::StreamState::Idle || v.figures.state == app::StreamState::Ended)
      continue;
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "id", row.id.c_str());
    json_object_set_string_member(o, "title", row.title.c_str());
    json_object_set_string_member(o, "pipeline", row.pipeline.c_str());
    json_object_set_string_member(o, "state", state);
    json_object_set_double_member(o, "input_kbps", std::round(v.figures.input_kbps));
    json_object_set_double_member(o, "fps", std::round(v.figures.fps * 10) / 10);
    set_time(o, "since", v.figures.since);
    json_array_add_object_element(active, o);
  }
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "total", static_cast<gint64>(s.streams.size()));
  json_object_set_object_member(o, "by_state", by_state);
  json_object_set_array_member(o, "active", active);
  return o;
}

JsonObject *storage_json(Context &cx) {
  jobs::Scheduler &sched = cx.service.scheduler();
  const app::DiskUse d = app::disk_use(sched.layout().data_dir, sched.storage());
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "kind", d.kind.c_str());
  json_object_set_string_member(o, "where", d.where.c_str());
  if (d.measured > 0) {
    json_object_set_int_member(o, "used_bytes", d.used_bytes);
    json_object_set_int_member(o, "files", d.files);
  } else {
    json_object_set_null_member(o, "used_bytes");
    json_object_set_null_member(o, "files");
  }
  set_time(o, "measured", d.measured);
  // The data folder's file system (the working folders and, without a bucket, the packages too).
  const std::int64_t free_bytes = sched.free_space();
  if (free_bytes >= 0)
    json_object_set_int_member(o, "free_bytes", free_bytes);
  else
    json_object_set_null_member(o, "free_bytes");
  return o;
}

} // namespace

void stats(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::int64_t now = g_get_real_time();
  Context *c = &cx;
  with_store(
      cx, msg, [now](store::Store &s) { return app::read_stats(s, now); },
      [c, msg](app::Stats &s) {
        JsonObject *o = json_object_new();
        set_time(o, "time", s.now);
        JsonObject *jobs = json_object_new();
        for (auto st : {store::JobState::Queued, store::JobState::Running, store::JobState::Succeeded,
                        store::JobState::Failed, store::JobState::Canceled})
          json_object_set_int_member(jobs, store::job_state_name(st), s.by_state[static_cast<std::size_t>(st)]);
        json_object_set_object_member(o, "jobs", jobs);
        json_object_set_object_member(o, "minutes", minutes_json(s));
        json_object_set_object_member(o, "last_hour", last_hour_json(s));
        json_object_set_array_member(o, "failures", failures_json(s));
        json_object_set_object_member(o, "streams", streams_json(*c, s));
        json_object_set_object_member(o, "storage", storage_json(*c));
        set_json(msg, SOUP_STATUS_OK, json::object_node(o));
      });
}

} // namespace sluice::http::handlers
