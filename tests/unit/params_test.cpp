// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of typed pipeline parameters: schemas, validation, canonical values and hostile strings.

#include "core/error.h"
#include "core/json.h"
#include "pipeline/params.h"

#include <gtest/gtest.h>

#include "check.h"

#include <map>
#include <string>
#include <vector>

namespace {

using sluice::Error;
using sluice::ErrorCode;
using sluice::test::expect_error;
using sluice::test::contains;
using namespace sluice::pipeline;

// Builds a ParamSpec from a JSON object text, the way pipeline descriptions declare them.
ParamSpec spec_from(const std::string &name, const std::string &json_text) {
  auto root = sluice::json::parse(json_text, "test schema");
  return parse_param_spec(name, sluice::json::require_object(root.get(), "test schema"));
}

ParamSpec integer_spec() {
  return spec_from("segment_seconds", R"({"type": "integer", "default": 4, "min": 1, "max": 20})");
}
ParamSpec number_spec() {
  return spec_from("gain", R"({"type": "number", "default": 1.5, "min": 0, "max": 10})");
}
ParamSpec string_spec() {
  return spec_from("title", R"({"type": "string", "default": "untitled"})");
}
ParamSpec boolean_spec() {
  return spec_from("deinterlace", R"({"type": "boolean", "default": false})");
}
ParamSpec enum_spec() {
  return spec_from("scaler",
                   R"({"type": "enum", "default": "bilinear", "values": ["nearest", "bilinear", "4-tap", "lanczos"]})");
}

// ---------------------------------------------------------------------------------------------
// parse_param_spec: the schema itself

TEST(ParamSpecTest, ReadsEveryType) {
  ParamSpec i = integer_spec();
  EXPECT_EQ(i.name, "segment_seconds");
  EXPECT_EQ(i.type, ParamType::Integer);
  EXPECT_EQ(i.default_value, "4");
  ASSERT_TRUE(i.min.has_value());
  ASSERT_TRUE(i.max.has_value());
  EXPECT_DOUBLE_EQ(*i.min, 1.0);
  EXPECT_DOUBLE_EQ(*i.max, 20.0);

  ParamSpec n = number_spec();
  EXPECT_EQ(n.type, ParamType::Number);
  EXPECT_EQ(n.default_value, "1.5");

  ParamSpec s = string_spec();
  EXPECT_EQ(s.type, ParamType::String);
  EXPECT_EQ(s.default_value, "untitled");
  EXPECT_FALSE(s.min.has_value());

  ParamSpec b = boolean_spec();
  EXPECT_EQ(b.type, ParamType::Boolean);
  EXPECT_EQ(b.default_value, "false");

  ParamSpec e = enum_spec();
  EXPECT_EQ(e.type, ParamType::Enum);
  EXPECT_EQ(e.default_value, "bilinear");
  EXPECT_EQ(e.values, (std::vector<std::string>{"nearest", "bilinear", "4-tap", "lanczos"}));
}

TEST(ParamSpecTest, DefaultIsCanonicalised) {
  // Defaults written as strings or in another JSON type are validated and canonicalised too.
  EXPECT_EQ(spec_from("n", R"({"type": "integer", "default": "007"})").default_value, "7");
  EXPECT_EQ(spec_from("n", R"({"type": "integer", "default": 8.0})").default_value, "8");
  EXPECT_EQ(spec_from("n", R"({"type": "number", "default": 3})").default_value, "3");
  EXPECT_EQ(spec_from("n", R"({"type": "number", "default": "2.50"})").default_value, "2.5");
  EXPECT_EQ(spec_from("n", R"({"type": "boolean", "default": "yes"})").default_value, "true");
  EXPECT_EQ(spec_from("n", R"({"type": "boolean", "default": true})").default_value, "true");
}

TEST(ParamSpecTest, DescriptionIsKept) {
  ParamSpec s = spec_from("n", R"({"type": "integer", "default": 1, "description": "How many"})");
  EXPECT_EQ(s.description, "How many");
  EXPECT_EQ(integer_spec().description, "");
}

TEST(ParamSpecTest, RejectsUnknownType) {
  Error e = expect_error([] { spec_from("speed", R"({"type": "float", "default": 1})"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "speed")) << e.what();
  EXPECT_TRUE(contains(e.what(), "float")) << e.what();
}

TEST(ParamSpecTest, RejectsMissingType) {
  Error e = expect_error([] { spec_from("speed", R"({"default": 1})"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "speed")) << e.what();
}

TEST(ParamSpecTest, RejectsMissingDefault) {
  Error e = expect_error([] { spec_from("speed", R"({"type": "integer", "min": 1})"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "speed")) << e.what();
  EXPECT_TRUE(contains(e.what(), "default")) << e.what();

  Error null_default = expect_error([] { spec_from("speed", R"({"type": "integer", "default": null})"); });
  EXPECT_TRUE(contains(null_default.what(), "default")) << null_default.what();

  Error object_default = expect_error([] { spec_from("speed", R"({"type": "integer", "default": {}})"); });
  EXPECT_TRUE(contains(object_default.what(), "default")) << object_default.what();
}

TEST(ParamSpecTest, RejectsDefaultOutsideItsOwnRange) {
  Error e = expect_error([] { spec_from("speed", R"({"type": "integer", "default": 30, "min": 1, "max": 20})"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "default")) << e.what();
  EXPECT_TRUE(contains(e.what(), "speed")) << e.what();
  EXPECT_TRUE(contains(e.what(), "1 to 20")) << e.what();

  EXPECT_THROW(spec_from("speed", R"({"type": "number", "default": -0.5, "min": 0})"), Error);
  EXPECT_THROW(spec_from("speed", R"({"type": "integer", "default": 2.5})"), Error);
  EXPECT_THROW(spec_from("speed", R"({"type": "boolean", "default": "maybe"})"), Error);
  EXPECT_THROW(spec_from("speed", R"({"type": "enum", "default": "d", "values": ["a", "b"]})"), Error);
  EXPECT_THROW(spec_from("speed", R"({"type": "string", "default": "a\"b"})"), Error);
}

TEST(ParamSpecTest, RejectsEnumWithoutValues) {
  Error missing = expect_error([] { spec_from("mode", R"({"type": "enum", "default": "a"})"); });
  EXPECT_EQ(missing.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(missing.what(), "mode")) << missing.what();
  EXPECT_TRUE(contains(missing.what(), "values")) << missing.what();

  Error empty = expect_error([] { spec_from("mode", R"({"type": "enum", "default": "a", "values": []})"); });
  EXPECT_TRUE(contains(empty.what(), "values")) << empty.what();

  EXPECT_THROW(spec_from("mode", R"({"type": "enum", "default": "a", "values": "a"})"), Error);
  EXPECT_THROW(spec_from("mode", R"({"type": "enum", "default": "a", "values": ["a", 1]})"), Error);
}

TEST(ParamSpecTest, RejectsEnumValueThatIsNotAWord) {
  Error e = expect_error([] { spec_from("mode", R"({"type": "enum", "default": "a", "values": ["a", "b c"]})"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "mode")) << e.what();
  EXPECT_TRUE(contains(e.what(), "b c")) << e.what();

  // Enum values are substituted unquoted: anything gst-launch could read as syntax is refused.
  for (const char *bad : {"a!b", "a=b", "a\\\"b", "a,b", "", "a b"}) {
    std::string json = std::string(R"({"type": "enum", "default": "ok", "values": ["ok", ")") + bad + "\"]}";
    EXPECT_THROW(spec_from("mode", json), Error) << bad;
  }
  // Letters, digits, '_', '-' and '.' are fine.
  EXPECT_NO_THROW(
      spec_from("mode", R"({"type": "enum", "default": "4-tap", "values": ["4-tap", "x_y", "v1.2", "ABC"]})"));
}

TEST(ParamSpecTest, RejectsBadParameterNames) {
  for (const char *bad : {"Speed", "my-param", "a b", "", "x=1"}) {
    Error e = expect_error([&] { spec_from(bad, R"({"type": "integer", "default": 1})"); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
  }
  EXPECT_NO_THROW(spec_from("queue_buffers2", R"({"type": "integer", "default": 1})"));
}

TEST(ParamSpecTest, RejectsNonNumericBounds) {
  EXPECT_THROW(spec_from("n", R"({"type": "integer", "default": 1, "min": "0"})"), Error);
}

TEST(ParamSpecTest, RoundTripsToJson) {
  ParamSpec i = integer_spec();
  sluice::json::Node node(param_spec_to_json(i));
  JsonObject *o = json_node_get_object(node.get());
  EXPECT_STREQ(json_object_get_string_member(o, "name"), "segment_seconds");
  EXPECT_STREQ(json_object_get_string_member(o, "type"), "integer");
  EXPECT_EQ(json_object_get_int_member(o, "default"), 4);
  EXPECT_DOUBLE_EQ(json_object_get_double_member(o, "min"), 1.0);
  EXPECT_DOUBLE_EQ(json_object_get_double_member(o, "max"), 20.0);

  sluice::json::Node enode(param_spec_to_json(enum_spec()));
  JsonObject *eo = json_node_get_object(enode.get());
  EXPECT_STREQ(json_object_get_string_member(eo, "default"), "bilinear");
  EXPECT_EQ(json_array_get_length(json_object_get_array_member(eo, "values")), 4u);
}

TEST(ParamTypeTest, Names) {
  EXPECT_STREQ(param_type_name(ParamType::Integer), "integer");
  EXPECT_STREQ(param_type_name(ParamType::Number), "number");
  EXPECT_STREQ(param_type_name(ParamType::String), "string");
  EXPECT_STREQ(param_type_name(ParamType::Boolean), "boolean");
  EXPECT_STREQ(param_type_name(ParamType::Enum), "enum");
}

// ---------------------------------------------------------------------------------------------
// validate_value: one value against its schema

TEST(ValidateIntegerTest, Canonicalises) {
  ParamSpec s = integer_spec();
  EXPECT_EQ(validate_value(s, "4"), "4");
  EXPECT_EQ(validate_value(s, "007"), "7");
  EXPECT_EQ(validate_value(s, "+12"), "12");
  EXPECT_EQ(validate_value(s, "1"), "1");
  EXPECT_EQ(validate_value(s, "20"), "20");
}

TEST(ValidateIntegerTest, RejectsWrongTypes) {
  ParamSpec s = integer_spec();
  for (const char *bad : {"", "abc", "4.5", "4s", "0x10", " 4", "4 ", "1e1", "--4", "4\n", "true"}) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
    EXPECT_TRUE(contains(e.what(), "segment_seconds")) << e.what();
    EXPECT_TRUE(contains(e.what(), "integer")) << e.what();
  }
  // Overflows are errors, not saturated values.
  EXPECT_THROW(validate_value(s, "99999999999999999999999"), Error);
}

TEST(ValidateIntegerTest, RejectsOutOfRangeNamingParameterAndRange) {
  ParamSpec s = integer_spec();
  for (const char *bad : {"0", "21", "-1", "1000000"}) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid);
    EXPECT_TRUE(contains(e.what(), "segment_seconds")) << e.what();
    EXPECT_TRUE(contains(e.what(), "out of range")) << e.what();
    EXPECT_TRUE(contains(e.what(), "1 to 20")) << e.what();
    EXPECT_TRUE(contains(e.what(), bad)) << e.what();
  }
}

TEST(ValidateIntegerTest, OneSidedRanges) {
  ParamSpec lo = spec_from("n", R"({"type": "integer", "default": 5, "min": 2})");
  EXPECT_EQ(validate_value(lo, "1000000"), "1000000");
  Error e1 = expect_error([&] { validate_value(lo, "1"); });
  EXPECT_TRUE(contains(e1.what(), "at least 2")) << e1.what();

  ParamSpec hi = spec_from("n", R"({"type": "integer", "default": 5, "max": 9})");
  EXPECT_EQ(validate_value(hi, "-100"), "-100");
  Error e2 = expect_error([&] { validate_value(hi, "10"); });
  EXPECT_TRUE(contains(e2.what(), "at most 9")) << e2.what();
}

TEST(ValidateNumberTest, Canonicalises) {
  ParamSpec s = number_spec();
  EXPECT_EQ(validate_value(s, "2.50"), "2.5");
  EXPECT_EQ(validate_value(s, "007"), "7");
  EXPECT_EQ(validate_value(s, "1e0"), "1");
  EXPECT_EQ(validate_value(s, "0.125"), "0.125");
  EXPECT_EQ(validate_value(s, "10"), "10");
  EXPECT_EQ(validate_value(s, "0"), "0");
}

TEST(ValidateNumberTest, RejectsWrongTypesAndNonFinite) {
  ParamSpec s = number_spec();
  for (const char *bad : {"", "abc", "1.5x", "nan", "inf", "-inf", " 1", "1,5", "1e999"}) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
    EXPECT_TRUE(contains(e.what(), "gain")) << e.what();
  }
}

TEST(ValidateNumberTest, RejectsOutOfRange) {
  ParamSpec s = number_spec();
  Error e = expect_error([&] { validate_value(s, "10.5"); });
  EXPECT_TRUE(contains(e.what(), "gain")) << e.what();
  EXPECT_TRUE(contains(e.what(), "0 to 10")) << e.what();
  EXPECT_THROW(validate_value(s, "-0.001"), Error);
}

TEST(ValidateBooleanTest, Canonicalises) {
  ParamSpec s = boolean_spec();
  for (const char *t : {"true", "1", "yes"})
    EXPECT_EQ(validate_value(s, t), "true") << t;
  for (const char *f : {"false", "0", "no"})
    EXPECT_EQ(validate_value(s, f), "false") << f;
}

TEST(ValidateBooleanTest, RejectsOtherWords) {
  ParamSpec s = boolean_spec();
  for (const char *bad : {"", "maybe", "2", "y", "on "}) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid);
    EXPECT_TRUE(contains(e.what(), "deinterlace")) << e.what();
    EXPECT_TRUE(contains(e.what(), "true or false")) << e.what();
  }
}

TEST(ValidateEnumTest, AcceptsListedValuesOnly) {
  ParamSpec s = enum_spec();
  EXPECT_EQ(validate_value(s, "lanczos"), "lanczos");
  EXPECT_EQ(validate_value(s, "4-tap"), "4-tap");
  for (const char *bad : {"", "Lanczos", "bicubic", "lanczos ", "nearest,bilinear"}) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
    EXPECT_TRUE(contains(e.what(), "scaler")) << e.what();
    EXPECT_TRUE(contains(e.what(), "nearest, bilinear, 4-tap, lanczos")) << e.what();
  }
}

TEST(ValidateStringTest, AcceptsSafeText) {
  ParamSpec s = string_spec();
  // Safe because a string placeholder must sit inside double quotes in a fragment.
  const std::vector<std::string> safe = {
      "hello world", "a ! b", "name=x", "fakesink name=evil",  "caf\xc3\xa9 \xe2\x9c\x93",
      "{input}",     "a,b;c", "",       std::string(4096, 'x')};
  for (const auto &ok : safe)
    EXPECT_EQ(validate_value(s, ok), ok);
}

TEST(ValidateStringTest, RejectsQuotesBackslashesAndControls) {
  ParamSpec s = string_spec();
  const std::vector<std::string> hostile = {
      "a\"b",
      "\" ! fakesink name=x ! \"",
      "it's",
      "back\\slash",
      "line\nbreak",
      "tab\there",
      "cr\rhere",
      std::string("bell\x07"),
      std::string("esc\x1b[0m"),
      std::string("del\x7f"),
      std::string("\x01"),
  };
  for (const auto &bad : hostile) {
    Error e = expect_error([&] { validate_value(s, bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid);
    EXPECT_TRUE(contains(e.what(), "title")) << e.what();
  }
}

TEST(ValidateStringTest, RejectsTooLongAndInvalidUtf8) {
  ParamSpec s = string_spec();
  Error e = expect_error([&] { validate_value(s, std::string(4097, 'x')); });
  EXPECT_TRUE(contains(e.what(), "title")) << e.what();
  EXPECT_TRUE(contains(e.what(), "4096")) << e.what();
  EXPECT_THROW(validate_value(s, std::string(100000, 'y')), Error);
  EXPECT_THROW(validate_value(s, std::string("\xff\xfe")), Error);
  EXPECT_THROW(validate_value(s, std::string("caf\xc3")), Error); // truncated sequence
}

TEST(CheckSafeStringTest, NamesWhat) {
  Error e = expect_error([] { check_safe_string("output folder", "/tmp/a\"b"); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "output folder")) << e.what();
  EXPECT_NO_THROW(check_safe_string("output folder", "/tmp/a b!/name=c"));
  // Every ASCII control character is refused, one by one.
  for (int c = 1; c < 0x20; c++)
    EXPECT_THROW(check_safe_string("x", std::string("a") + static_cast<char>(c) + "b"), Error) << c;
}

TEST(IdentifierTest, Rules) {
  EXPECT_TRUE(is_identifier("segment_seconds"));
  EXPECT_TRUE(is_identifier("720p"));
  EXPECT_TRUE(is_identifier("a"));
  EXPECT_TRUE(is_identifier(std::string(64, 'a')));
  EXPECT_FALSE(is_identifier(std::string(65, 'a')));
  EXPECT_FALSE(is_identifier(""));
  EXPECT_FALSE(is_identifier("Upper"));
  EXPECT_FALSE(is_identifier("with-dash"));
  EXPECT_FALSE(is_identifier("with space"));
  EXPECT_FALSE(is_identifier("dot.ted"));
  EXPECT_FALSE(is_identifier("../x"));
}

// ---------------------------------------------------------------------------------------------
// resolve: a set of user values against a set of schemas

std::vector<ParamSpec> all_specs() {
  return {integer_spec(), number_spec(), string_spec(), boolean_spec(), enum_spec()};
}

TEST(ResolveTest, AppliesDefaults) {
  Values v = resolve(all_specs(), {});
  EXPECT_EQ(v.size(), 5u);
  EXPECT_EQ(v.at("segment_seconds"), "4");
  EXPECT_EQ(v.at("gain"), "1.5");
  EXPECT_EQ(v.at("title"), "untitled");
  EXPECT_EQ(v.at("deinterlace"), "false");
  EXPECT_EQ(v.at("scaler"), "bilinear");
}

TEST(ResolveTest, UserValuesAreCanonicalAndOthersDefault) {
  Values v = resolve(all_specs(), {{"segment_seconds", "007"}, {"deinterlace", "yes"}, {"title", "my show!"}});
  EXPECT_EQ(v.at("segment_seconds"), "7");
  EXPECT_EQ(v.at("deinterlace"), "true");
  EXPECT_EQ(v.at("title"), "my show!");
  EXPECT_EQ(v.at("gain"), "1.5");
  EXPECT_EQ(v.at("scaler"), "bilinear");
}

TEST(ResolveTest, UnknownParameterIsNamedWithKnownOnes) {
  Error e = expect_error([] { resolve(all_specs(), {{"segment_secs", "4"}}); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "segment_secs")) << e.what();
  for (const char *known : {"segment_seconds", "gain", "title", "deinterlace", "scaler"})
    EXPECT_TRUE(contains(e.what(), known)) << e.what();
}

TEST(ResolveTest, HostileUnknownNameIsRejected) {
  Error e = expect_error([] { resolve(all_specs(), {{"x\n! fakesink", "1"}}); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
}

TEST(ResolveTest, InvalidValueNamesTheParameter) {
  Error e = expect_error([] { resolve(all_specs(), {{"scaler", "bicubic"}}); });
  EXPECT_TRUE(contains(e.what(), "scaler")) << e.what();
  EXPECT_TRUE(contains(e.what(), "lanczos")) << e.what();
  Error e2 = expect_error([] { resolve(all_specs(), {{"title", "a\"b"}}); });
  EXPECT_TRUE(contains(e2.what(), "title")) << e2.what();
}

TEST(ResolveTest, NoSpecsNoValues) {
  EXPECT_TRUE(resolve({}, {}).empty());
  Error e = expect_error([] { resolve({}, {{"a", "1"}}); });
  EXPECT_TRUE(contains(e.what(), "'a'")) << e.what();
}

// ---------------------------------------------------------------------------------------------
// split_assignment

TEST(SplitAssignmentTest, SplitsAtFirstEquals) {
  EXPECT_EQ(split_assignment("a=b"), (std::pair<std::string, std::string>{"a", "b"}));
  EXPECT_EQ(split_assignment("segment_seconds=6"), (std::pair<std::string, std::string>{"segment_seconds", "6"}));
  EXPECT_EQ(split_assignment("title=x=y"), (std::pair<std::string, std::string>{"title", "x=y"}));
  EXPECT_EQ(split_assignment("title="), (std::pair<std::string, std::string>{"title", ""}));
  EXPECT_EQ(split_assignment("t=a b"), (std::pair<std::string, std::string>{"t", "a b"}));
}

TEST(SplitAssignmentTest, RejectsMissingKeyOrEquals) {
  for (const char *bad : {"", "abc", "=value", "="}) {
    Error e = expect_error([&] { split_assignment(bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
    EXPECT_TRUE(contains(e.what(), "key=value")) << e.what();
  }
}

// Found by fuzzing descriptions (tests/fuzz/fuzz_description.cpp): the bounds of an integer parameter were any
// number, and printing the schema (`sluice pipeline show`, GET /api/v1/pipelines) converted them to 64-bit
// integers: 6e40 is undefined behaviour there, and 1.5 printed as 1, a bound the validator does not apply.
TEST(ParamSpecTest, IntegerBoundsAreWholeNumbersInRange) {
  for (const char *bounds : {R"("min": 1.5)", R"("max": 6e40)", R"("min": -1e19)", R"("max": 9007199254740993.5)"}) {
    Error e =
        expect_error([&] { spec_from("n", std::string(R"({"type": "integer", "default": 2, )") + bounds + "}"); });
    EXPECT_TRUE(contains(e.what(), "whole number")) << bounds << ": " << e.what();
  }
  // Whole bounds print as they were given.
  ParamSpec ok = spec_from("n", R"({"type": "integer", "default": 2, "min": -9007199254740992, "max": 1e15})");
  sluice::json::Node node(param_spec_to_json(ok));
  JsonObject *o = json_node_get_object(node.get());
  EXPECT_EQ(json_object_get_int_member(o, "min"), -9007199254740992LL);
  EXPECT_EQ(json_object_get_int_member(o, "max"), 1000000000000000LL);
  // A number parameter keeps fractional bounds.
  EXPECT_EQ(spec_from("g", R"({"type": "number", "default": 2, "min": 1.5})").min, 1.5);
}

} // namespace
