// SPDX-License-Identifier: LGPL-2.1-or-later
// Thin helpers over json-glib: parsing with located errors, typed member access, serialisation.
#pragma once

#include <json-glib/json-glib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::json {

// Owning JsonNode.
struct NodeDeleter {
  void operator()(JsonNode *n) const {
    if (n)
      json_node_unref(n);
  }
};
using Node = std::unique_ptr<JsonNode, NodeDeleter>;

// Parse text / a file; throws sluice::Error naming `what` and the parser's position.
Node parse(const std::string &text, const std::string &what);
Node parse_file(const std::string &path);

// Member access on an object; `where` names the object in error messages (e.g. "parameter 'gop'").
JsonObject *require_object(JsonNode *node, const std::string &where);
std::string get_string(JsonObject *obj, const char *member, const std::string &where);
std::optional<std::string> opt_string(JsonObject *obj, const char *member, const std::string &where);
std::optional<double> opt_number(JsonObject *obj, const char *member, const std::string &where);
std::vector<std::string> string_list(JsonObject *obj, const char *member, const std::string &where);

std::string to_string(JsonNode *node, bool pretty);
// A node holding o; takes over the caller's reference to o.
JsonNode *object_node(JsonObject *o);
// JSON string literal (with quotes) for text.
std::string quote(const std::string &text);

} // namespace sluice::json
