// SPDX-License-Identifier: LGPL-2.1-or-later
// The stream resource: POST/GET/DELETE /api/v1/streams, with the URLs publishers and players use.
#include "app/streams.h"
#include "core/json.h"
#include "http/files.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "jobs/scheduler.h"

#include <string>

namespace sluice::http {

namespace {

// The host a client reached us by (its Host header without the port), for the ingest URLs on other ports.
std::string request_host(Context &cx, SoupServerMessage *msg) {
  std::string host = header(msg, "Host");
  if (host.empty())
    return cx.config.host;
  if (host.front() == '[') {
    auto close = host.find(']');
    return close == std::string::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string::npos ? host : host.substr(0, colon);
}

JsonNode *stream_json(Context &cx, SoupServerMessage *msg, const app::StreamView &v) {
  const auto &s = v.stream;
  const auto &f = v.figures;
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", s.id.c_str());
  json_object_set_string_member(o, "title", s.title.c_str());
  json_object_set_string_member(o, "pipeline", s.pipeline.c_str());
  json_object_set_string_member(o, "ladder", s.ladder.c_str());
  json_object_set_boolean_member(o, "record", s.record);
  if (s.source.empty())
    json_object_set_null_member(o, "source");
  else
    json_object_set_string_member(o, "source", s.source.c_str());
  json_object_set_string_member(o, "state", app::stream_state_name(f.state));
  if (!f.reason.empty())
    json_object_set_string_member(o, "reason", f.reason.c_str());
  JsonObject *in = json_object_new();
  json_object_set_double_member(in, "kbps", f.input_kbps);
  json_object_set_double_member(in, "fps", f.fps);
  json_object_set_int_member(in, "dropped_frames", f.dropped);
  if (f.latency_s >= 0)
    json_object_set_double_member(in, "latency", f.latency_s);
  else
    json_object_set_null_member(in, "latency");
  json_object_set_object_member(o, "input", in);
  if (f.recording.empty())
    json_object_set_null_member(o, "recording");
  else
    json_object_set_object_member(o, "recording", app::recording_json(f));
  json_object_set_string_member(o, "created", jobs::iso_time(s.created).c_str());
  // The key is shown once, in the answer that made the stream; the ingest URLs carry it.
  if (!v.key.empty()) {
    json_object_set_string_member(o, "key", v.key.c_str());
    const std::string host = request_host(cx, msg);
    JsonObject *ingest = json_object_new();
    if (s.source.empty() && cx.config.rtsp_port >= 0)
      json_object_set_string_member(ingest, "rtsp",
                                    app::rtsp_url(host, cx.config.rtsp_port, app::live_path(v.key)).c_str());
    if (s.source.empty() && cx.config.srt_port >= 0)
      json_object_set_string_member(ingest, "srt", app::srt_url(host, cx.config.srt_port, v.key).c_str());
    json_object_set_object_member(o, "ingest", ingest);
  }
  JsonObject *play = json_object_new();
  const std::string base = "/streams/" + s.id + "/";
  json_object_set_string_member(play, "hls", (base + "master.m3u8").c_str());
  if (s.pipeline == "live-cmaf")
    json_object_set_string_member(play, "dash", (base + "manifest.mpd").c_str());
  if (cx.config.rtsp_port >= 0)
    json_object_set_string_member(
        play, "rtsp", app::rtsp_url(request_host(cx, msg), cx.config.rtsp_port, app::live_path(s.id)).c_str());
  json_object_set_object_member(o, "playback", play);
  return json::object_node(o);
}

// A file of a live output: playlists change, and segments come back under the same names when the publisher starts
// again.
void serve_live_file(SoupServerMessage *msg, const std::string &path) {
  ServeOptions opts;
  opts.cache_control = "no-cache";
  try {
    serve_file(msg, path, opts);
  } catch (const Error &e) {
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
}

} // namespace

namespace handlers {

void create_stream(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string *body = json_body(msg);
  const std::string text = body ? *body : "";
  json::Limits limits;
  limits.max_depth = 2;
  auto invalid = [&](const std::string &why, const std::string &field) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", why, field);
  };
  app::StreamRequest r;
  if (!text.empty()) {
    json::Node root = read_json_object(text, limits);
    JsonObject *o = json_node_get_object(root.get());
    g_autoptr(GList) members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next) {
      const std::string name = static_cast<const char *>(l->data);
      JsonNode *n = json_object_get_member(o, name.c_str());
      const bool string = JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING;
      if (name == "record") {
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
          return invalid("field 'record': expected true or false", name);
        r.record = json_node_get_boolean(n);
      } else if (name == "source" && JSON_NODE_HOLDS_NULL(n)) {
        r.source.clear();
      } else if (name == "title" || name == "pipeline" || name == "ladder" || name == "source") {
        if (!string)
          return invalid("field '" + name + "': expected a string", name);
        std::string v = json_node_get_string(n);
        (name == "title" ? r.title : name == "pipeline" ? r.pipeline : name == "ladder" ? r.ladder : r.source) = v;
      } else {
        return invalid("unknown field '" + name + "' (expected title, pipeline, ladder, record, source)", name);
      }
    }
  }
  // The row is written on the catalog's executor; the answer (which shows the key, once) waits for it.
  Context *c = &cx;
  cx.service.streams().create(r, later(cx, msg, [c, msg](app::Result<app::StreamView> res) {
                                if (auto *f = std::get_if<app::Failure>(&res))
                                  return set_failure(msg, *f);
                                const auto &v = std::get<app::StreamView>(res);
                                set_json(msg, SOUP_STATUS_CREATED, stream_json(*c, msg, v));
                                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                                                             (std::string(kApi) + "/streams/" + v.stream.id).c_str());
                              }));
}

void list_streams(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  Context *c = &cx;
  with_store(
      cx, msg, [](store::Store &s) { return s.streams(); },
      [c, msg](std::vector<store::Stream> &rows) {
        JsonArray *arr = json_array_new();
        for (const auto &row : rows)
          json_array_add_element(arr, stream_json(*c, msg, c->service.streams().view(row)));
        JsonObject *o = json_object_new();
        json_object_set_array_member(o, "streams", arr);
        set_json(msg, SOUP_STATUS_OK, json::object_node(o));
      });
}

void get_stream(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params.at(0);
  if (!store::is_id(id))
    return set_not_found(msg, "no stream " + id);
  Context *c = &cx;
  with_store(
      cx, msg, [id](store::Store &s) { return s.stream(id); },
      [c, msg, id](std::optional<store::Stream> &row) {
        if (!row)
          return set_not_found(msg, "no stream " + id);
        set_json(msg, SOUP_STATUS_OK, stream_json(*c, msg, c->service.streams().view(*row)));
      });
}

void live_media(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  auto segments = split_path(rq.params.at(1));
  if (!segments || segments->empty())
    return set_not_found(msg, "no such file");
  const std::string id = rq.params.at(0);
  auto found = cx.service.streams().media_file(id, *segments);
  if (auto *f = std::get_if<app::Failure>(&found))
    return set_failure(msg, *f);
  const std::string path = std::get<std::string>(found);
  // A stream this process runs is served at once; another's row is asked for each time, off the main loop (a
  // deleted stream's folder goes after its row).
  if (cx.service.streams().known(id))
    return serve_live_file(msg, path);
  with_store(
      cx, msg, [id](store::Store &s) { return s.stream(id).has_value(); },
      [msg, path](bool &exists) {
        if (!exists)
          return set_not_found(msg, "no such file");
        serve_live_file(msg, path);
      });
}

bool live_media_fast(Context &cx, const std::string &id, const std::string &rest, bool head,
                     SoupMessageHeaders *request, SoupMessageHeaders *response, FileAnswer &out) {
  // live_media()'s answer for a stream this process runs (one it does not is asked of the catalog: live_media's).
  auto segments = split_path(rest);
  if (!segments || segments->empty() || !cx.service.streams().known(id))
    return false;
  auto found = cx.service.streams().media_file(id, *segments);
  const std::string *path = std::get_if<std::string>(&found);
  if (!path)
    return false;
  ServeOptions opts;
  opts.cache_control = "no-cache";
  opts.descriptor = true; // sent with sendfile(); its playlists are replaced whole (renamed), never rewritten in place
  try {
    answer_file(head, request, response, *path, opts, out);
  } catch (const Error &) {
    return false;
  }
  return out.answered();
}

void delete_stream(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  cx.service.streams().remove(rq.params.at(0), later(cx, msg, [msg](std::optional<app::Failure> f) {
                                if (f)
                                  return set_failure(msg, *f);
                                set_no_content(msg);
                              }));
}

} // namespace handlers

} // namespace sluice::http
