// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload --wait: follows the uploaded video's job over the server's event stream until it can be played.
#include "cli/upload_internal.h"

#include "core/error.h"

#include <algorithm>
#include <cstdio>

namespace sluice::cli::upload_detail {

JsonObject *Follower::streaming_job_of(JsonObject *video) {
  JsonObject *job = nullptr;
  if (JsonNode *jobs = json_object_get_member(video, "jobs"); jobs && JSON_NODE_HOLDS_ARRAY(jobs)) {
    JsonArray *a = json_node_get_array(jobs);
    for (guint i = 0; i < json_array_get_length(a) && !job; i++) {
      JsonNode *j = json_array_get_element(a, i);
      if (!JSON_NODE_HOLDS_OBJECT(j))
        continue;
      JsonObject *jo = json_node_get_object(j);
      JsonNode *out = json_object_get_member(jo, "output");
      if (out && JSON_NODE_HOLDS_VALUE(out) && json_node_get_value_type(out) == G_TYPE_STRING &&
          (std::string(json_node_get_string(out)) == "hls" || std::string(json_node_get_string(out)) == "cmaf"))
        job = jo;
    }
  }
  return job;
}

int Follower::ready(JsonObject *video, const std::string &id) {
  c_.progress.clear();
  JsonNode *pb = json_object_get_member(video, "playback");
  bool any = false;
  if (pb && JSON_NODE_HOLDS_OBJECT(pb)) {
    for (const char *kind : {"hls", "dash"}) {
      JsonNode *u = json_object_get_member(json_node_get_object(pb), kind);
      if (u && JSON_NODE_HOLDS_VALUE(u) && json_node_get_value_type(u) == G_TYPE_STRING) {
        std::printf("%s %s\n", kind, c_.http.resolve(json_node_get_string(u)).c_str());
        any = true;
      }
    }
  }
  std::fflush(stdout);
  std::fprintf(stderr, "sluice: video %s is ready%s\n", id.c_str(), any ? "" : " (no playback URL given)");
  return kExitOk;
}

void Follower::not_ready(const std::string &state, JsonObject *job) {
  c_.progress.clear();
  std::string why = "(no reason given)";
  if (job) {
    JsonNode *e = json_object_get_member(job, "error");
    if (e && JSON_NODE_HOLDS_OBJECT(e)) {
      JsonObject *eo = json_node_get_object(e);
      why =
          printable(string_member(eo, "message", ""), 4000) + " (" + printable(string_member(eo, "code", ""), 64) + ")";
    }
  }
  throw Exit(kExitJobFailed, state == "failed" ? "the video's job failed: " + why : "the video's job was canceled");
}

std::optional<int> Follower::check(const std::string &video) {
  const std::string url = c_.http.resolve("api/v1/videos/" + video);
  for (;;) {
    auto r = c_.http.request("GET", url, {{"Accept", "application/json"}});
    if (!r) {
      c_.backoff.failed(c_.lost("while asking for the video"), "the upload is complete (video " + video + ")");
      continue;
    }
    if (transient(r->status)) {
      c_.backoff.failed("the server could not show the video (" + r->describe() + ")",
                        "the upload is complete (video " + video + ")", retry_after(*r));
      continue;
    }
    if (r->status != SOUP_STATUS_OK)
      c_.refused(*r, "cannot follow the video");
    json::Node n = r->json();
    if (!n)
      throw Exit(kExitFailed, "the server's video is not JSON: " + r->describe());
    JsonObject *v = json_node_get_object(n.get());
    const std::string state = string_member(v, "state", "");
    JsonObject *job = streaming_job_of(v);
    if (job) {
      std::string id = string_member(job, "id", "");
      std::string js = string_member(job, "state", "");
      if (id != streaming_job_ || js != job_state_) {
        streaming_job_ = id;
        job_state_ = js;
        c_.progress.note("job " + id + " (" + string_member(job, "pipeline", "?") + ") " + js);
      }
    }
    if (state == "ready")
      return ready(v, video);
    if (state == "failed" || state == "canceled")
      not_ready(state, job);
    if (state == "uploaded") {
      // No streaming job (auto-transcode off): give the server a moment to queue one, then stop.
      if (uploaded_polls_++ < 10) {
        c_.http.sleep(0.5);
        continue;
      }
      throw Exit(kExitFailed, "the server queued no job for video " + video + ": nothing to wait for");
    }
    return std::nullopt;
  }
}

void Follower::show_job_progress(const std::string &data) {
  json::Node n;
  try {
    n = json::parse(data, "a progress event", json::Limits{8, 1000});
  } catch (const Error &) {
    return;
  }
  if (!JSON_NODE_HOLDS_OBJECT(n.get()))
    return;
  JsonObject *o = json_node_get_object(n.get());
  const double percent = std::clamp(number_member(o, "percent", -1), -1.0, 100.0);
  const double eta = number_member(o, "eta", -1);
  const double speed = std::clamp(number_member(o, "speed", 0), 0.0, 1e6);
  if (c_.progress.tty()) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "  processing %3.0f%%  %5.2fx  ETA %s", percent < 0 ? 0 : percent, speed,
                  format_seconds(eta).c_str());
    c_.progress.line(buf);
  } else if (percent >= 0 && static_cast<int>(percent) / 25 > job_quarter_) {
    job_quarter_ = static_cast<int>(percent) / 25;
    if (job_quarter_ < 4)
      std::fprintf(stderr, "sluice: processing %d%%\n", job_quarter_ * 25);
  }
}

GInputStream *Follower::open_stream(const std::string &url, const std::string &video, const std::string &last_id) {
  for (;;) {
    Headers h{{"Accept", "text/event-stream"}};
    if (!last_id.empty())
      h.emplace_back("Last-Event-ID", last_id);
    g_autoptr(GInputStream) in = nullptr;
    auto r = c_.http.open("GET", url, h, nullptr, nullptr, {}, &in);
    if (!r) {
      c_.backoff.failed(c_.lost("while following the video's job"), "the upload is complete (video " + video + ")");
      continue;
    }
    if (r->status == SOUP_STATUS_OK)
      return static_cast<GInputStream *>(g_steal_pointer(&in));
    Reply full = std::move(*r);
    char buf[4096];
    gssize n = g_input_stream_read(in, buf, sizeof buf, nullptr, nullptr);
    if (n > 0)
      full.body.assign(buf, static_cast<std::size_t>(n));
    if (transient(full.status)) {
      c_.backoff.failed("the server could not stream events (" + full.describe() + ")",
                        "the upload is complete (video " + video + ")", retry_after(full));
      continue;
    }
    c_.refused(full, "cannot follow the video's job");
  }
}

std::optional<int> Follower::read_events(GDataInputStream *lines, const std::string &video, std::string &last_id) {
  std::string event, data, id;
  for (;;) {
    g_autoptr(GError) err = nullptr;
    gsize len = 0;
    g_autofree char *line = g_data_input_stream_read_line(lines, &len, c_.http.cancellable(), &err);
    if (!line) {
      if (err)
        c_.http.check_canceled(err);
      return std::nullopt;
    }
    c_.backoff.succeeded();
    std::string l(line, len);
    if (l.empty()) {
      if (!id.empty())
        last_id = id;
      if (event == "progress" && data.find(streaming_job_) != std::string::npos && !streaming_job_.empty())
        show_job_progress(data);
      else if (event == "job" || event == "video")
        if (auto rc = check(video))
          return rc;
      event.clear();
      data.clear();
      id.clear();
      continue;
    }
    if (l[0] == ':')
      continue;
    std::string field = l.substr(0, l.find(':'));
    std::string value = l.find(':') == std::string::npos ? "" : l.substr(l.find(':') + 1);
    if (!value.empty() && value[0] == ' ')
      value.erase(0, 1);
    if (field == "event")
      event = value;
    else if (field == "data")
      data += (data.empty() ? "" : "\n") + value;
    else if (field == "id")
      id = value;
  }
}

int Follower::follow(const std::string &video) {
  c_.progress.note("waiting for video " + video + " to be ready");
  const std::string url = c_.http.resolve("api/v1/events?video=" + video);
  std::string last_id;
  for (;;) {
    g_autoptr(GInputStream) in = open_stream(url, video, last_id);
    // Events from before the stream opened are not replayed: the state now, then every change.
    if (auto rc = check(video))
      return *rc;
    g_autoptr(GDataInputStream) lines = g_data_input_stream_new(in);
    g_data_input_stream_set_newline_type(lines, G_DATA_STREAM_NEWLINE_TYPE_ANY);
    if (auto rc = read_events(lines, video, last_id))
      return *rc;
    c_.backoff.failed("the event stream ended", "the upload is complete (video " + video + ")");
  }
}

} // namespace sluice::cli::upload_detail
