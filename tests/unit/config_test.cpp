// SPDX-License-Identifier: LGPL-2.1-or-later
// Tests of the server configuration: the documented example, sizes, listen addresses, bad values.
#include "check.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "media.h"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace sluice;

namespace {

std::string write_conf(const test::TempDir &dir, const std::string &text) {
  std::string path = fs::join(dir.path(), "s.conf");
  fs::write_atomic(path, text);
  return path;
}

} // namespace

TEST(Config, ExampleFileStatesTheDefaults) {
  const char *data = std::getenv("SLUICE_DATA_DIR");
  ASSERT_NE(data, nullptr);
  ServerConfig defaults, loaded;
  loaded.load_file(fs::join(data, "sluice.conf"));
  EXPECT_EQ(loaded.host, defaults.host);
  EXPECT_EQ(loaded.port, defaults.port);
  EXPECT_EQ(loaded.data_dir, defaults.data_dir);
  EXPECT_EQ(loaded.cors_origins, defaults.cors_origins);
  EXPECT_EQ(loaded.max_upload_size, defaults.max_upload_size);
  EXPECT_EQ(loaded.auto_transcode, defaults.auto_transcode);
  EXPECT_EQ(loaded.concurrent_jobs, defaults.concurrent_jobs);
  EXPECT_EQ(loaded.pipeline, defaults.pipeline);
  EXPECT_EQ(loaded.encoder, defaults.encoder);
  EXPECT_EQ(loaded.extras, defaults.extras);
  EXPECT_EQ(loaded.max_attempts, defaults.max_attempts);
  EXPECT_EQ(loaded.retry_delay_s, defaults.retry_delay_s);
  EXPECT_EQ(loaded.queue_limit, defaults.queue_limit);
  EXPECT_EQ(loaded.keep_alive_s, defaults.keep_alive_s);
  EXPECT_EQ(loaded.min_free_space, defaults.min_free_space);
  EXPECT_EQ(loaded.resumable_expiry_s, defaults.resumable_expiry_s);
  EXPECT_EQ(loaded.rtsp_host, defaults.rtsp_host);
  EXPECT_EQ(loaded.rtsp_port, defaults.rtsp_port);
  EXPECT_EQ(loaded.srt_port, defaults.srt_port);
  EXPECT_EQ(loaded.live_window_s, defaults.live_window_s);
  EXPECT_EQ(loaded.live_idle_timeout_s, defaults.live_idle_timeout_s);
}

TEST(Config, ReadsEveryKey) {
  test::TempDir dir;
  ServerConfig c;
  c.load_file(write_conf(dir,
                         "[server]\nlisten=0.0.0.0:9000\ndata=/srv/v\ncors-origins=https://a.example; http://b:3000\n"
                         "[uploads]\nmax-size=512M\nauto-transcode=false\n"
                         "[jobs]\nconcurrent=3\npipeline=other\nencoder=x264\nextras=poster; "
                         "preview\nmax-attempts=5\nretry-delay=2\nqueue-limit=7\n"
                         "[events]\nkeep-alive=1\n[health]\nmin-free-space=0\n"));
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 9000);
  EXPECT_EQ(c.data_dir, "/srv/v");
  EXPECT_EQ(c.cors_origins, (std::vector<std::string>{"https://a.example", "http://b:3000"}));
  EXPECT_EQ(c.max_upload_size, 512LL << 20);
  EXPECT_FALSE(c.auto_transcode);
  EXPECT_EQ(c.slots(), 3);
  EXPECT_EQ(c.pipeline, "other");
  EXPECT_EQ(c.encoder, "x264");
  EXPECT_EQ(c.extras, (std::vector<std::string>{"poster", "preview"}));
  EXPECT_EQ(c.max_attempts, 5);
  EXPECT_EQ(c.retry_delay_s, 2);
  EXPECT_EQ(c.queue_limit, 7);
  EXPECT_EQ(c.keep_alive_s, 1);
  EXPECT_EQ(c.min_free_space, 0);
}

TEST(Config, EmptyExtrasQueueNothingElse) {
  test::TempDir dir;
  ServerConfig c;
  EXPECT_EQ(c.extras, (std::vector<std::string>{"poster", "storyboard", "preview"}));
  c.load_file(write_conf(dir, "[jobs]\nextras=\n"));
  EXPECT_TRUE(c.extras.empty());
}

TEST(Config, SlotsDefaultToOnePerTwoCores) {
  ServerConfig c;
  EXPECT_GE(c.slots(), 1);
  c.concurrent_jobs = 4;
  EXPECT_EQ(c.slots(), 4);
}

TEST(Config, BadValuesNameTheKey) {
  test::TempDir dir;
  auto fails = [&](const std::string &text, const std::string &needle) {
    ServerConfig c;
    Error e = test::expect_error([&] { c.load_file(write_conf(dir, text)); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << text;
    EXPECT_TRUE(test::contains(e.what(), needle)) << e.what();
  };
  fails("[jobs]\nconcurrent=abc\n", "concurrent");
  fails("[jobs]\nconcurrent=-1\n", "concurrent");
  fails("[jobs]\nmax-attempts=0\n", "max-attempts");
  fails("[uploads]\nmax-size=lots\n", "max-size");
  fails("[uploads]\nauto-transcode=maybe\n", "auto-transcode");
  fails("[server]\nlisten=localhost\n", "HOST:PORT");
  fails("[server]\nlisten=127.0.0.1:70000\n", "0..65535");
  fails("not a key file", "configuration");
  ServerConfig c;
  Error e = test::expect_error([&] { c.load_file(fs::join(dir.path(), "missing.conf")); });
  EXPECT_TRUE(test::contains(e.what(), "missing.conf")) << e.what();
}

TEST(Config, Durations) {
  EXPECT_EQ(parse_duration("90", "x"), 90);
  EXPECT_EQ(parse_duration("90s", "x"), 90);
  EXPECT_EQ(parse_duration("30m", "x"), 1800);
  EXPECT_EQ(parse_duration("24h", "x"), 86400);
  EXPECT_EQ(parse_duration("7d", "x"), 7 * 86400);
  EXPECT_EQ(parse_duration("2H", "x"), 7200);
  for (const char *bad : {"", "s", "-1", "1.5h", "1w", "99999999999999999999", "12 m", "+5"})
    EXPECT_THROW(parse_duration(bad, "[uploads] resumable-expiry"), sluice::Error) << bad;
}

TEST(Config, ResumableExpiryFromTheFile) {
  sluice::test::TempDir dir;
  std::string path = dir.file("sluice.conf");
  ASSERT_TRUE(g_file_set_contents(path.c_str(), "[uploads]\nresumable-expiry=90s\n", -1, nullptr));
  ServerConfig c;
  EXPECT_EQ(c.resumable_expiry_s, 86400);
  c.load_file(path);
  EXPECT_EQ(c.resumable_expiry_s, 90);
  ASSERT_TRUE(g_file_set_contents(path.c_str(), "[uploads]\nresumable-expiry=0\n", -1, nullptr));
  EXPECT_THROW(c.load_file(path), sluice::Error);
}

TEST(Config, Sizes) {
  EXPECT_EQ(parse_size("0", "x"), 0);
  EXPECT_EQ(parse_size("1024", "x"), 1024);
  EXPECT_EQ(parse_size("1K", "x"), 1024);
  EXPECT_EQ(parse_size("8G", "x"), 8LL << 30);
  EXPECT_EQ(parse_size("2gb", "x"), 2LL << 30);
  EXPECT_EQ(parse_size("1T", "x"), 1LL << 40);
  for (const char *bad : {"", "G", "-1", "1.5G", "1X", "99999999999999999999", "12 M"})
    EXPECT_THROW(parse_size(bad, "x"), Error) << bad;
}

TEST(Config, ListenAddresses) {
  ServerConfig c;
  c.set_listen("127.0.0.1:0");
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.port, 0);
  c.set_listen("[::1]:8443");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 8443);
  for (const char *bad : {"", "8080", ":8080", "host:", "host:x", "[::1]8080", "h:-1"})
    EXPECT_THROW(c.set_listen(bad), Error) << bad;
}
