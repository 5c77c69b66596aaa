// SPDX-License-Identifier: LGPL-2.1-or-later
// json-glib helpers with errors that name what was being read.
#include "core/json.h"

#include "core/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace sluice::json {

std::optional<LimitViolation> check_limits(const std::string &text, const Limits &limits) {
  using Kind = LimitViolation::Kind;
  const std::size_t n = text.size();
  int depth = 0;
  std::size_t values = 0;
  std::string last_string, member; // the member whose value is being read
  auto count_value = [&](std::size_t at) -> std::optional<LimitViolation> {
    if (++values > limits.max_values)
      return LimitViolation{Kind::TooManyValues, at, "more than " + std::to_string(limits.max_values) + " values"};
    return std::nullopt;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '"') {
      if (auto v = count_value(i))
        return v;
      const std::size_t open = i;
      for (++i; i < n && text[i] != '"'; ++i) {
        if (text[i] == '\\') {
          ++i;
          // \u0000 decodes to a NUL, where json-glib's C strings would silently cut the value.
          if (i + 4 < n && text[i] == 'u' && text.compare(i + 1, 4, "0000") == 0)
            return LimitViolation{Kind::NulInString, i - 1, "a string holds a NUL character (\\u0000)"};
        } else if (text[i] == '\0') {
          return LimitViolation{Kind::NulInString, i, "a string holds a NUL character"};
        }
      }
      last_string = text.substr(open + 1, std::min(i, n) - open - 1);
    } else if (c == ':') {
      member = last_string;
    } else if (c == '/' || c == '\'') {
      // json-glib also reads C comments and single-quoted strings, where a '"' would hide from this
      // scan what comes next (nesting included): not JSON, refused.
      return LimitViolation{Kind::NotJson, i, "comments and single-quoted strings are not JSON"};
    } else if (c == '[' || c == '{') {
      if (auto v = count_value(i))
        return v;
      if (++depth > limits.max_depth)
        return LimitViolation{Kind::TooDeep, i, "nested deeper than " + std::to_string(limits.max_depth) + " levels"};
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == '-' || g_ascii_isdigit(c)) {
      if (auto v = count_value(i))
        return v;
      const std::size_t start = i;
      std::size_t j = i + (c == '-' ? 1 : 0);
      const std::size_t digits = j;
      while (j < n && g_ascii_isdigit(text[j]))
        ++j;
      const bool integer = j >= n || (text[j] != '.' && text[j] != 'e' && text[j] != 'E');
      if (integer && j > digits) {
        std::string literal = text.substr(start, j - start);
        errno = 0;
        (void)std::strtoll(literal.c_str(), nullptr, 10);
        if (errno == ERANGE)
          return LimitViolation{Kind::IntegerRange, start,
                                "the integer " + (literal.size() > 40 ? literal.substr(0, 40) + "..." : literal) +
                                    " is outside the 64-bit range",
                                member};
      }
      while (j < n && (g_ascii_isdigit(text[j]) || text[j] == '.' || text[j] == 'e' || text[j] == 'E' ||
                       text[j] == '+' || text[j] == '-'))
        ++j;
      i = j - 1;
    } else if (c == 't' || c == 'f' || c == 'n') {
      if (auto v = count_value(i))
        return v;
      while (i + 1 < n && g_ascii_isalpha(text[i + 1]))
        ++i;
    }
  }
  return std::nullopt;
}

Node parse(const std::string &text, const std::string &what, const Limits &limits) {
  if (auto v = check_limits(text, limits))
    throw Error(ErrorCode::Invalid, what + " is refused at byte " + std::to_string(v->offset) + ": " + v->message);
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

std::string scalar_text(JsonNode *n) {
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_STRING)
    return json_node_get_string(n);
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean(n) ? "true" : "false";
  if (t == G_TYPE_INT64)
    return std::to_string(json_node_get_int(n));
  double d = json_node_get_double(n);
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15)
    return std::to_string(static_cast<long long>(d));
  g_autofree gchar *s = g_strdup_printf("%.17g", d);
  return s;
}

} // namespace sluice::json
