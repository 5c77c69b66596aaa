// SPDX-License-Identifier: LGPL-2.1-or-later
// Answers: JSON bodies, JSON errors (every error is JSON), and small readers of a request.
#pragma once

#include "app/service.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <string>

namespace sluice::http {

// Sets status and a JSON body (takes node); Cache-Control: no-store.
void set_json(SoupServerMessage *msg, guint status, JsonNode *node);
// {"error": {"code", "message", "field"?}}
void set_error(SoupServerMessage *msg, guint status, const std::string &code, const std::string &message,
               const std::string &field = "");
void set_not_found(SoupServerMessage *msg, const std::string &what);
void set_method_not_allowed(SoupServerMessage *msg, const std::string &allow);
// A refusal or failure of the service, in HTTP's terms.
void set_failure(SoupServerMessage *msg, const app::Failure &f);

// 204 No Content, on a connection that stays open for the next request (libsoup 3.2 closed it after a 204).
void set_no_content(SoupServerMessage *msg);

bool is_method(SoupServerMessage *msg, const char *method);
bool is_write_method(SoupServerMessage *msg); // POST, PUT, PATCH, DELETE
std::string header(SoupServerMessage *msg, const char *name);
std::string query_value(GHashTable *query, const char *name);

} // namespace sluice::http
