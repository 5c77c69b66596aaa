// SPDX-License-Identifier: LGPL-2.1-or-later
// Validation of typed parameters. Nothing reaches a pipeline without passing through here.
#include "pipeline/params.h"

#include "core/error.h"
#include "core/json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace sluice::pipeline {

const char *param_type_name(ParamType t) {
  switch (t) {
  case ParamType::Integer: return "integer";
  case ParamType::Number: return "number";
  case ParamType::String: return "string";
  case ParamType::Boolean: return "boolean";
  case ParamType::Enum: return "enum";
  }
  return "string";
}

static ParamType parse_type(const std::string &name, const std::string &t) {
  if (t == "integer")
    return ParamType::Integer;
  if (t == "number")
    return ParamType::Number;
  if (t == "string")
    return ParamType::String;
  if (t == "boolean")
    return ParamType::Boolean;
  if (t == "enum")
    return ParamType::Enum;
  throw Error(ErrorCode::Invalid,
              "parameter '" + name + "': unknown type '" + t + "' (integer, number, string, boolean or enum)");
}

bool is_identifier(const std::string &s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!(g_ascii_islower(c) || g_ascii_isdigit(c) || c == '_'))
      return false;
  return true;
}

static bool is_enum_word(const std::string &s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!(g_ascii_isalnum(c) || c == '_' || c == '-' || c == '.'))
      return false;
  return true;
}

void check_safe_string(const std::string &what, const std::string &value) {
  if (value.size() > 4096)
    throw Error(ErrorCode::Invalid, what + " is too long (at most 4096 bytes)");
  if (!g_utf8_validate(value.data(), static_cast<gssize>(value.size()), nullptr))
    throw Error(ErrorCode::Invalid, what + " is not valid UTF-8");
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f)
      throw Error(ErrorCode::Invalid, what + " must not contain control characters (newline, tab...)");
    if (c == '"' || c == '\\' || c == '\'')
      throw Error(ErrorCode::Invalid, what + " must not contain quotes or backslashes");
  }
}

static std::string format_number(double v) {
  std::ostringstream ss;
  ss.imbue(std::locale::classic());
  ss.precision(15);
  ss << v;
  return ss.str();
}

std::string validate_value(const ParamSpec &spec, const std::string &raw) {
  const std::string who = "parameter '" + spec.name + "'";
  auto range = [&](double v) {
    if ((spec.min && v < *spec.min) || (spec.max && v > *spec.max)) {
      std::string msg = who + ": " + raw + " is out of range";
      if (spec.min && spec.max)
        msg += " (" + format_number(*spec.min) + " to " + format_number(*spec.max) + ")";
      else if (spec.min)
        msg += " (at least " + format_number(*spec.min) + ")";
      else
        msg += " (at most " + format_number(*spec.max) + ")";
      throw Error(ErrorCode::Invalid, msg);
    }
  };
  switch (spec.type) {
  case ParamType::Integer: {
    const char *s = raw.c_str();
    char *end = nullptr;
    errno = 0;
    long long v = g_ascii_strtoll(s, &end, 10);
    if (raw.empty() || errno != 0 || *end != '\0' || g_ascii_isspace(raw[0]))
      throw Error(ErrorCode::Invalid, who + " must be an integer, got '" + raw + "'");
    range(static_cast<double>(v));
    return std::to_string(v);
  }
  case ParamType::Number: {
    const char *s = raw.c_str();
    char *end = nullptr;
    errno = 0;
    double v = g_ascii_strtod(s, &end);
    if (raw.empty() || errno != 0 || *end != '\0' || !std::isfinite(v) || g_ascii_isspace(raw[0]))
      throw Error(ErrorCode::Invalid, who + " must be a number, got '" + raw + "'");
    range(v);
    return format_number(v);
  }
  case ParamType::Boolean:
    if (raw == "true" || raw == "1" || raw == "yes")
      return "true";
    if (raw == "false" || raw == "0" || raw == "no")
      return "false";
    throw Error(ErrorCode::Invalid, who + " must be true or false, got '" + raw + "'");
  case ParamType::Enum:
    for (const auto &v : spec.values)
      if (v == raw)
        return v;
    {
      std::string allowed;
      for (const auto &v : spec.values)
        allowed += (allowed.empty() ? "" : ", ") + v;
      throw Error(ErrorCode::Invalid, who + ": '" + raw + "' is not one of " + allowed);
    }
  case ParamType::String: check_safe_string(who, raw); return raw;
  }
  return raw;
}

ParamSpec parse_param_spec(const std::string &name, JsonObject *obj) {
  const std::string where = "parameter '" + name + "'";
  if (!is_identifier(name))
    throw Error(ErrorCode::Invalid, where + ": names use a-z, 0-9 and _");
  ParamSpec spec;
  spec.name = name;
  spec.type = parse_type(name, json::get_string(obj, "type", where));
  spec.description = json::opt_string(obj, "description", where).value_or("");
  spec.min = json::opt_number(obj, "min", where);
  spec.max = json::opt_number(obj, "max", where);
  // An integer's bounds are printed as integers (param_spec_to_json): whole numbers a double holds exactly.
  if (spec.type == ParamType::Integer)
    for (const auto &bound : {spec.min, spec.max})
      if (bound && (*bound != std::floor(*bound) || std::fabs(*bound) > 9007199254740992.0))
        throw Error(ErrorCode::Invalid, where + ": the bounds of an integer must be whole numbers of at most 2^53");
  if (spec.type == ParamType::Enum) {
    spec.values = json::string_list(obj, "values", where);
    if (spec.values.empty())
      throw Error(ErrorCode::Invalid, where + ": an enum needs 'values'");
    for (const auto &v : spec.values)
      if (!is_enum_word(v))
        throw Error(ErrorCode::Invalid, where + ": enum value '" + v + "' must use letters, digits, _ - .");
  }
  JsonNode *def = json_object_get_member(obj, "default");
  if (!def || !JSON_NODE_HOLDS_VALUE(def))
    throw Error(ErrorCode::Invalid, where + ": missing 'default'");
  std::string raw;
  switch (json_node_get_value_type(def)) {
  case G_TYPE_STRING: raw = json_node_get_string(def); break;
  case G_TYPE_BOOLEAN: raw = json_node_get_boolean(def) ? "true" : "false"; break;
  case G_TYPE_INT64: raw = std::to_string(json_node_get_int(def)); break;
  case G_TYPE_DOUBLE: raw = format_number(json_node_get_double(def)); break;
  default: throw Error(ErrorCode::Invalid, where + ": bad 'default'");
  }
  try {
    spec.default_value = validate_value(spec, raw);
  } catch (const Error &e) {
    throw Error(ErrorCode::Invalid, std::string("default of ") + e.what());
  }
  return spec;
}

Values resolve(const std::vector<ParamSpec> &specs, const std::map<std::string, std::string> &user) {
  Values out;
  for (const auto &[k, v] : user) {
    const ParamSpec *spec = nullptr;
    for (const auto &s : specs)
      if (s.name == k)
        spec = &s;
    if (!spec) {
      std::string known;
      for (const auto &s : specs)
        known += (known.empty() ? "" : ", ") + s.name;
      check_safe_string("parameter name", k);
      throw Error(ErrorCode::Invalid, "unknown parameter '" + k + "' (known: " + known + ")");
    }
    out[k] = validate_value(*spec, v);
  }
  for (const auto &s : specs)
    if (!out.count(s.name))
      out[s.name] = s.default_value;
  return out;
}

std::pair<std::string, std::string> split_assignment(const std::string &arg) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(ErrorCode::Invalid, "expected key=value, got '" + arg + "'");
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

JsonNode *param_spec_to_json(const ParamSpec &spec) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "name");
  json_builder_add_string_value(b, spec.name.c_str());
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, param_type_name(spec.type));
  json_builder_set_member_name(b, "description");
  json_builder_add_string_value(b, spec.description.c_str());
  json_builder_set_member_name(b, "default");
  switch (spec.type) {
  case ParamType::Integer:
    json_builder_add_int_value(b, g_ascii_strtoll(spec.default_value.c_str(), nullptr, 10));
    break;
  case ParamType::Number: json_builder_add_double_value(b, g_ascii_strtod(spec.default_value.c_str(), nullptr)); break;
  case ParamType::Boolean: json_builder_add_boolean_value(b, spec.default_value == "true"); break;
  default: json_builder_add_string_value(b, spec.default_value.c_str()); break;
  }
  // Bounds of an integer parameter are integers in JSON too (1, not 1.0).
  auto add_bound = [&](const char *name, const std::optional<double> &v) {
    if (!v)
      return;
    json_builder_set_member_name(b, name);
    if (spec.type == ParamType::Integer)
      json_builder_add_int_value(b, static_cast<gint64>(*v));
    else
      json_builder_add_double_value(b, *v);
  };
  add_bound("min", spec.min);
  add_bound("max", spec.max);
  if (spec.type == ParamType::Enum) {
    json_builder_set_member_name(b, "values");
    json_builder_begin_array(b);
    for (const auto &v : spec.values)
      json_builder_add_string_value(b, v.c_str());
    json_builder_end_array(b);
  }
  json_builder_end_object(b);
  return json_builder_get_root(b);
}

int int_value(const Values &values, const std::string &name, int fallback) {
  auto it = values.find(name);
  return it == values.end() ? fallback : std::atoi(it->second.c_str());
}

std::string rate_control_of(const Values &values) {
  auto it = values.find("rate_control");
  return it == values.end() ? "cbr" : it->second;
}

} // namespace sluice::pipeline
