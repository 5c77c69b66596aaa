// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the route table's matching: literal segments, {id} captures (never empty), a final "*" taking the
// rest of the path as it came (possibly empty), /api/ paths with a trailing slash, HEAD answered by GET routes, and
// the methods of a path that matched no route for the method asked.

#include "http/routes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using sluice::http::match_route;

// The pattern of the route that answers method on path ("" for none), and its captures.
std::string pattern_of(const std::string &method, const std::string &path, std::vector<std::string> *params = nullptr) {
  auto m = match_route(method, path);
  if (params)
    *params = m.params;
  return m.route ? m.route->pattern : "";
}

TEST(Routes, LiteralsCapturesAndTheRest) {
  std::vector<std::string> p;
  EXPECT_EQ(pattern_of("GET", "/"), "/");
  EXPECT_EQ(pattern_of("GET", "/api/v1/videos", &p), "/api/v1/videos");
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(pattern_of("GET", "/api/v1/videos/abc", &p), "/api/v1/videos/{id}");
  EXPECT_EQ(p, std::vector<std::string>{"abc"});
  EXPECT_EQ(pattern_of("GET", "/videos/abc/hls/360p.m3u8", &p), "/videos/{id}/*");
  EXPECT_EQ(p, (std::vector<std::string>{"abc", "hls/360p.m3u8"}));
  EXPECT_EQ(pattern_of("GET", "/web/app.js", &p), "/web/*");
  EXPECT_EQ(p, std::vector<std::string>{"app.js"});
  EXPECT_EQ(pattern_of("GET", "/web/", &p), "/web/*");
  EXPECT_EQ(p, std::vector<std::string>{""});
  EXPECT_EQ(pattern_of("GET", "/web", &p), "/web/*");
  EXPECT_EQ(p, std::vector<std::string>{""});
}

TEST(Routes, TrailingSlashOfTheApiAndHead) {
  EXPECT_EQ(pattern_of("GET", "/api/v1/videos/"), "/api/v1/videos");
  EXPECT_EQ(pattern_of("HEAD", "/api/v1/videos/abc"), "/api/v1/videos/{id}");
}

TEST(Routes, NoMatch) {
  EXPECT_EQ(pattern_of("GET", "/api/v1/videosX"), "");
  EXPECT_EQ(pattern_of("GET", "/api/v1/videos//jobs"), "") << "an {id} is never empty";
  EXPECT_EQ(pattern_of("GET", "/api/v1/videos/abc/jobs/extra/more"), "");
  EXPECT_EQ(pattern_of("GET", "/nothing"), "");
  EXPECT_EQ(pattern_of("GET", ""), "");
}

TEST(Routes, MethodsOfAPathAnsweredByOthers) {
  auto m = match_route("PUT", "/api/v1/videos");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_NE(m.allow.find("GET"), std::string::npos) << m.allow;
  EXPECT_NE(m.allow.find("POST"), std::string::npos) << m.allow;
  EXPECT_EQ(match_route("PUT", "/nothing/at/all").allow, "");
}

// Every pattern of the table matches a path made from it, and answers with its own route (none is shadowed).
TEST(Routes, EveryRouteIsReachable) {
  for (const auto &r : sluice::http::routes()) {
    std::string path = r.pattern, pattern = r.pattern;
    for (std::string::size_type at; (at = path.find("{id}")) != std::string::npos;)
      path.replace(at, 4, "x1");
    if (!path.empty() && path.back() == '*')
      path.back() = 'f';
    auto m = match_route(r.method, path);
    ASSERT_NE(m.route, nullptr) << r.method << " " << path;
    EXPECT_EQ(std::string(m.route->pattern), pattern) << r.method << " " << path;
  }
}

} // namespace
