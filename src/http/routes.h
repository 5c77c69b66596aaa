// SPDX-License-Identifier: LGPL-2.1-or-later
// The route table: method + path pattern -> handler; 404, 405 and Allow come from it.
#pragma once

#include "http/context.h"

#include <string>
#include <vector>

namespace sluice::http {

using Handler = void (*)(Context &, Request &);

// What a route reads of a request body, set up before the body arrives.
enum class Body {
  Json,   // a small JSON body at most (1 MiB, Content-Type: application/json)
  Upload, // a file, streamed to disk
  Tus,    // a resumable upload's bytes (tus), streamed into it (http/tus.h)
};

// What a caller must be allowed to do for a route (the access issue's scopes; `admin` implies every
// other). Open routes need no credential.
enum class Scope { Open, Read, Upload, Admin, Metrics };

// The rate-limit budget a route draws on ([limits]; an upload also counts its bytes as they arrive).
// UploadBytes: the bytes of an upload's body only (a resumable upload's PATCH, which does not start one).
enum class Limit { None, Api, Upload, UploadBytes, Media };

struct Route {
  const char *method;  // GET routes also answer HEAD
  const char *pattern; // "/api/v1/videos/{id}/jobs"; a final "*" takes the rest of the path
  Handler handler;
  Scope scope;
  Body body = Body::Json;
  Limit limit = Limit::Api;
};

const std::vector<Route> &routes();

struct Match {
  const Route *route = nullptr; // nullptr: no route for this method
  std::vector<std::string> params;
  std::string allow; // the methods of the path's routes ("" when no pattern matches the path)
};
Match match_route(const std::string &method, const std::string &path);

namespace handlers {
void health(Context &, Request &);
void pipelines(Context &, Request &);
void encoders(Context &, Request &);
void workers(Context &, Request &);
void stats(Context &, Request &);
void metrics(Context &, Request &);
void web(Context &, Request &);
void media(Context &, Request &);
// media()'s answer, made without a message, to a GET or HEAD (head) of the file `rest` of an open video's finished
// package in the data folder (the fast path, http/fast.cpp): the status, headers on response, and the body in out.
// False, with response and out untouched or to be dropped, for anything else (media() then answers it).
bool media_fast(Context &cx, const std::string &video_id, const std::string &rest, const std::string &pinned, bool head,
                SoupMessageHeaders *request, SoupMessageHeaders *response, FileAnswer &out);
// The same for live_media(): a file of a live stream this process runs.
bool live_media_fast(Context &cx, const std::string &id, const std::string &rest, bool head,
                     SoupMessageHeaders *request, SoupMessageHeaders *response, FileAnswer &out);
void events(Context &, Request &);
void list_videos(Context &, Request &);
void upload(Context &, Request &);
void get_video(Context &, Request &);
void delete_video(Context &, Request &);
void patch_video(Context &, Request &);
void playback_token(Context &, Request &);
void video_jobs(Context &, Request &);
void create_job(Context &, Request &);
void list_jobs(Context &, Request &);
void get_job(Context &, Request &);
void cancel_job(Context &, Request &);
void create_upload(Context &, Request &);
void get_upload(Context &, Request &);
void patch_upload(Context &, Request &);
void delete_upload(Context &, Request &);
void create_direct_upload(Context &, Request &);
void create_stream(Context &, Request &);
void list_streams(Context &, Request &);
void get_stream(Context &, Request &);
void delete_stream(Context &, Request &);
void live_media(Context &, Request &);
void list_webhooks(Context &, Request &);
void create_webhook(Context &, Request &);
void get_webhook(Context &, Request &);
void delete_webhook(Context &, Request &);
void rotate_webhook_secret(Context &, Request &);
void webhook_deliveries(Context &, Request &);
} // namespace handlers

} // namespace sluice::http
