// SPDX-License-Identifier: LGPL-2.1-or-later
// Typed pipeline parameters: their schema, and validation of user-supplied values against it.
#pragma once

#include <json-glib/json-glib.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sluice::pipeline {

enum class ParamType { Integer, Number, String, Boolean, Enum };
const char *param_type_name(ParamType t);

struct ParamSpec {
  std::string name;
  std::string description;
  ParamType type = ParamType::String;
  std::string default_value; // canonical text
  std::optional<double> min, max;
  std::vector<std::string> values; // enum only
};

// Canonical, validated values by parameter name: safe to substitute into a description.
using Values = std::map<std::string, std::string>;

// Reads one parameter schema (`where` names it in errors); validates its own default.
ParamSpec parse_param_spec(const std::string &name, JsonObject *obj);

// Validates one raw value; returns its canonical text or throws sluice::Error naming the parameter.
std::string validate_value(const ParamSpec &spec, const std::string &raw);

// Checks that a free-form string can be substituted inside a double-quoted gst-launch value:
// no quotes, backslashes or control characters. Throws naming `what`.
void check_safe_string(const std::string &what, const std::string &value);

// Identifier check for names that appear outside quotes ([a-z0-9_], starting with a letter or digit).
bool is_identifier(const std::string &s);

// Applies defaults and validates user values; unknown names are errors.
Values resolve(const std::vector<ParamSpec> &specs, const std::map<std::string, std::string> &user);

// A resolved integer parameter, or `fallback` when the description has no such parameter.
int int_value(const Values &values, const std::string &name, int fallback);
// The rate control the values ask for (`rate_control`; "cbr" when the description has no such parameter).
std::string rate_control_of(const Values &values);

// Parses "key=value" into its parts; throws on a missing '='.
std::pair<std::string, std::string> split_assignment(const std::string &arg);

JsonNode *param_spec_to_json(const ParamSpec &spec);

} // namespace sluice::pipeline
