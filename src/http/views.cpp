// SPDX-License-Identifier: LGPL-2.1-or-later
// Videos and jobs as JSON: the service's views, with URLs spelled here.
#include "http/views.h"

#include "core/json.h"
#include "jobs/scheduler.h"

#include <map>

namespace sluice::http {

std::string media_url(const std::string &video_id, const std::string &pipeline, const std::string &file) {
  return "/videos/" + video_id + "/" + pipeline + "/" + file;
}

JsonNode *job_json(app::Service &service, const store::Job &job) {
  return service.scheduler().job_to_json(job);
}

JsonNode *jobs_json(app::Service &service, const std::vector<store::Job> &jobs) {
  JsonArray *arr = json_array_new();
  for (const auto &j : jobs)
    json_array_add_element(arr, job_json(service, j));
  JsonObject *o = json_object_new();
  json_object_set_array_member(o, "jobs", arr);
  return json::object_node(o);
}

JsonNode *video_json(app::Service &service, const app::VideoView &view) {
  const store::Video &v = view.video;
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", v.id.c_str());
  json_object_set_string_member(o, "title", v.title.c_str());
  json_object_set_string_member(o, "description", v.description.c_str());
  json_object_set_string_member(o, "filename", v.filename.c_str());
  json_object_set_int_member(o, "size", v.size);
  json_object_set_string_member(o, "created", jobs::iso_time(v.created).c_str());
  json_object_set_string_member(o, "playback_policy", v.playback_policy.c_str());
  try {
    json::Node media = json::parse(v.probe_json, "probe");
    JsonObject *mo = json_node_get_object(media.get());
    // The server's path of the upload is nobody's business.
    if (mo)
      json_object_remove_member(mo, "path");
    if (mo && json_object_has_member(mo, "duration"))
      json_object_set_member(o, "duration", json_node_copy(json_object_get_member(mo, "duration")));
    else
      json_object_set_null_member(o, "duration");
    json_object_set_member(o, "media", media.release());
  } catch (const Error &) {
    json_object_set_null_member(o, "media");
    json_object_set_null_member(o, "duration");
  }
  json_object_set_string_member(o, "state", view.state.c_str());
  JsonArray *jobs = json_array_new();
  for (const auto &j : view.jobs)
    json_array_add_element(jobs, job_json(service, j));
  json_object_set_array_member(o, "jobs", jobs);

  // What can be fetched, newest job first: playback.hls / playback.dash (the newest package of each),
  // playback.packages (every package by pipeline), poster, storyboard and preview.
  JsonObject *pb = json_object_new();
  JsonObject *packages = json_object_new();
  std::map<std::string, std::string> roles; // role -> URL
  bool live = false;
  for (const auto &p : view.packages) {
    JsonObject *pkg = json_object_new();
    if (!p.hls.empty()) {
      std::string url = media_url(v.id, p.pipeline, p.hls);
      json_object_set_string_member(pkg, "hls", url.c_str());
      roles.emplace("hls", url);
      live = live || (p.growing && roles["hls"] == url);
    }
    if (!p.dash.empty()) {
      std::string url = media_url(v.id, p.pipeline, p.dash);
      json_object_set_string_member(pkg, "dash", url.c_str());
      roles.emplace("dash", url);
    }
    if (!p.artifact.empty() && p.kind)
      roles.emplace(pipeline::output_name(*p.kind), media_url(v.id, p.pipeline, p.artifact));
    if (json_object_get_size(pkg) > 0)
      json_object_set_object_member(packages, p.pipeline.c_str(), pkg);
    else
      json_object_unref(pkg);
  }
  for (const char *role : {"hls", "dash"})
    if (roles.count(role))
      json_object_set_string_member(pb, role, roles[role].c_str());
  json_object_set_boolean_member(pb, "live", live);
  json_object_set_object_member(pb, "packages", packages);
  for (const char *role : {"poster", "storyboard", "preview"})
    if (roles.count(role))
      json_object_set_string_member(o, role, roles[role].c_str());
    else
      json_object_set_null_member(o, role);
  json_object_set_object_member(o, "playback", pb);
  return json::object_node(o);
}

} // namespace sluice::http
