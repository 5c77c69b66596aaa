// SPDX-License-Identifier: LGPL-2.1-or-later
// The video resource: uploads, listing, one video, deletion, and a video's job requests.
#include "core/json.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "http/upload.h"
#include "http/views.h"
#include "jobs/scheduler.h"

#include <initializer_list>
#include <memory>

namespace sluice::http::handlers {

namespace {

// Turns a JSON scalar into the string form the parameter validator reads.
std::string scalar_string(JsonNode *n, const std::string &field) {
  if (!JSON_NODE_HOLDS_VALUE(n))
    throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                      "field '" + field + "': expected a string, number or boolean", field};
  return json::scalar_text(n);
}

// Reads a job request body: a flat object with one small "params" object. Throws UploadError (400, 422).
app::JobRequest read_job_request(const std::string &text) {
  app::JobRequest req;
  if (text.empty())
    return req;
  json::Node root = read_json_object(text, json::Limits{8, 1000});
  JsonObject *o = json_node_get_object(root.get());
  g_autoptr(GList) members = json_object_get_members(o);
  for (GList *m = members; m; m = m->next) {
    std::string name = static_cast<const char *>(m->data);
    JsonNode *val = json_object_get_member(o, name.c_str());
    auto str = [&]() -> std::string {
      if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_STRING)
        throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field '" + name + "': expected a string", name};
      return json_node_get_string(val);
    };
    if (name == "pipeline") {
      req.pipeline = str();
    } else if (name == "encoder") {
      req.encoder = str();
    } else if (name == "ladder") {
      req.ladder = str();
    } else if (name == "priority") {
      if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_INT64)
        throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'priority': expected an integer", name};
      req.priority = json_node_get_int(val);
    } else if (name == "params") {
      if (JSON_NODE_HOLDS_NULL(val))
        continue;
      if (!JSON_NODE_HOLDS_OBJECT(val))
        throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'params': expected an object", name};
      JsonObject *po = json_node_get_object(val);
      g_autoptr(GList) pm = json_object_get_members(po);
      for (GList *x = pm; x; x = x->next) {
        std::string pname = static_cast<const char *>(x->data);
        req.params[pname] = scalar_string(json_object_get_member(po, pname.c_str()), "params." + pname);
      }
    } else {
      throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                        "unknown field '" + name + "' (expected pipeline, encoder, ladder, params, priority)", name};
    }
  }
  return req;
}

// Reads a small flat JSON object body ("" -> none) whose members are all in `known`. Throws UploadError
// (400, 422).
json::Node read_object(const std::string &text, std::initializer_list<const char *> known, const char *expected) {
  if (text.empty())
    return json::Node();
  json::Node root = read_json_object(text, json::Limits{2, 100});
  g_autoptr(GList) members = json_object_get_members(json_node_get_object(root.get()));
  for (GList *m = members; m; m = m->next) {
    std::string name = static_cast<const char *>(m->data);
    bool ok = false;
    for (const char *k : known)
      ok = ok || name == k;
    if (!ok)
      throw UploadError{SOUP_STATUS_BAD_REQUEST, "invalid_field",
                        "unknown field '" + name + "' (expected " + expected + ")", name};
  }
  return root;
}

// A video's row and its jobs (newest first), as the store's executor reads them.
using VideoRow = std::pair<store::Video, std::vector<store::Job>>;

std::vector<VideoRow> video_rows(store::Store &store) {
  std::vector<VideoRow> out;
  for (auto &v : store.videos()) {
    store::JobFilter f;
    f.video_id = v.id;
    auto jobs = store.jobs(f);
    out.emplace_back(std::move(v), std::move(jobs));
  }
  return out;
}

auto video_row(const std::string &id) {
  return [id](store::Store &store) -> std::optional<VideoRow> {
    auto v = store::is_id(id) ? store.video(id) : std::nullopt;
    if (!v)
      return std::nullopt;
    store::JobFilter f;
    f.video_id = id;
    return VideoRow{std::move(*v), store.jobs(f)};
  };
}

// Whether the video exists, read on the executor (and with it what else `more` reads: the answer stored for an
// Idempotency-Key).
struct Found {
  bool video = false;
  std::optional<store::StoredAnswer> answer;
};

auto find_video(const std::string &id) {
  return [id](store::Store &store) {
    Found f;
    f.video = store::is_id(id) && store.video(id);
    return f;
  };
}

} // namespace

void list_videos(Context &cx, Request &rq) {
  // The rows are read on the store's executor; the views (files, running jobs) are made on the main loop.
  SoupServerMessage *msg = rq.msg;
  app::Service *service = &cx.service;
  with_store(cx, msg, video_rows, [msg, service](std::vector<VideoRow> &rows) {
    JsonArray *arr = json_array_new();
    for (auto &[v, jobs] : rows)
      json_array_add_element(arr, video_json(*service, service->view(v, std::move(jobs))));
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "videos", arr);
    set_json(msg, SOUP_STATUS_OK, json::object_node(o));
  });
}

void get_video(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  app::Service *service = &cx.service;
  with_store(cx, msg, video_row(rq.params[0]), [msg, service, id = rq.params[0]](std::optional<VideoRow> &row) {
    if (!row)
      return set_not_found(msg, "no video " + id);
    set_json(msg, SOUP_STATUS_OK, video_json(*service, service->view(row->first, std::move(row->second))));
  });
}

void video_jobs(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  app::Service *service = &cx.service;
  with_store(cx, msg, video_row(rq.params[0]), [msg, service, id = rq.params[0]](std::optional<VideoRow> &row) {
    if (!row)
      return set_not_found(msg, "no video " + id);
    set_json(msg, SOUP_STATUS_OK, jobs_json(*service, row->second));
  });
}

void delete_video(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  cx.service.delete_video(rq.params[0], later(cx, msg, [msg](std::optional<app::Failure> f) {
                            if (f)
                              set_failure(msg, *f);
                            else
                              set_no_content(msg);
                          }));
}

void upload(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  auto up = Upload::from(msg);
  if (!up)
    return set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", "the upload was not set up");
  if (auto err = up->finish()) {
    up->discard();
    return set_error(msg, err->status, err->code, err->message, err->field);
  }
  const auto &fields = up->fields();
  auto field = [&](const char *name) {
    auto it = fields.find(name);
    return it == fields.end() ? std::string() : it->second;
  };
  app::Metadata meta;
  meta.title = field("title");
  meta.description = field("description");
  meta.pipeline = field("pipeline");
  meta.encoder = field("encoder");
  meta.ladder = field("ladder");
  meta.priority = field("priority");
  meta.playback_policy = field("playback_policy");
  app::IncomingFile file;
  file.path = up->path();
  file.filename = up->filename();
  file.size = up->bytes();
  file.keep = [up](const std::string &dest) { up->keep(dest); };
  file.discard = [up] { up->discard(); };
  file.video_id = up->video_id(); // [storage]: the id its object was streamed under
  file.streamed = up->streamed();
  Context *c = &cx;
  cx.service.ingest(std::move(file), meta, later(cx, msg, [c, msg](app::Result<app::Ingested> result) {
                      if (auto *f = std::get_if<app::Failure>(&result))
                        return set_failure(msg, *f);
                      auto &in = std::get<app::Ingested>(result);
                      JsonObject *o = json_object_new();
                      json_object_set_member(o, "video", video_json(c->service, c->service.view(in.video)));
                      if (!in.jobs.empty())
                        json_object_set_member(o, "job", job_json(c->service, in.jobs.front()));
                      else
                        json_object_set_null_member(o, "job");
                      // The whole profile: the requested job first, then the extras (poster, storyboard, preview).
                      JsonArray *ja = json_array_new();
                      for (const auto &j : in.jobs)
                        json_array_add_element(ja, job_json(c->service, j));
                      json_object_set_array_member(o, "jobs", ja);
                      set_json(msg, SOUP_STATUS_CREATED, json::object_node(o));
                      soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                                                   (std::string(kApi) + "/videos/" + in.video.id).c_str());
                      c->idempotency.remember(msg);
                    }));
}

void create_job(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  if (!cx.service.accepting())
    return set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
  const std::string id = rq.params[0];
  const std::string *body = json_body(msg);
  const std::string text = body ? *body : "";
  g_autofree gchar *digest =
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(text.data()), text.size());
  const std::string scope = "POST " + std::string(kApi) + "/videos/" + id + "/jobs";
  // The video and the answer kept for the request's Idempotency-Key are read in one call.
  auto key = IdempotencyKeys::key_of(msg);
  Context *c = &cx;
  with_store(
      cx, msg,
      [find = find_video(id), scope, key](store::Store &s) {
        Found f = find(s);
        if (f.video && key)
          f.answer = IdempotencyKeys::lookup(s, scope, *key);
        return f;
      },
      [c, msg, id, scope, fingerprint = std::string(digest), text](Found &found) {
        if (!found.video)
          return set_not_found(msg, "no video " + id);
        // A retry of a request that created its job already gets that answer again.
        if (c->idempotency.begin(msg, scope, fingerprint, found.answer))
          return;
        app::JobRequest request = read_job_request(text);
        c->service.create_job(id, request, later(*c, msg, [c, msg](app::Result<store::Job> result) {
                                if (auto *f = std::get_if<app::Failure>(&result))
                                  return set_failure(msg, *f);
                                const auto &job = std::get<store::Job>(result);
                                set_json(msg, SOUP_STATUS_ACCEPTED, job_json(c->service, job));
                                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Location",
                                                             (std::string(kApi) + "/jobs/" + job.id).c_str());
                                c->idempotency.remember(msg);
                              }));
      });
}

// PATCH: what may change of a video (its playback policy).
void patch_video(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params[0];
  const std::string *body = json_body(msg);
  const std::string text = body ? *body : "";
  Context *c = &cx;
  with_store(cx, msg, video_row(id), [c, msg, id, text](std::optional<VideoRow> &row) {
    if (!row)
      return set_not_found(msg, "no video " + id);
    json::Node root = read_object(text, {"playback_policy"}, "playback_policy");
    if (!root.get())
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_json", "the request body must be a JSON object");
    JsonObject *o = json_node_get_object(root.get());
    if (!json_object_has_member(o, "playback_policy"))
      return set_json(msg, SOUP_STATUS_OK, video_json(c->service, c->service.view(row->first, std::move(row->second))));
    JsonNode *val = json_object_get_member(o, "playback_policy");
    if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_STRING)
      return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'playback_policy': expected a string",
                       "playback_policy");
    c->service.set_playback_policy(
        id, json_node_get_string(val), later(*c, msg, [c, msg](app::Result<app::VideoView> result) {
          if (auto *f = std::get_if<app::Failure>(&result))
            return set_failure(msg, *f);
          set_json(msg, SOUP_STATUS_OK, video_json(c->service, std::get<app::VideoView>(result)));
        }));
  });
}

// A playback token for a video's media: {"ttl": seconds} (default 3600) -> {"token", "expires"}.
void playback_token(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string id = rq.params[0];
  const std::string *body = json_body(msg);
  const std::string text = body ? *body : "";
  app::Service *service = &cx.service;
  with_store(cx, msg, find_video(id), [service, msg, id, text](Found &found) {
    if (!found.video)
      return set_not_found(msg, "no video " + id);
    json::Node root = read_object(text, {"ttl"}, "ttl");
    std::int64_t ttl = 3600;
    if (root.get()) {
      JsonObject *o = json_node_get_object(root.get());
      if (json_object_has_member(o, "ttl")) {
        JsonNode *val = json_object_get_member(o, "ttl");
        if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_INT64)
          return set_error(msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", "field 'ttl': expected an integer", "ttl");
        ttl = json_node_get_int(val);
      }
    }
    auto result = service->playback_token(id, ttl);
    if (auto *f = std::get_if<app::Failure>(&result))
      return set_failure(msg, *f);
    const auto &t = std::get<app::PlaybackToken>(result);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "token", t.token.c_str());
    json_object_set_string_member(o, "expires", jobs::iso_time(t.expires_s * G_USEC_PER_SEC).c_str());
    json_object_set_string_member(o, "query", ("token=" + t.token).c_str());
    set_json(msg, SOUP_STATUS_OK, json::object_node(o));
  });
}

} // namespace sluice::http::handlers
