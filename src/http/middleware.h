// SPDX-License-Identifier: LGPL-2.1-or-later
// The one chain every request passes through once its headers are in, before its body is read.
#pragma once

#include "core/json.h"
#include "http/context.h"
#include "http/routes.h"

namespace sluice::http {

// In this order: request id, access log, CORS, the cross-site checks (Host, Origin), then the body's
// set-up for the route (an upload streamed to disk, or a small JSON body). Authentication, rate limits
// and metrics take their places after CORS as they come. Returns true when a step answered msg.
bool run_middleware(Context &cx, SoupServerMessage *msg, const std::string &path);

// The chain of the metrics address ([metrics] listen): the same steps but authentication (that address serves
// GET /metrics alone, without credentials), with every path but /metrics unmatched.
bool run_metrics_middleware(Context &cx, SoupServerMessage *msg, const std::string &path);

// The request id of msg (set by the chain).
std::string request_id(SoupServerMessage *msg);
// A request's id: the client's X-Request-Id (`asked`, may be null) when it is a sane token, else 16 random hex digits.
void make_request_id(const char *asked, char (&id)[65]);
// Whether the request's Host is one this server answers to (the chain's cross-site step answers 403 otherwise).
bool host_allowed(const ServerConfig &config, SoupMessageHeaders *request);

// The small JSON body the chain collected for msg: nullptr when there is none; throws UploadError
// (413) when it was larger than the limit.
const std::string *json_body(SoupServerMessage *msg);

// A JSON object body read within limits: json-glib never sees a deeper or bigger document (it recurses once per
// level), a NUL inside a string or an integer it would wrap. Throws UploadError (400 invalid_json, 422 for an
// integer out of range).
json::Node read_json_object(const std::string &text, const json::Limits &limits);

// CORS headers for msg's Origin, if it is allowed.
void apply_cors(const ServerConfig &config, SoupServerMessage *msg);

} // namespace sluice::http
