// SPDX-License-Identifier: LGPL-2.1-or-later
// S3Storage against s3rver (npm, tests/s3), started on a free port in a temp folder: puts (single and multipart),
// streaming uploads and their abort, ranges, heads, lists, deletes, presigned URLs and errors.
#include "core/error.h"
#include "core/fs.h"
#include "storage/publish.h"
#include "storage/s3.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <glib.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <string>

using namespace sluice;
using namespace sluice::storage;

namespace {

constexpr std::size_t kMiB = 1u << 20;

std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < size; i++) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// One s3rver for the whole program, with the bucket "media"; stopped by closing its standard input.
class S3rver : public ::testing::Environment {
public:
  static inline int port = 0;
  static inline std::string skip_reason;
  static inline std::string dir;

  void SetUp() override {
    const char *script = g_getenv("SLUICE_S3_DOUBLE");
    if (!script || !fs::exists(script)) {
      skip_reason = "SLUICE_S3_DOUBLE (tests/s3/server.mjs) is not set";
      return;
    }
    std::string modules = std::string(script).substr(0, std::string(script).rfind('/')) + "/node_modules/s3rver";
    gchar *node = g_find_program_in_path("node");
    if (!node || !fs::is_dir(modules)) {
      skip_reason = "node or tests/s3/node_modules is missing (tools/setup runs npm ci in tests/s3)";
      g_free(node);
      return;
    }
    gchar *tmp = g_dir_make_tmp("sluice-s3rver-XXXXXX", nullptr);
    dir = tmp;
    g_free(tmp);
    // s3rver pages its listings with DES continuation tokens, which OpenSSL 3 keeps in its legacy provider.
    const gchar *argv[] = {node, "--openssl-legacy-provider", script, dir.c_str(), "media", nullptr};
    GError *err = nullptr;
    int out = -1;
    if (!g_spawn_async_with_pipes(nullptr, const_cast<gchar **>(argv), nullptr, G_SPAWN_DO_NOT_REAP_CHILD, nullptr,
                                  nullptr, &pid_, &stdin_, &out, nullptr, &err)) {
      skip_reason = std::string("cannot start s3rver: ") + err->message;
      g_error_free(err);
      g_free(node);
      return;
    }
    g_free(node);
    std::string line;
    char c;
    while (read(out, &c, 1) == 1 && c != '\n')
      line += c;
    close(out);
    if (!line.starts_with("port ")) {
      skip_reason = "s3rver did not start: '" + line + "'";
      return;
    }
    port = std::stoi(line.substr(5));
  }
  void TearDown() override {
    if (stdin_ >= 0)
      close(stdin_); // s3rver exits when its input ends
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    if (!dir.empty())
      fs::remove_all(dir);
  }

private:
  GPid pid_ = 0;
  int stdin_ = -1;
};

class S3StorageTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (S3rver::port == 0)
      GTEST_SKIP() << S3rver::skip_reason;
    // Each test under a prefix of its own in the one bucket.
    prefix_ = std::string("site/") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
    settings_ = S3Settings{"media",     prefix_,  "http://127.0.0.1:" + std::to_string(S3rver::port),
                           "us-east-1", "S3RVER", "S3RVER"};
    settings_.part_size = 5 * kMiB;
    storage_ = std::make_unique<S3Storage>(settings_);
    gchar *tmp = g_dir_make_tmp("sluice-s3test-XXXXXX", nullptr);
    tmp_ = tmp;
    g_free(tmp);
  }
  void TearDown() override {
    if (!tmp_.empty())
      fs::remove_all(tmp_);
  }

  std::string get(const std::string &key, std::int64_t offset = 0, std::int64_t length = -1) {
    std::string out;
    storage_->get_range(key, offset, length, [&out](const char *d, std::size_t n) { out.append(d, n); });
    return out;
  }
  std::vector<std::string> keys(const std::string &prefix) {
    std::vector<std::string> out;
    for (const auto &o : storage_->list(prefix))
      out.push_back(o.key);
    return out;
  }

  std::string prefix_;
  S3Settings settings_;
  std::unique_ptr<Storage> storage_;
  std::string tmp_;
};

// A plain GET with libcurl, no credentials: the body, and the status through status.
std::string plain_get(const std::string &url, long *status) {
  std::string body;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char *d, std::size_t s, std::size_t n, void *u) {
        static_cast<std::string *>(u)->append(d, s * n);
        return s * n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  EXPECT_EQ(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(c);
  return body;
}

[[maybe_unused]] ::testing::Environment *const s3rver_env = ::testing::AddGlobalTestEnvironment(new S3rver);

} // namespace

TEST_F(S3StorageTest, SmallPutHeadRangeGetFile) {
  std::string data = pattern(100000, 1);
  ObjectInfo put = storage_->put_bytes("videos/v1/hls/720p/seg-00001.ts", data);
  EXPECT_EQ(put.size, 100000);
  auto head = storage_->head("videos/v1/hls/720p/seg-00001.ts");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size, 100000);
  EXPECT_EQ(head->etag, put.etag);
  std::unique_ptr<gchar, decltype(&g_free)> md5(g_compute_checksum_for_string(G_CHECKSUM_MD5, data.data(), data.size()),
                                                &g_free);
  EXPECT_EQ(head->etag, "\"" + std::string(md5.get()) + "\"") << "a single PUT's ETag is its MD5";
  EXPECT_GT(head->last_modified, 1600000000);
  EXPECT_EQ(get("videos/v1/hls/720p/seg-00001.ts"), data);
  EXPECT_EQ(get("videos/v1/hls/720p/seg-00001.ts", 1000, 10), data.substr(1000, 10));
  EXPECT_EQ(get("videos/v1/hls/720p/seg-00001.ts", 99990), data.substr(99990));
  storage_->get_file("videos/v1/hls/720p/seg-00001.ts", tmp_ + "/seg.ts");
  EXPECT_EQ(fs::read_file(tmp_ + "/seg.ts"), data);
  // The objects are under the prefix: s3rver keeps them in its folder.
  EXPECT_TRUE(fs::exists(S3rver::dir + "/media/" + prefix_ + "videos/v1/hls/720p/seg-00001.ts._S3rver_object"));
}

// 20 MiB from a file in 5 MiB parts: multipart, read back whole and equal.
TEST_F(S3StorageTest, MultipartPutFile) {
  std::string data = pattern(20 * kMiB + 12345, 2);
  fs::write_atomic(tmp_ + "/big.bin", data);
  ObjectInfo put = storage_->put_file("videos/v2/source.mp4", tmp_ + "/big.bin");
  EXPECT_EQ(put.size, static_cast<std::int64_t>(data.size()));
  auto head = storage_->head("videos/v2/source.mp4");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size, static_cast<std::int64_t>(data.size()));
  storage_->get_file("videos/v2/source.mp4", tmp_ + "/back.bin");
  EXPECT_EQ(fs::read_file(tmp_ + "/back.bin"), data);
  EXPECT_EQ(get("videos/v2/source.mp4", 5 * kMiB - 3, 6), data.substr(5 * kMiB - 3, 6)) << "across a part boundary";
}

// The streaming writer, fed in odd chunks: two full parts and a short one.
TEST_F(S3StorageTest, StreamingUpload) {
  std::string data = pattern(12 * kMiB + 7, 3);
  auto upload = storage_->begin_upload("videos/v3/source.mkv", "video/x-matroska");
  for (std::size_t at = 0; at < data.size(); at += 65521)
    upload->write(data.data() + at, std::min<std::size_t>(65521, data.size() - at));
  EXPECT_FALSE(storage_->head("videos/v3/source.mkv")) << "nothing appears before finish";
  ObjectInfo info = upload->finish();
  EXPECT_EQ(info.size, static_cast<std::int64_t>(data.size()));
  EXPECT_EQ(get("videos/v3/source.mkv"), data);

  // Exactly one part: a single PUT.
  std::string one = pattern(5 * kMiB, 4);
  auto exact = storage_->begin_upload("videos/v3/exact.bin");
  exact->write(one.data(), one.size());
  exact->finish();
  EXPECT_EQ(get("videos/v3/exact.bin"), one);
}

// Parts sent two at a time, their bodies as UNSIGNED-PAYLOAD, read from a file as they are sent: the parts are put
// together in their order, whatever order they finish in; bytes written after a file's range follow it.
TEST_F(S3StorageTest, StreamingUploadFromFileParallelUnsigned) {
  S3Settings settings = settings_;
  settings.parallel_parts = 2;
  settings.unsigned_parts = true;
  S3Storage storage(settings);
  std::string data = pattern(23 * kMiB + 11, 6);
  fs::write_atomic(tmp_ + "/big.bin", data);
  int fd = open((tmp_ + "/big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto upload = storage.begin_upload("videos/v6/source.ts", "");
  const std::int64_t tail = 3 * kMiB + 11; // written from memory after the file's ranges
  const std::int64_t ranged = static_cast<std::int64_t>(data.size()) - tail;
  for (std::int64_t at = 0; at < ranged; at += 1 << 20)
    upload->write_file_range(fd, at, std::min<std::int64_t>(1 << 20, ranged - at));
  upload->write(data.data() + ranged, static_cast<std::size_t>(tail));
  EXPECT_EQ(upload->finish().size, static_cast<std::int64_t>(data.size()));
  EXPECT_EQ(get("videos/v6/source.ts"), data);
  // Smaller than a part: one PUT from the file.
  auto small = storage.begin_upload("videos/v6/small.ts", "");
  small->write_file_range(fd, 100, 1000);
  small->finish();
  EXPECT_EQ(get("videos/v6/small.ts"), data.substr(100, 1000));
  close(fd);
}

TEST_F(S3StorageTest, AbortedUploadLeavesNoObject) {
  std::string data = pattern(11 * kMiB, 5);
  auto upload = storage_->begin_upload("videos/v4/source.mkv");
  upload->write(data.data(), data.size()); // two parts sent: a multipart upload in progress
  upload->abort();
  EXPECT_FALSE(storage_->head("videos/v4/source.mkv"));
  EXPECT_TRUE(keys("videos/v4/").empty());
  { // dropped without finish: aborted
    auto dropped = storage_->begin_upload("videos/v4/other.mkv");
    dropped->write(data.data(), 6 * kMiB);
  }
  EXPECT_FALSE(storage_->head("videos/v4/other.mkv"));
  EXPECT_TRUE(keys("videos/v4/").empty());
}

TEST_F(S3StorageTest, ListDeleteAndDeletePrefix) {
  for (const char *key : {"videos/a/hls/master.m3u8", "videos/a/hls/720p/seg-1.ts", "videos/a/poster.jpg",
                          "videos/ab/poster.jpg", "videos/b/poster.jpg", "videos/a/name with space&amp.txt"})
    storage_->put_bytes(key, key);
  EXPECT_EQ(keys("videos/a/"), (std::vector<std::string>{"videos/a/hls/720p/seg-1.ts", "videos/a/hls/master.m3u8",
                                                         "videos/a/name with space&amp.txt", "videos/a/poster.jpg"}));
  EXPECT_EQ(keys("videos/a").size(), 5u);
  EXPECT_EQ(storage_->list("videos/a/hls/")[1].size, 24); // its content is its key
  EXPECT_EQ(get("videos/a/name with space&amp.txt"), "videos/a/name with space&amp.txt");

  storage_->remove("videos/b/poster.jpg");
  storage_->remove("videos/b/poster.jpg"); // missing: no error
  EXPECT_FALSE(storage_->head("videos/b/poster.jpg"));
  EXPECT_EQ(storage_->remove_prefix("videos/a/"), 4u);
  EXPECT_EQ(keys("videos/"), (std::vector<std::string>{"videos/ab/poster.jpg"}));
  EXPECT_EQ(storage_->remove_prefix("videos/"), 1u);
  EXPECT_TRUE(keys("").empty());
}

// More than one page of a listing (s3rver pages at 1000 keys).
TEST_F(S3StorageTest, ListFollowsContinuation) {
  for (int i = 0; i < 1003; i++)
    storage_->put_bytes("videos/many/seg-" + std::to_string(10000 + i) + ".ts", "x");
  auto list = keys("videos/many/");
  ASSERT_EQ(list.size(), 1003u);
  EXPECT_EQ(list.back(), "videos/many/seg-11002.ts");
  EXPECT_EQ(storage_->remove_prefix("videos/many/"), 1003u);
  EXPECT_TRUE(keys("videos/many/").empty());
}

TEST_F(S3StorageTest, PresignedUrlFetchedWithoutCredentials) {
  std::string data = pattern(3000, 6);
  storage_->put_bytes("videos/v5/hls/720p/seg-00002.ts", data);
  std::string url = storage_->presign_get("videos/v5/hls/720p/seg-00002.ts", std::chrono::seconds(300));
  EXPECT_TRUE(g_str_has_prefix(
      url.c_str(), (settings_.endpoint + "/media/" + prefix_ + "videos/v5/hls/720p/seg-00002.ts?").c_str()));
  EXPECT_NE(url.find("X-Amz-Expires=300"), std::string::npos);
  EXPECT_NE(url.find("X-Amz-Credential=S3RVER%2F"), std::string::npos);
  EXPECT_EQ(url.find("X-Amz-Signature="), url.size() - 16 - 64);
  long status = 0;
  EXPECT_EQ(plain_get(url, &status), data);
  EXPECT_EQ(status, 200);
  EXPECT_THROW(storage_->presign_get("videos/v5/x", std::chrono::seconds(0)), Error);
  EXPECT_THROW(storage_->presign_get("videos/v5/x", std::chrono::seconds(8 * 86400)), Error);
}

TEST_F(S3StorageTest, Errors) {
  try {
    get("videos/none/seg.ts");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find("NoSuchKey"), std::string::npos) << e.what();
  }
  try {
    storage_->get_file("videos/none/seg.ts", tmp_ + "/none.ts");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
  EXPECT_TRUE(fs::list_dir(tmp_).empty()) << "no partial file is left";
  EXPECT_FALSE(storage_->head("videos/none/seg.ts"));

  S3Settings other = settings_;
  other.bucket = "no-such-bucket";
  try {
    S3Storage(other).put_bytes("videos/x", "x", "");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find("NoSuchBucket"), std::string::npos) << e.what();
  }
  other = settings_;
  other.access_key = "NOT-A-KEY";
  other.secret_key = "the-secret-value";
  try {
    S3Storage(other).put_bytes("videos/x", "x", "");
    FAIL();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("InvalidAccessKeyId"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("the-secret-value"), std::string::npos);
  }

  // An endpoint nobody listens on: a port that was just free.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &len);
  close(fd);
  other = settings_;
  other.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  try {
    S3Storage(other).head("videos/x");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
    std::string what = e.what();
    EXPECT_NE(what.find("HEAD " + other.endpoint + "/media/" + prefix_ + "videos/x failed"), std::string::npos) << what;
    EXPECT_NE(what.find("onnect"), std::string::npos) << what; // libcurl's "Failed to connect ..."
  }
}

// A package published to the bucket: every file there and equal, the master playlist written last.
TEST_F(S3StorageTest, PublishDir) {
  std::string pkg = tmp_ + "/pkg";
  fs::make_dirs(pkg + "/720p");
  std::string segment = pattern(6 * kMiB, 7); // multipart
  fs::write_atomic(pkg + "/720p/seg-00001.ts", segment);
  fs::write_atomic(pkg + "/720p/index.m3u8", "#EXTM3U\nseg-00001.ts\n");
  fs::write_atomic(pkg + "/master.m3u8", "#EXTM3U\n720p/index.m3u8\n");
  auto written = publish_dir(*storage_, pkg, "videos/v6/hls-1/");
  EXPECT_EQ(written.back(), "videos/v6/hls-1/master.m3u8");
  EXPECT_EQ(keys("videos/v6/"),
            (std::vector<std::string>{"videos/v6/hls-1/720p/index.m3u8", "videos/v6/hls-1/720p/seg-00001.ts",
                                      "videos/v6/hls-1/master.m3u8"}));
  EXPECT_EQ(get("videos/v6/hls-1/720p/seg-00001.ts"), segment);
  EXPECT_EQ(get("videos/v6/hls-1/master.m3u8"), "#EXTM3U\n720p/index.m3u8\n");
}
