// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: JSON request bodies. json::check_limits with the limits of a job request (8 levels, 1,000
// values), then json::parse, as the server does before it reads the fields; then the default limits of the
// files sluice reads. What json-glib builds must stay inside the limits that check_limits let through (json-glib
// recurses once per level: a document deeper than checked can overflow the stack), and what sluice writes of
// it must read back.
#include "core/error.h"
#include "core/json.h"

#include "fuzz.h"

#include <cmath>
#include <cstdint>
#include <string>

namespace {

using sluice::Error;
namespace json = sluice::json;

struct Size {
  int depth = 0;          // nesting of arrays and objects (a top-level container is 1)
  std::size_t values = 0; // every node
  bool utf8 = true;       // every string and member name is valid UTF-8
  bool finite = true;     // every number is one json-glib writes as JSON
};

bool valid_utf8(const char *s) {
  return g_utf8_validate(s, -1, nullptr);
}

void measure(JsonNode *n, int depth, Size &s) {
  s.values++;
  if (JSON_NODE_HOLDS_ARRAY(n)) {
    s.depth = std::max(s.depth, depth + 1);
    JsonArray *a = json_node_get_array(n);
    for (guint i = 0; i < json_array_get_length(a); ++i)
      measure(json_array_get_element(a, i), depth + 1, s);
  } else if (JSON_NODE_HOLDS_OBJECT(n)) {
    s.depth = std::max(s.depth, depth + 1);
    JsonObject *o = json_node_get_object(n);
    GList *members = json_object_get_members(o);
    for (GList *m = members; m; m = m->next) {
      s.utf8 = s.utf8 && valid_utf8(static_cast<const char *>(m->data));
      measure(json_object_get_member(o, static_cast<const char *>(m->data)), depth + 1, s);
    }
    g_list_free(members);
  } else if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING) {
    s.utf8 = s.utf8 && valid_utf8(json_node_get_string(n));
  } else if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_DOUBLE) {
    // json-glib 1.6 writes a double as "%.17g" and appends ".0" when that has no point: 1e17 and 1e-99 become
    // "1e+17.0" and "1e-99.0", which are not JSON; and inf as "inf".
    double d = json_node_get_double(n);
    char text[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_formatd(text, sizeof text, "%.17g", d);
    const std::string written = text;
    s.finite = s.finite && std::isfinite(d) &&
               (written.find('e') == std::string::npos || written.find('.') != std::string::npos);
  }
}

void check(const std::string &text, const json::Limits &limits) {
  auto violation = json::check_limits(text, limits);
  if (violation) {
    FUZZ_CHECK(violation->offset < text.size(), "a violation past the end of the text");
    FUZZ_CHECK(!violation->message.empty(), "a violation without a message");
    return;
  }
  json::Node root;
  try {
    root = json::parse(text, "the request body", limits);
  } catch (const Error &) {
    return;
  }
  FUZZ_CHECK(root, "parse() returned nothing");
  Size s;
  measure(root.get(), 0, s);
  FUZZ_CHECK(s.depth <= limits.max_depth, "json-glib built " + std::to_string(s.depth) +
                                              " levels after check_limits allowed at most " +
                                              std::to_string(limits.max_depth));
  FUZZ_CHECK(s.values <= limits.max_values, "json-glib built " + std::to_string(s.values) + " values");
  // json-glib turns a malformed \u escape ("\ud83\d") into bytes that are not UTF-8 and 1e999 into inf, and
  // then cannot read what it writes of them ("inf", "1e+17.0"): the fields that reach a pipeline are validated
  // after this.
  if (!s.utf8 || !s.finite)
    return;
  std::string written = json::to_string(root.get(), false);
  try {
    json::Node again = json::parse(written, "written");
  } catch (const Error &e) {
    FUZZ_CHECK(false, "what sluice writes does not read back: " + std::string(e.what()));
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string text = sluice::fuzz::text_of(data, size);
  json::Limits request;
  request.max_depth = 8;
  request.max_values = 1000;
  check(text, request);
  check(text, json::Limits{});
  return 0;
}
