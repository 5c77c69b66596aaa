// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the tus Upload-Metadata codec and of the metadata sluice reads from it.

#include "app/uploads.h"

#include <glib.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace {

using sluice::app::Failure;
using sluice::app::Metadata;
using sluice::app::metadata_from;
using sluice::app::parse_tus_metadata;
using sluice::app::tus_metadata_header;

std::string b64(const std::string &s) {
  g_autofree gchar *e = g_base64_encode(reinterpret_cast<const guchar *>(s.data()), s.size());
  return e;
}

TEST(TusMetadata, PairsAreDecoded) {
  auto m = parse_tus_metadata("filename " + b64("talk.mp4") + ",title " + b64("Größe, 2") + ",is_confidential");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->size(), 3u);
  EXPECT_EQ(m->at("filename"), "talk.mp4");
  EXPECT_EQ(m->at("title"), "Größe, 2");
  EXPECT_EQ(m->at("is_confidential"), ""); // a key alone
  // Spaces around pairs (tus-js-client writes none; others do) and an empty header.
  EXPECT_TRUE(parse_tus_metadata(" a " + b64("x") + " , b " + b64("y")));
  auto empty = parse_tus_metadata("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(TusMetadata, MalformedIsRefused) {
  for (const std::string &bad : {std::string("filename not-base64!"), "a " + b64("x") + ",a " + b64("y"),
                                 std::string("a YQ"), std::string("a YQ=,"), std::string(",a YQ=="),
                                 "a " + b64(std::string("x\0y", 3)), "a " + b64("\xff\xfe"), std::string("a\tb YQ==")})
    EXPECT_FALSE(parse_tus_metadata(bad)) << bad;
  EXPECT_FALSE(parse_tus_metadata("a " + b64(std::string(20000, 'x')))); // bounded
}

TEST(TusMetadata, HeaderRoundTrips) {
  std::map<std::string, std::string> in = {{"filename", "a b.mp4"}, {"flag", ""}, {"title", "t"}};
  auto back = parse_tus_metadata(tus_metadata_header(in));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, in);
}

TEST(TusMetadata, SluiceKeysAndParams) {
  std::string filename;
  auto r = metadata_from({{"filename", "x.mov"},
                          {"title", "T"},
                          {"pipeline", "cmaf"},
                          {"priority", "5"},
                          {"playback_policy", "signed"},
                          {"filetype", "video/quicktime"},
                          {"params", R"({"segment_seconds": 4, "audio": true, "preset": "fast"})"}},
                         filename);
  ASSERT_TRUE(std::holds_alternative<Metadata>(r));
  const auto &m = std::get<Metadata>(r);
  EXPECT_EQ(filename, "x.mov");
  EXPECT_EQ(m.title, "T");
  EXPECT_EQ(m.pipeline, "cmaf");
  EXPECT_EQ(m.priority, "5");
  EXPECT_EQ(m.playback_policy, "signed");
  EXPECT_EQ(m.params.at("segment_seconds"), "4");
  EXPECT_EQ(m.params.at("audio"), "true");
  EXPECT_EQ(m.params.at("preset"), "fast");
  for (const char *bad : {"[1]", "{\"a\": {\"b\": 1}}", "{\"a\": [1]}", "not json", "{\"a\": 1} x"}) {
    auto f = metadata_from({{"params", bad}}, filename);
    ASSERT_TRUE(std::holds_alternative<Failure>(f)) << bad;
    EXPECT_EQ(std::get<Failure>(f).field, "params");
  }
}

} // namespace
