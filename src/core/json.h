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

// Bounds on a JSON document, checked before json-glib parses it: json-glib recurses once per nesting
// level (80,000 levels overflow the stack) and keeps every value. The defaults suit the files sluice
// reads (descriptions, stored probes and results); request bodies pass tighter ones.
struct Limits {
  int max_depth = 64;
  std::size_t max_values = 1000000;
};

// What check_limits found wrong with a document, at byte `offset`.
struct LimitViolation {
  enum class Kind { TooDeep, TooManyValues, NulInString, IntegerRange, NotJson };
  Kind kind;
  std::size_t offset;
  std::string message;
  std::string member = {}; // for IntegerRange: the object member the number is the value of, if any
};

// One pass over text, without building anything: nesting deeper than max_depth, more values than
// max_values, a NUL character inside a string (json-glib would cut the string there), an integer
// outside the 64-bit range (json-glib would wrap it), and comments or single-quoted strings (json-glib
// reads them; they could hide the rest from this scan). Other text that is not JSON passes: the parser
// says why.
std::optional<LimitViolation> check_limits(const std::string &text, const Limits &limits = {});

// Parse text / a file behind check_limits(); throws sluice::Error (Invalid) naming `what` and the
// parser's position or the violated limit.
Node parse(const std::string &text, const std::string &what, const Limits &limits = {});
Node parse_file(const std::string &path);

// Member access on an object; `where` names the object in error messages (e.g. "parameter 'gop'").
JsonObject *require_object(JsonNode *node, const std::string &where);
std::string get_string(JsonObject *obj, const char *member, const std::string &where);
std::optional<std::string> opt_string(JsonObject *obj, const char *member, const std::string &where);
std::optional<double> opt_number(JsonObject *obj, const char *member, const std::string &where);
std::vector<std::string> string_list(JsonObject *obj, const char *member, const std::string &where);

std::string to_string(JsonNode *node, bool pretty);
// A scalar's text: a string as it is, true/false, an integer in decimal, another number with 17 digits (an
// integral one below 1e15 without a fraction).
std::string scalar_text(JsonNode *value);
// A node holding o; takes over the caller's reference to o.
JsonNode *object_node(JsonObject *o);
// JSON string literal (with quotes) for text.
std::string quote(const std::string &text);

} // namespace sluice::json
