// SPDX-License-Identifier: LGPL-2.1-or-later
// json-glib helpers with errors that name what was being read.
#include "core/json.h"

#include "core/error.h"

namespace sluice::json {

Node parse(const std::string &text, const std::string &what) {
  g_autoptr(JsonParser) parser = json_parser_new();
  GError *err = nullptr;
  if (!json_parser_load_from_data(parser, text.data(), static_cast<gssize>(text.size()), &err))
    throw Error::from_gerror(ErrorCode::Invalid, what + " is not valid JSON", err);
  JsonNode *root = json_parser_get_root(parser);
  if (!root)
    throw Error(ErrorCode::Invalid, what + " is empty");
  return Node(json_node_copy(root));
}

Node parse_file(const std::string &path) {
  gchar *contents = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &contents, &len, &err))
    throw Error::from_gerror(ErrorCode::NotFound, "cannot read " + path, err);
  std::string text(contents, len);
  g_free(contents);
  return parse(text, path);
}

JsonObject *require_object(JsonNode *node, const std::string &where) {
  if (!node || !JSON_NODE_HOLDS_OBJECT(node))
    throw Error(ErrorCode::Invalid, where + " must be a JSON object");
  return json_node_get_object(node);
}

std::optional<std::string> opt_string(JsonObject *obj, const char *member, const std::string &where) {
  JsonNode *n = json_object_get_member(obj, member);
  if (!n || JSON_NODE_HOLDS_NULL(n))
    return std::nullopt;
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    throw Error(ErrorCode::Invalid, where + ": '" + member + "' must be a string");
  return std::string(json_node_get_string(n));
}

std::string get_string(JsonObject *obj, const char *member, const std::string &where) {
  auto v = opt_string(obj, member, where);
  if (!v)
    throw Error(ErrorCode::Invalid, where + ": missing '" + member + "'");
  return *v;
}

std::optional<double> opt_number(JsonObject *obj, const char *member, const std::string &where) {
  JsonNode *n = json_object_get_member(obj, member);
  if (!n || JSON_NODE_HOLDS_NULL(n))
    return std::nullopt;
  if (JSON_NODE_HOLDS_VALUE(n)) {
    GType t = json_node_get_value_type(n);
    if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE)
      return json_node_get_double(n);
  }
  throw Error(ErrorCode::Invalid, where + ": '" + member + "' must be a number");
}

std::vector<std::string> string_list(JsonObject *obj, const char *member, const std::string &where) {
  std::vector<std::string> out;
  JsonNode *n = json_object_get_member(obj, member);
  if (!n || JSON_NODE_HOLDS_NULL(n))
    return out;
  if (!JSON_NODE_HOLDS_ARRAY(n))
    throw Error(ErrorCode::Invalid, where + ": '" + member + "' must be an array of strings");
  JsonArray *arr = json_node_get_array(n);
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonNode *e = json_array_get_element(arr, i);
    if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
      throw Error(ErrorCode::Invalid, where + ": '" + member + "' must be an array of strings");
    out.emplace_back(json_node_get_string(e));
  }
  return out;
}

std::string to_string(JsonNode *node, bool pretty) {
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, node);
  json_generator_set_pretty(gen, pretty);
  json_generator_set_indent(gen, 2);
  gchar *s = json_generator_to_data(gen, nullptr);
  std::string out(s);
  g_free(s);
  return out;
}

std::string quote(const std::string &text) {
  JsonNode *n = json_node_new(JSON_NODE_VALUE);
  json_node_set_string(n, text.c_str());
  std::string out = to_string(n, false);
  json_node_unref(n);
  return out;
}

JsonNode *object_node(JsonObject *o) {
  JsonNode *n = json_node_init_object(json_node_alloc(), o);
  json_object_unref(o);
  return n;
}

} // namespace sluice::json
