// SPDX-License-Identifier: LGPL-2.1-or-later
// LocalStorage on a temporary folder: atomic puts, streaming uploads and their abort, ranges, lists, deletes, keys.
#include "core/error.h"
#include "core/fs.h"
#include "storage/local.h"
#include "storage/open.h"
#include "storage/publish.h"

#include <glib.h>
#include <gtest/gtest.h>

#include <string>

using namespace sluice;
using namespace sluice::storage;

namespace {

class LocalStorageTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "sluice-storage-XXXXXX";
    char *dir = g_mkdtemp(g_build_filename(g_get_tmp_dir(), tmpl, nullptr));
    ASSERT_NE(dir, nullptr);
    root_ = dir;
    g_free(dir);
    local_ = std::make_unique<LocalStorage>(root_ + "/root");
    storage_ = local_.get();
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string read_range(const std::string &key, std::int64_t offset, std::int64_t length) {
    std::string out;
    storage_->get_range(key, offset, length, [&out](const char *d, std::size_t n) { out.append(d, n); });
    return out;
  }

  std::string root_;
  std::unique_ptr<LocalStorage> local_;
  Storage *storage_ = nullptr; // through the interface, as the server uses it
};

std::string pattern(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; i++)
    s[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  return s;
}

} // namespace

TEST_F(LocalStorageTest, PutBytesHeadRangeAndGetFile) {
  std::string data = pattern(600000);
  ObjectInfo put = storage_->put_bytes("videos/v1/hls/720p/seg-00001.ts", data);
  EXPECT_EQ(put.size, 600000);
  EXPECT_EQ(fs::read_file(root_ + "/root/videos/v1/hls/720p/seg-00001.ts"), data);
  auto head = storage_->head("videos/v1/hls/720p/seg-00001.ts");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size, 600000);
  EXPECT_EQ(head->etag, put.etag);
  EXPECT_GT(head->last_modified, 1600000000);
  EXPECT_EQ(read_range("videos/v1/hls/720p/seg-00001.ts", 300000, 1000), data.substr(300000, 1000));
  EXPECT_EQ(read_range("videos/v1/hls/720p/seg-00001.ts", 599990, -1), data.substr(599990));
  EXPECT_EQ(read_range("videos/v1/hls/720p/seg-00001.ts", 0, -1), data);
  storage_->get_file("videos/v1/hls/720p/seg-00001.ts", root_ + "/copy.ts");
  EXPECT_EQ(fs::read_file(root_ + "/copy.ts"), data);
  // Replacing changes the ETag.
  ObjectInfo again = storage_->put_bytes("videos/v1/hls/720p/seg-00001.ts", "short");
  EXPECT_NE(again.etag, put.etag);
  EXPECT_EQ(read_range("videos/v1/hls/720p/seg-00001.ts", 0, -1), "short");
}

TEST_F(LocalStorageTest, PutFileCopiesThroughTemporaryName) {
  std::string data = pattern(3 << 20);
  fs::write_atomic(root_ + "/in.bin", data);
  storage_->put_file("videos/v2/source.mp4", root_ + "/in.bin");
  EXPECT_EQ(fs::read_file(root_ + "/root/videos/v2/source.mp4"), data);
  EXPECT_EQ(fs::list_dir(root_ + "/root/videos/v2"), std::vector<std::string>{"source.mp4"}); // no leftovers
  EXPECT_THROW(storage_->put_file("videos/v2/x", root_ + "/missing.bin"), Error);
}

TEST_F(LocalStorageTest, StreamingUploadAppearsOnlyWhenFinished) {
  auto upload = storage_->begin_upload("videos/v3/source.mkv");
  std::string data = pattern(1 << 20);
  upload->write(data.data(), 1000);
  upload->write(data.data() + 1000, data.size() - 1000);
  EXPECT_FALSE(storage_->head("videos/v3/source.mkv"));
  EXPECT_TRUE(storage_->list("videos/v3/").empty()) << "a file being written is not listed";
  ObjectInfo info = upload->finish();
  EXPECT_EQ(info.size, 1 << 20);
  EXPECT_EQ(fs::read_file(root_ + "/root/videos/v3/source.mkv"), data);

  auto aborted = storage_->begin_upload("videos/v4/source.mkv");
  aborted->write(data.data(), data.size());
  aborted->abort();
  EXPECT_FALSE(storage_->head("videos/v4/source.mkv"));
  EXPECT_TRUE(fs::list_dir(root_ + "/root/videos/v4").empty()) << "the temporary file is gone";
  { // dropped without finish: aborted too
    auto dropped = storage_->begin_upload("videos/v5/source.mkv");
    dropped->write("abc", 3);
  }
  EXPECT_TRUE(fs::list_dir(root_ + "/root/videos/v5").empty());
}

TEST_F(LocalStorageTest, ListAndDeletePrefix) {
  for (const char *key : {"videos/a/hls/master.m3u8", "videos/a/hls/720p/seg-1.ts", "videos/a/poster.jpg",
                          "videos/ab/poster.jpg", "videos/b/poster.jpg"})
    storage_->put_bytes(key, key);
  auto keys = [](const std::vector<ObjectInfo> &list) {
    std::vector<std::string> out;
    for (const auto &o : list)
      out.push_back(o.key);
    return out;
  };
  EXPECT_EQ(
      keys(storage_->list("videos/a/")),
      (std::vector<std::string>{"videos/a/hls/720p/seg-1.ts", "videos/a/hls/master.m3u8", "videos/a/poster.jpg"}));
  EXPECT_EQ(keys(storage_->list("videos/a")).size(), 4u) << "a partial name matches videos/ab too";
  EXPECT_EQ(storage_->list("videos/a/")[2].size, 19);
  EXPECT_EQ(keys(storage_->list("")).size(), 5u);
  EXPECT_TRUE(storage_->list("nothing/").empty());

  EXPECT_EQ(storage_->remove_prefix("videos/a/"), 3u);
  EXPECT_EQ(keys(storage_->list("")), (std::vector<std::string>{"videos/ab/poster.jpg", "videos/b/poster.jpg"}));
  EXPECT_FALSE(fs::exists(root_ + "/root/videos/a")) << "emptied folders are removed";
  storage_->remove("videos/b/poster.jpg");
  storage_->remove("videos/b/poster.jpg"); // missing: no error
  storage_->remove("videos/ab/poster.jpg");
  EXPECT_TRUE(fs::is_dir(root_ + "/root/videos")) << "the root's own folders stay";
}

TEST_F(LocalStorageTest, MissingKeysAndBadKeys) {
  EXPECT_FALSE(storage_->head("videos/none/x.ts"));
  try {
    read_range("videos/none/x.ts", 0, -1);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
  try {
    storage_->get_file("videos/none/x.ts", root_ + "/out");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
  }
  EXPECT_FALSE(fs::exists(root_ + "/out"));
  for (const char *bad : {"", "/abs", "a//b", "../x", "a/../../x", "a/./b", "a/", "a\\b"}) {
    EXPECT_THROW(storage_->put_bytes(bad, "x"), Error) << bad;
    EXPECT_THROW(storage_->head(bad), Error) << bad;
  }
  EXPECT_THROW(storage_->list("../"), Error);
  EXPECT_THROW(storage_->presign_get("videos/a", std::chrono::seconds(60)), Error);
}

TEST_F(LocalStorageTest, OpenChoosesTheBackend) {
  Settings s;
  auto local = open(s, root_ + "/data");
  EXPECT_EQ(local->describe(), "file://" + root_ + "/data");
  s.url = "file://" + root_ + "/media";
  EXPECT_EQ(open(s, root_ + "/data")->describe(), "file://" + root_ + "/media");
  s = Settings{"s3://bucket/site", "http://127.0.0.1:9", "eu-west-1", "AK", "SECRET"};
  auto s3 = open(s, root_ + "/data");
  EXPECT_EQ(s3->describe(), "s3://bucket/site/ at http://127.0.0.1:9");
  EXPECT_EQ(s3->describe().find("SECRET"), std::string::npos);
  EXPECT_EQ(content_type_for("a/master.m3u8"), "application/vnd.apple.mpegurl");
  EXPECT_EQ(content_type_for("a/seg.ts"), "video/mp2t");
  EXPECT_EQ(content_type_for("a/manifest.mpd"), "application/dash+xml");
  EXPECT_EQ(content_type_for("a/x.bin"), "application/octet-stream");
}

namespace {

// A LocalStorage that remembers the order of the keys put into it (every call goes to the real folder).
class OrderedLocal : public LocalStorage {
public:
  using LocalStorage::LocalStorage;
  ObjectInfo put_file(const std::string &key, const std::string &path, const std::string &content_type) override {
    order.push_back(key);
    return LocalStorage::put_file(key, path, content_type);
  }
  std::vector<std::string> order;
};

} // namespace

// A package folder: every file under the prefix, equal to its source; the renditions' playlists after every segment,
// the master playlist and the manifest last.
TEST_F(LocalStorageTest, PublishDirWritesPlaylistsLast) {
  std::string pkg = root_ + "/pkg";
  for (const char *f : {"720p/seg-00001.m4s", "720p/init.mp4", "720p/index.m3u8", "360p/seg-00001.m4s",
                        "360p/index.m3u8", "master.m3u8", "manifest.mpd", "audio/seg-00001.m4s"}) {
    fs::make_dirs(pkg + "/" + std::string(f).substr(0, std::string(f).rfind('/') + 1));
    fs::write_atomic(pkg + "/" + f, std::string("bytes of ") + f);
  }
  OrderedLocal out(root_ + "/bucket");
  std::vector<std::string> written = publish_dir(out, pkg, "videos/v9/cmaf-v2/");
  EXPECT_EQ(written, out.order);
  EXPECT_EQ(written,
            (std::vector<std::string>{"videos/v9/cmaf-v2/360p/seg-00001.m4s", "videos/v9/cmaf-v2/720p/init.mp4",
                                      "videos/v9/cmaf-v2/720p/seg-00001.m4s", "videos/v9/cmaf-v2/audio/seg-00001.m4s",
                                      "videos/v9/cmaf-v2/360p/index.m3u8", "videos/v9/cmaf-v2/720p/index.m3u8",
                                      "videos/v9/cmaf-v2/manifest.mpd", "videos/v9/cmaf-v2/master.m3u8"}));
  for (const auto &key : written) {
    std::string content;
    out.get_range(key, 0, -1, [&content](const char *d, std::size_t n) { content.append(d, n); });
    EXPECT_EQ(content, "bytes of " + key.substr(std::string("videos/v9/cmaf-v2/").size()));
  }
  EXPECT_THROW(publish_dir(out, pkg, "videos/v9"), Error) << "a prefix ends with '/'";
  EXPECT_THROW(publish_dir(out, root_ + "/missing", "videos/v9/"), Error);
}
