// SPDX-License-Identifier: LGPL-2.1-or-later
// An upload's state over tus: HEAD and GET (its offset, length, metadata and expiry; a HEAD takes over an upload
// another process holds) and DELETE (termination).
#include "http/tus.h"

#include "http/tus_internal.h"

#include "app/uploads.h"
#include "core/json.h"
#include "http/respond.h"

#include <optional>
#include <string>

namespace sluice::http {

using namespace tus_detail;

namespace handlers {

namespace {

// HEAD and GET of an upload, with its row.
void answer_upload(SoupServerMessage *msg, bool head, const store::ResumableUpload &u) {
  upload_headers(msg, u);
  SoupMessageHeaders *h = out_headers(msg);
  if (head) {
    if (u.length >= 0)
      soup_message_headers_replace(h, "Upload-Length", std::to_string(u.length).c_str());
    else
      soup_message_headers_replace(h, "Upload-Defer-Length", "1");
    if (!u.metadata.empty())
      soup_message_headers_replace(h, "Upload-Metadata", u.metadata.c_str());
    if (u.concat == "partial") {
      soup_message_headers_replace(h, "Upload-Concat", "partial");
    } else if (!u.concat.empty()) {
      std::string v = "final;";
      g_auto(GStrv) ids = g_strsplit(u.concat.c_str() + 5, " ", -1);
      for (int i = 0; ids[i]; ++i)
        if (*ids[i])
          v += (v.back() == ';' ? "" : " ") + kUploads + "/" + ids[i];
      soup_message_headers_replace(h, "Upload-Concat", v.c_str());
    }
    soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
    return;
  }
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", u.id.c_str());
  json_object_set_int_member(o, "offset", u.offset);
  if (u.length >= 0)
    json_object_set_int_member(o, "length", u.length);
  else
    json_object_set_null_member(o, "length");
  json_object_set_string_member(o, "state", u.state.c_str());
  if (u.state == "completed" && !u.video_id.empty())
    json_object_set_string_member(o, "video_id", u.video_id.c_str());
  else
    json_object_set_null_member(o, "video_id");
  if (u.state == "failed") {
    JsonObject *e = json_object_new();
    json_object_set_string_member(e, "code", u.error_code.c_str());
    json_object_set_string_member(e, "message", u.error.c_str());
    json_object_set_object_member(o, "error", e);
  }
  json_object_set_boolean_member(o, "partial", u.concat == "partial");
  json_object_set_boolean_member(o, "final", g_str_has_prefix(u.concat.c_str(), "final"));
  JsonObject *meta = json_object_new();
  if (auto keys = app::parse_tus_metadata(u.metadata))
    for (const auto &[k, v] : *keys)
      json_object_set_string_member(meta, k.c_str(), v.c_str());
  json_object_set_object_member(o, "metadata", meta);
  json_object_set_string_member(o, "created", jobs::iso_time(u.created).c_str());
  json_object_set_string_member(o, "expires", jobs::iso_time(u.expires).c_str());
  set_json(msg, SOUP_STATUS_OK, json::object_node(o));
  upload_headers(msg, u);
}

} // namespace

void get_upload(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const bool head = rq.method == "HEAD";
  soup_message_headers_replace(out_headers(msg), "Tus-Resumable", kTusVersion);
  if (head && !check_version(msg))
    return;
  // Every offset a row holds is on disk (a PATCH syncs before it records): what a HEAD reports is kept.
  const std::string id = rq.params.at(0);
  const std::string token = pending_token(msg);
  app::Uploads *uploads = &cx.service.uploads();
  // A HEAD is how a tus client resumes: with a bucket, it takes over an upload another process holds.
  auto read = read_for(token, id, head ? uploads : nullptr, std::nullopt, header(msg, "Origin"));
  on_catalog(cx, msg, std::move(read), [msg, head, token, id, uploads](store::Outcome<Read> &o) {
    if (!o.ok())
      return set_failure(msg, app::failure_of(*o.error));
    if (!token.empty() && !admit_direct(msg, id, o.value->direct))
      return;
    auto r = uploads->found(id, o.value->upload);
    if (auto *f = std::get_if<app::Failure>(&r))
      return set_failure(msg, *f);
    answer_upload(msg, head, std::get<store::ResumableUpload>(r));
  });
}

void delete_upload(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  soup_message_headers_replace(out_headers(msg), "Tus-Resumable", kTusVersion);
  if (!check_version(msg))
    return;
  const std::string id = rq.params.at(0);
  const std::string token = pending_token(msg);
  Context *c = &cx;
  auto terminate = [c, msg, id] {
    c->service.uploads().terminate(
        id, answer_on<std::optional<app::Failure>>(*c, msg, catalog_waits(*c), [msg](std::optional<app::Failure> f) {
          if (f)
            return set_failure(msg, *f);
          set_no_content(msg);
        }));
  };
  if (token.empty())
    return terminate();
  on_catalog(cx, msg, read_for(token, ""), [msg, id, token, terminate](store::Outcome<Read> &o) {
    if (!o.ok())
      return set_failure(msg, app::failure_of(*o.error));
    if (admit_direct(msg, id, o.value->direct))
      terminate();
  });
}

} // namespace handlers

} // namespace sluice::http
