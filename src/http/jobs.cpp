// SPDX-License-Identifier: LGPL-2.1-or-later
// The job resource: listing, one job, and cancels.
#include "core/json.h"
#include "http/respond.h"
#include "http/routes.h"
#include "http/store_call.h"
#include "http/views.h"

namespace sluice::http::handlers {

void list_jobs(Context &cx, Request &rq) {
  store::JobFilter f;
  std::string state = query_value(rq.query, "state");
  if (!state.empty()) {
    f.state = store::parse_job_state(state);
    if (!f.state)
      return set_error(rq.msg, SOUP_STATUS_BAD_REQUEST, "invalid_field",
                       "state: expected queued, running, succeeded, failed or canceled", "state");
  }
  f.video_id = query_value(rq.query, "video");
  if (!f.video_id.empty() && !store::is_id(f.video_id))
    return set_error(rq.msg, SOUP_STATUS_BAD_REQUEST, "invalid_field", "video: expected a video id", "video");
  SoupServerMessage *msg = rq.msg;
  app::Service *service = &cx.service;
  with_store(
      cx, msg, [f](store::Store &s) { return s.jobs(f); },
      [msg, service](std::vector<store::Job> &jobs) { set_json(msg, SOUP_STATUS_OK, jobs_json(*service, jobs)); });
}

void get_job(Context &cx, Request &rq) {
  const std::string &id = rq.params[0];
  if (!store::is_id(id))
    return set_not_found(rq.msg, "no job " + id);
  SoupServerMessage *msg = rq.msg;
  app::Service *service = &cx.service;
  with_store(
      cx, msg, [id](store::Store &s) { return s.job(id); },
      [msg, service, id](std::optional<store::Job> &job) {
        if (!job)
          return set_not_found(msg, "no job " + id);
        set_json(msg, SOUP_STATUS_OK, job_json(*service, *job));
      });
}

void cancel_job(Context &cx, Request &rq) {
  const std::string &id = rq.params[0];
  if (!store::is_id(id))
    return set_not_found(rq.msg, "no job " + id);
  SoupServerMessage *msg = rq.msg;
  // A running job stops asynchronously: the answer waits until it has (a queued one's: until its cancel is written).
  app::Service *service = &cx.service;
  cx.service.cancel_job(id, later(cx, msg, [msg, service](app::Result<store::Job> result) {
                          if (auto *f = std::get_if<app::Failure>(&result))
                            set_failure(msg, *f);
                          else
                            set_json(msg, SOUP_STATUS_OK, job_json(*service, std::get<store::Job>(result)));
                        }));
}

} // namespace sluice::http::handlers
