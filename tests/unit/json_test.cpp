// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the bounds checked before json-glib parses a document (json::check_limits): inputs found by
// fuzzing check_limits against what json-glib then builds (tests/fuzz/fuzz_json.cpp).

#include "core/error.h"
#include "core/json.h"

#include <gtest/gtest.h>

#include <string>

namespace {

namespace json = sluice::json;

const json::Limits kRequest{8, 1000};

std::string nested(int levels) {
  return std::string(static_cast<std::size_t>(levels), '[') + "1" + std::string(static_cast<std::size_t>(levels), ']');
}

TEST(JsonLimits, CountsNestingOfPlainDocuments) {
  EXPECT_FALSE(json::check_limits(nested(8), kRequest));
  auto v = json::check_limits(nested(9), kRequest);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->kind, json::LimitViolation::Kind::TooDeep);
}

// json-glib reads C comments and single-quoted strings, which are not JSON. A '"' inside one of them made
// check_limits take what follows for a string and not count its nesting, and json-glib then recursed through
// all of it: a request body of 400 KB overflowed the server's stack, as issue 10's first defect did.
TEST(JsonLimits, NestingBehindACommentIsCounted) {
  for (const std::string &text : {"/*\"*/" + nested(10) + "/*\"*/", "['\"'," + nested(10) + ",'\"']",
                                  "{\"a\": /* \" */ " + nested(10) + " /* \" */}"}) {
    EXPECT_TRUE(json::check_limits(text, kRequest)) << text;
    EXPECT_THROW(json::parse(text, "the request body", kRequest), sluice::Error) << text;
  }
  // The shape of the crash: far deeper than any stack holds. Only check_limits runs on it here.
  std::string deep = "/*\"*/" + nested(200000) + "/*\"*/";
  EXPECT_TRUE(json::check_limits(deep, kRequest));
  EXPECT_TRUE(json::check_limits(deep));
}

TEST(JsonLimits, NulBehindASingleQuoteIsRefused) {
  // A NUL inside a single-quoted string: json-glib would cut the value there, as for double quotes.
  std::string text = std::string("{\"pipeline\": 'hls\\u0000x'}");
  EXPECT_TRUE(json::check_limits(text, kRequest)) << text;
}

} // namespace
