// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of file serving: path safety, MIME types, Range parsing, and serve_file through a real SoupServer.

#include "core/error.h"
#include "core/fs.h"
#include "http/files.h"

#include <arpa/inet.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gtest/gtest.h>
#include <libsoup/soup.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "media.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using sluice::Error;
using sluice::ErrorCode;
using sluice::test::contains;
using sluice::test::TempDir;
using namespace sluice::http;
namespace fs = sluice::fs;

using Segments = std::vector<std::string>;

void write_file(const std::string &path, const std::string &data) {
  ASSERT_TRUE(g_file_set_contents(path.c_str(), data.data(), static_cast<gssize>(data.size()), nullptr)) << path;
}

TEST(Join, AsFilesystemPathsDo) {
  for (const auto &[a, b] : std::vector<std::pair<std::string, std::string>>{{"/data", "videos"},
                                                                             {"/data/", "videos"},
                                                                             {"", "x"},
                                                                             {"x", ""},
                                                                             {"/data", "/abs"},
                                                                             {"rel", "a/b"},
                                                                             {"/", "x"}}) {
    EXPECT_EQ(sluice::fs::join(a, b), (std::filesystem::path(a) / b).string()) << a << " + " << b;
  }
}

TEST(SplitPath, Decodes) {
  EXPECT_EQ(split_path("hls/720p%5f00001.ts"), (Segments{"hls", "720p_00001.ts"}));
  EXPECT_EQ(split_path("a"), (Segments{"a"}));
  EXPECT_EQ(split_path("a%20b/c+d/%e2%82%AC"), (Segments{"a b", "c+d", "\xe2\x82\xac"}));
  EXPECT_EQ(split_path("..."), (Segments{"..."}));
  EXPECT_EQ(split_path(".hidden/a..b"), (Segments{".hidden", "a..b"}));
}

TEST(SplitPath, Rejects) {
  for (const char *bad :
       {"",      "/",       "/etc/passwd", "a//b",  "a/",           "/a",        ".",     "..",    "a/../b",
        "a/./b", "%2e%2e",  "%2E%2e/x",    "a/%2e", "%2e%2e%2fetc", "%2E%2e%2f", "a%2Fb", "a%2fb", "a%5cb",
        "a\\b",  "..%5c..", "a%00b",       "%",     "a%2",          "a%zz",      "a%%20"})
    EXPECT_FALSE(split_path(bad).has_value()) << bad;
}

class ResolveUnder : public ::testing::Test {
protected:
  void SetUp() override {
    root_ = dir_.file("root");
    ASSERT_EQ(g_mkdir_with_parents((root_ + "/hls/sub").c_str(), 0755), 0);
    write_file(root_ + "/hls/a.ts", "segment");
    write_file(dir_.file("secret.txt"), "outside");
  }
  TempDir dir_;
  std::string root_;
};

TEST_F(ResolveUnder, FindsRegularFiles) {
  auto r = fs::resolve_under(root_, {"hls", "a.ts"});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(contains(*r, "/root/hls/a.ts")) << *r;
  EXPECT_EQ(sluice::test::read_text(*r), "segment");
  // A root given with a trailing slash or through a symlink works the same.
  EXPECT_TRUE(fs::resolve_under(root_ + "/", {"hls", "a.ts"}).has_value());
  ASSERT_EQ(symlink(root_.c_str(), dir_.file("rootlink").c_str()), 0);
  EXPECT_TRUE(fs::resolve_under(dir_.file("rootlink"), {"hls", "a.ts"}).has_value());
}

TEST_F(ResolveUnder, RefusesEscapesAndNonFiles) {
  EXPECT_FALSE(fs::resolve_under(root_, {"..", "secret.txt"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"hls", "..", "..", "secret.txt"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"/etc/passwd"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"", "etc", "passwd"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"..\\secret.txt"}));
  EXPECT_FALSE(fs::resolve_under(root_, {std::string("a.ts\0x", 6)}));
  EXPECT_FALSE(fs::resolve_under(root_, {}));
  EXPECT_FALSE(fs::resolve_under(root_, {"hls"}));        // a directory
  EXPECT_FALSE(fs::resolve_under(root_, {"hls", "sub"})); // a directory
  EXPECT_FALSE(fs::resolve_under(root_, {"hls", "missing.ts"}));
  EXPECT_FALSE(fs::resolve_under(dir_.file("no-such-root"), {"a.ts"}));
  // Decoded traversal attempts never get this far, but are refused here too.
  for (const char *enc : {"%2e%2e/secret.txt", "%2E%2e%2fsecret.txt", "hls/%2e%2e/%2e%2e/secret.txt"})
    EXPECT_FALSE(split_path(enc).has_value()) << enc;
}

TEST_F(ResolveUnder, Symlinks) {
  ASSERT_EQ(symlink("/etc/passwd", (root_ + "/passwd").c_str()), 0);
  ASSERT_EQ(symlink(dir_.file("secret.txt").c_str(), (root_ + "/secret").c_str()), 0);
  ASSERT_EQ(symlink("../..", (root_ + "/hls/up").c_str()), 0);
  ASSERT_EQ(symlink("hls/a.ts", (root_ + "/inside.ts").c_str()), 0);
  ASSERT_EQ(symlink("hls", (root_ + "/hlslink").c_str()), 0);
  EXPECT_FALSE(fs::resolve_under(root_, {"passwd"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"secret"}));
  EXPECT_FALSE(fs::resolve_under(root_, {"hls", "up", "secret.txt"}));
  auto in = fs::resolve_under(root_, {"inside.ts"});
  ASSERT_TRUE(in.has_value());
  EXPECT_TRUE(contains(*in, "/root/hls/a.ts")) << *in; // the real path
  EXPECT_TRUE(fs::resolve_under(root_, {"hlslink", "a.ts"}).has_value());
  // A sibling folder whose name starts with the root's is not inside it.
  ASSERT_EQ(g_mkdir_with_parents(dir_.file("rootx").c_str(), 0755), 0);
  write_file(dir_.file("rootx/f.ts"), "x");
  ASSERT_EQ(symlink("../rootx/f.ts", (root_ + "/sibling.ts").c_str()), 0);
  EXPECT_FALSE(fs::resolve_under(root_, {"sibling.ts"}));
}

TEST(MimeType, ByExtension) {
  EXPECT_STREQ(mime_type_for("index.m3u8"), "application/vnd.apple.mpegurl");
  EXPECT_STREQ(mime_type_for("a/720p_00001.ts"), "video/mp2t");
  EXPECT_STREQ(mime_type_for("seg.m4s"), "video/iso.segment");
  EXPECT_STREQ(mime_type_for("x.mp4"), "video/mp4");
  EXPECT_STREQ(mime_type_for("x.M4A"), "audio/mp4");
  EXPECT_STREQ(mime_type_for("manifest.mpd"), "application/dash+xml");
  EXPECT_STREQ(mime_type_for("p.jpg"), "image/jpeg");
  EXPECT_STREQ(mime_type_for("p.JPEG"), "image/jpeg");
  EXPECT_STREQ(mime_type_for("p.png"), "image/png");
  EXPECT_STREQ(mime_type_for("p.webp"), "image/webp");
  EXPECT_STREQ(mime_type_for("s.vtt"), "text/vtt");
  EXPECT_STREQ(mime_type_for("j.json"), "application/json");
  EXPECT_STREQ(mime_type_for("index.html"), "text/html; charset=utf-8");
  EXPECT_STREQ(mime_type_for("app.js"), "text/javascript");
  EXPECT_STREQ(mime_type_for("s.css"), "text/css");
  EXPECT_STREQ(mime_type_for("i.svg"), "image/svg+xml");
  EXPECT_STREQ(mime_type_for("README"), "application/octet-stream");
  EXPECT_STREQ(mime_type_for("a.ts/README"), "application/octet-stream");
  EXPECT_STREQ(mime_type_for("x.bin"), "application/octet-stream");
  EXPECT_STREQ(mime_type_for("x."), "application/octet-stream");
}

TEST(ParseRange, Table) {
  struct Case {
    const char *header;
    std::int64_t size;
    RangeKind kind;
    std::int64_t start, end;
  };
  const Case cases[] = {
      {"bytes=0-0", 100, RangeKind::Satisfiable, 0, 0},
      {"bytes=0-99", 100, RangeKind::Satisfiable, 0, 99},
      {"bytes=10-19", 100, RangeKind::Satisfiable, 10, 19},
      {"bytes=5-", 100, RangeKind::Satisfiable, 5, 99},
      {"bytes=-5", 100, RangeKind::Satisfiable, 95, 99},
      {"bytes=-500", 100, RangeKind::Satisfiable, 0, 99}, // longer suffix: the whole file
      {"bytes=90-500", 100, RangeKind::Satisfiable, 90, 99},
      {"bytes=99-99999999999999999999999", 100, RangeKind::Satisfiable, 99, 99},
      {"Bytes = 1-2 ", 100, RangeKind::Satisfiable, 1, 2},
      {"bytes=100-", 100, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=100-200", 100, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=99999999999999999999999-", 100, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=-0", 100, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=0-", 0, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=0-0", 0, RangeKind::Unsatisfiable, 0, 0},
      {"bytes=-5", 0, RangeKind::None, 0, 0}, // the whole (empty) file
      {"bytes=5-2", 100, RangeKind::None, 0, 0},
      {"bytes=0-1,4-5", 100, RangeKind::None, 0, 0},
      {"bytes=0-1, 200-300", 100, RangeKind::None, 0, 0},
      {"bytes=", 100, RangeKind::None, 0, 0},
      {"bytes=-", 100, RangeKind::None, 0, 0},
      {"bytes=a-b", 100, RangeKind::None, 0, 0},
      {"bytes=1-2-3", 100, RangeKind::None, 0, 0},
      {"bytes=+1-2", 100, RangeKind::None, 0, 0},
      {"bytes=-+1", 100, RangeKind::None, 0, 0},
      {"items=0-5", 100, RangeKind::None, 0, 0},
      {"bytes 0-5", 100, RangeKind::None, 0, 0},
      {"", 100, RangeKind::None, 0, 0},
      {"garbage", 100, RangeKind::None, 0, 0},
  };
  for (const auto &c : cases) {
    ByteRange r{-1, -1};
    RangeKind kind = parse_range(c.header, c.size, r);
    EXPECT_EQ(kind, c.kind) << c.header << " size " << c.size;
    if (kind == RangeKind::Satisfiable && c.kind == RangeKind::Satisfiable) {
      EXPECT_EQ(r.start, c.start) << c.header;
      EXPECT_EQ(r.end, c.end) << c.header;
    }
  }
}

// A SoupServer on 127.0.0.1 (any port) running its own main context in a thread. Requests for /missing*
// call serve_file on a path that does not exist; /body/NAME serves a fixed text; others map into root.
class TestServer {
public:
  explicit TestServer(std::string root) : root_(std::move(root)) {
    std::promise<int> port;
    auto ready = port.get_future();
    thread_ = std::thread([this, &port] { run(port); });
    port_ = ready.get();
  }
  ~TestServer() {
    g_main_context_invoke(context_, quit_cb, this);
    thread_.join();
  }
  TestServer(const TestServer &) = delete;
  TestServer &operator=(const TestServer &) = delete;
  int port() const { return port_; }
  std::string url(const std::string &path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  ServeOptions options;    // used for every request (set before requests)
  std::string served_body; // the text for /body/...
  ErrorCode missing_code = ErrorCode::Internal;
  std::string missing_message;

private:
  static gboolean quit_cb(gpointer self) {
    g_main_loop_quit(static_cast<TestServer *>(self)->loop_);
    return G_SOURCE_REMOVE;
  }

  static void handle(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer self_) {
    auto *self = static_cast<TestServer *>(self_);
    // The path as sent, still percent-encoded.
    std::string raw = g_uri_get_path(soup_server_message_get_uri(msg));
    std::string tail = raw.size() > 1 ? raw.substr(1) : "";
    ServeOptions opts = self->options;
    try {
      if (tail.rfind("missing", 0) == 0) {
        serve_file(msg, self->root_ + "/does-not-exist.ts", opts);
        return;
      }
      if (tail.rfind("body/", 0) == 0) {
        opts.body = self->served_body;
        serve_file(msg, tail.substr(5), opts);
        return;
      }
      auto segments = split_path(tail);
      auto file = segments ? fs::resolve_under(self->root_, *segments) : std::nullopt;
      if (!file) {
        soup_server_message_set_status(msg, SOUP_STATUS_NOT_FOUND, nullptr);
        return;
      }
      serve_file(msg, *file, opts);
    } catch (const Error &e) {
      self->missing_code = e.code();
      self->missing_message = e.what();
      soup_server_message_set_status(msg, SOUP_STATUS_NOT_FOUND, nullptr);
    }
  }

  void run(std::promise<int> &port) {
    context_ = g_main_context_new();
    g_main_context_push_thread_default(context_);
    loop_ = g_main_loop_new(context_, FALSE);
    SoupServer *server = soup_server_new("server-header", "sluice-test", nullptr);
    soup_server_add_handler(server, nullptr, handle, this, nullptr);
    GError *err = nullptr;
    int p = 0;
    if (soup_server_listen_local(server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &err)) {
      GSList *uris = soup_server_get_uris(server);
      if (uris)
        p = g_uri_get_port(static_cast<GUri *>(uris->data));
      g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
    } else {
      ADD_FAILURE() << "listen: " << err->message;
      g_clear_error(&err);
    }
    port.set_value(p);
    if (p > 0)
      g_main_loop_run(loop_);
    soup_server_disconnect(server);
    g_object_unref(server);
    // Let the disconnected connections finish closing.
    while (g_main_context_iteration(context_, FALSE)) {
    }
    g_main_loop_unref(loop_);
    g_main_context_pop_thread_default(context_);
    g_main_context_unref(context_);
  }

  std::string root_;
  std::thread thread_;
  int port_ = 0;
  GMainContext *context_ = nullptr;
  GMainLoop *loop_ = nullptr;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers; // lower-case names
  std::string body;
  bool has(const std::string &name) const { return headers.count(name) > 0; }
  std::string get(const std::string &name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A raw HTTP/1.1 client connection: several requests on one socket, responses read by Content-Length.
class Connection {
public:
  explicit Connection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
  }
  ~Connection() { close(fd_); }
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;
  bool ok() const { return ok_; }

  // Sends METHOD path with extra header lines ("Name: value") and reads the response.
  std::optional<Response> request(const std::string &method, const std::string &path,
                                  const std::vector<std::string> &headers = {}) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto &h : headers)
      req += h + "\r\n";
    req += "\r\n";
    if (send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
      return std::nullopt;
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill())
        return std::nullopt;
    Response r;
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    std::size_t eol = head.find("\r\n");
    std::string status_line = head.substr(0, eol);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0)
      return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (eol != std::string::npos) {
      std::size_t next = head.find("\r\n", eol + 2);
      std::string line = head.substr(eol + 2, next == std::string::npos ? std::string::npos : next - eol - 2);
      eol = next;
      std::size_t colon = line.find(':');
      if (colon == std::string::npos)
        continue;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](char c) { return g_ascii_tolower(c); });
      std::size_t v = line.find_first_not_of(' ', colon + 1);
      EXPECT_EQ(r.headers.count(name), 0u) << "repeated header " << name;
      r.headers[name] = v == std::string::npos ? "" : line.substr(v);
    }
    std::size_t length = 0;
    if (method != "HEAD" && r.status != 304 && r.status != 204)
      length = std::stoul(r.get("content-length").empty() ? "0" : r.get("content-length"));
    while (buf_.size() < length)
      if (!fill())
        return std::nullopt;
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // Bytes the server sent beyond the responses read so far (waits briefly).
  std::string extra_bytes() {
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    fill();
    return buf_;
  }

private:
  bool fill() {
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0)
      return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
};

std::string binary_data(std::size_t n) {
  std::string d(n, '\0');
  for (std::size_t i = 0; i < n; i++)
    d[i] = static_cast<char>((i * 7919 + i / 256) & 0xff);
  return d;
}

class ServeFile : public ::testing::Test {
protected:
  void SetUp() override {
    data_ = binary_data(100000);
    ASSERT_EQ(g_mkdir_with_parents(dir_.file("www/sub").c_str(), 0755), 0);
    write_file(dir_.file("www/seg.ts"), data_);
    write_file(dir_.file("www/empty.m3u8"), "");
    write_file(dir_.file("secret.txt"), "outside");
    server_.emplace(dir_.file("www"));
    server_->options.cache_control = "public, max-age=60";
    conn_.emplace(server_->port());
    ASSERT_TRUE(conn_->ok());
  }
  Response get(const std::string &path, const std::vector<std::string> &headers = {}, const char *method = "GET") {
    auto r = conn_->request(method, path, headers);
    EXPECT_TRUE(r.has_value()) << method << " " << path;
    return r ? *r : Response{};
  }
  TempDir dir_;
  std::string data_;
  std::optional<TestServer> server_;
  std::optional<Connection> conn_;
};

TEST_F(ServeFile, Get) {
  auto r = get("/seg.ts");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.get("content-type"), "video/mp2t");
  EXPECT_EQ(r.get("content-length"), "100000");
  EXPECT_EQ(r.get("accept-ranges"), "bytes");
  EXPECT_EQ(r.get("cache-control"), "public, max-age=60");
  EXPECT_FALSE(r.has("content-range"));
  EXPECT_TRUE(contains(r.get("last-modified"), " GMT")) << r.get("last-modified");
  std::string etag = r.get("etag");
  EXPECT_GT(etag.size(), 2u);
  EXPECT_EQ(etag.front(), '"');
  EXPECT_EQ(etag.back(), '"');
  EXPECT_TRUE(r.body == data_) << "body differs";
  // The same file gives the same ETag; another file (or a rewritten one) another.
  EXPECT_EQ(get("/seg.ts").get("etag"), etag);
  auto e = get("/empty.m3u8");
  EXPECT_EQ(e.status, 200);
  EXPECT_EQ(e.get("content-length"), "0");
  EXPECT_EQ(e.get("content-type"), "application/vnd.apple.mpegurl");
  EXPECT_NE(e.get("etag"), etag);
  g_usleep(20000);
  write_file(dir_.file("www/seg.ts"), data_);
  EXPECT_NE(get("/seg.ts").get("etag"), etag);
}

TEST_F(ServeFile, Head) {
  auto r = get("/seg.ts", {}, "HEAD");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.get("content-length"), "100000");
  EXPECT_EQ(r.get("content-type"), "video/mp2t");
  EXPECT_EQ(r.get("accept-ranges"), "bytes");
  EXPECT_TRUE(r.has("etag"));
  EXPECT_TRUE(r.body.empty());
  // HEAD ignores Range (RFC 9110 14.2).
  r = get("/seg.ts", {"Range: bytes=0-9"}, "HEAD");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.get("content-length"), "100000");
  EXPECT_FALSE(r.has("content-range"));
  r = get("/empty.m3u8", {}, "HEAD");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.get("content-length"), "0");
  // No body bytes followed the HEAD responses: the next response parses on the same connection.
  r = get("/seg.ts", {"Range: bytes=0-3"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, data_.substr(0, 4));
  EXPECT_EQ(conn_->extra_bytes(), "");
}

TEST_F(ServeFile, Ranges) {
  auto r = get("/seg.ts", {"Range: bytes=10-19"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.get("content-range"), "bytes 10-19/100000");
  EXPECT_EQ(r.get("content-length"), "10");
  EXPECT_EQ(r.get("content-type"), "video/mp2t");
  EXPECT_TRUE(r.has("etag"));
  EXPECT_TRUE(r.body == data_.substr(10, 10));
  r = get("/seg.ts", {"Range: bytes=-5"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.get("content-range"), "bytes 99995-99999/100000");
  EXPECT_TRUE(r.body == data_.substr(99995));
  r = get("/seg.ts", {"Range: bytes=99990-"});
  EXPECT_EQ(r.status, 206);
  EXPECT_TRUE(r.body == data_.substr(99990));
  r = get("/seg.ts", {"Range: bytes=0-999999999"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.get("content-range"), "bytes 0-99999/100000");
  EXPECT_TRUE(r.body == data_);
  r = get("/seg.ts", {"Range: bytes=0-0"});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, data_.substr(0, 1));
}

TEST_F(ServeFile, Unsatisfiable) {
  auto r = get("/seg.ts", {"Range: bytes=100000-"});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.get("content-range"), "bytes */100000");
  // Like every error of the server: a JSON body, not cached.
  EXPECT_EQ(r.get("content-type"), "application/json");
  EXPECT_EQ(r.get("content-length"), std::to_string(r.body.size()));
  EXPECT_NE(r.body.find("\"code\":\"range_not_satisfiable\""), std::string::npos) << r.body;
  EXPECT_EQ(r.get("cache-control"), "no-store");
  r = get("/empty.m3u8", {"Range: bytes=0-"});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.get("content-range"), "bytes */0");
  EXPECT_EQ(get("/seg.ts").status, 200); // the connection is still usable
}

// libsoup's SoupServer applies Range itself to 200 GET responses (multipart/byteranges for several ranges);
// serve_file must keep the 200 it decided on.
TEST_F(ServeFile, IgnoredRangesGiveTheWholeFile) {
  for (const char *range : {"Range: bytes=0-1,4-5", "Range: bytes=5-2", "Range: bytes=x-y", "Range: items=0-5"}) {
    auto r = get("/seg.ts", {range});
    EXPECT_EQ(r.status, 200) << range;
    EXPECT_FALSE(r.has("content-range")) << range;
    EXPECT_EQ(r.get("content-type"), "video/mp2t") << range;
    EXPECT_EQ(r.get("content-length"), "100000") << range;
    EXPECT_TRUE(r.body == data_) << range;
  }
}

TEST_F(ServeFile, NotModified) {
  std::string etag = get("/seg.ts").get("etag");
  std::string last_modified = get("/seg.ts").get("last-modified");
  for (const std::string &inm : {etag, "\"other\", W/" + etag, std::string("*"), "W/\"x\" ," + etag}) {
    auto r = get("/seg.ts", {"If-None-Match: " + inm});
    EXPECT_EQ(r.status, 304) << inm;
    EXPECT_EQ(r.get("etag"), etag);
    EXPECT_EQ(r.get("cache-control"), "public, max-age=60");
    EXPECT_TRUE(r.body.empty());
    EXPECT_TRUE(r.get("content-length") == "" || r.get("content-length") == "100000") << r.get("content-length");
  }
  // A 304 wins over Range; HEAD gets 304 too.
  EXPECT_EQ(get("/seg.ts", {"If-None-Match: " + etag, "Range: bytes=0-5"}).status, 304);
  EXPECT_EQ(get("/seg.ts", {"If-None-Match: " + etag}, "HEAD").status, 304);
  // Other tags: the full response.
  auto r = get("/seg.ts", {"If-None-Match: \"nope\", W/\"nope2\""});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == data_);
  // If-Modified-Since, only without If-None-Match.
  EXPECT_EQ(get("/seg.ts", {"If-Modified-Since: " + last_modified}).status, 304);
  EXPECT_EQ(get("/seg.ts", {"If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT"}).status, 200);
  EXPECT_EQ(get("/seg.ts", {"If-None-Match: \"nope\"", "If-Modified-Since: " + last_modified}).status, 200);
  EXPECT_EQ(conn_->extra_bytes(), "");
}

TEST_F(ServeFile, IfRange) {
  auto first = get("/seg.ts");
  std::string etag = first.get("etag");
  auto r = get("/seg.ts", {"Range: bytes=10-19", "If-Range: \"stale\""});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.has("content-range"));
  EXPECT_TRUE(r.body == data_);
  r = get("/seg.ts", {"Range: bytes=10-19", "If-Range: W/" + etag}); // weak tags never match
  EXPECT_EQ(r.status, 200);
  r = get("/seg.ts", {"Range: bytes=10-19", "If-Range: Sat, 01 Jan 2000 00:00:00 GMT"});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == data_);
  r = get("/seg.ts", {"Range: bytes=10-19", "If-Range: " + etag});
  EXPECT_EQ(r.status, 206);
  EXPECT_TRUE(r.body == data_.substr(10, 10));
  r = get("/seg.ts", {"Range: bytes=10-19", "If-Range: " + first.get("last-modified")});
  EXPECT_EQ(r.status, 206);
  // A mismatching If-Range with an unsatisfiable range: the whole file, not 416.
  r = get("/seg.ts", {"Range: bytes=200000-", "If-Range: \"stale\""});
  EXPECT_EQ(r.status, 200);
}

TEST_F(ServeFile, Body) {
  server_->served_body = "#EXTM3U\n#EXT-X-VERSION:3\nrewritten\n";
  server_->options.cache_control = "no-cache";
  auto r = get("/body/index.m3u8");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, server_->served_body);
  EXPECT_EQ(r.get("content-type"), "application/vnd.apple.mpegurl");
  EXPECT_EQ(r.get("cache-control"), "no-cache");
  EXPECT_FALSE(r.has("last-modified"));
  std::string etag = r.get("etag");
  EXPECT_EQ(etag.front(), '"');
  EXPECT_EQ(get("/body/index.m3u8", {"If-None-Match: " + etag}).status, 304);
  r = get("/body/index.m3u8", {"Range: bytes=0-6", "If-Range: " + etag});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, "#EXTM3U");
  r = get("/body/index.m3u8", {}, "HEAD");
  EXPECT_EQ(r.get("content-length"), std::to_string(server_->served_body.size()));
  server_->served_body += "#EXT-X-ENDLIST\n";
  r = get("/body/index.m3u8", {"If-None-Match: " + etag});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.get("etag"), etag);
  EXPECT_EQ(r.body, server_->served_body);
}

TEST_F(ServeFile, KeepAliveAcrossManyRequests) {
  std::string etag;
  for (int i = 0; i < 3; i++) {
    auto r = get("/seg.ts");
    ASSERT_EQ(r.status, 200);
    etag = r.get("etag");
    EXPECT_EQ(get("/seg.ts", {}, "HEAD").status, 200);
    EXPECT_EQ(get("/seg.ts", {"Range: bytes=1-2"}).body, data_.substr(1, 2));
    EXPECT_EQ(get("/seg.ts", {"If-None-Match: " + etag}).status, 304);
    EXPECT_EQ(get("/seg.ts", {"Range: bytes=999999-"}).status, 416);
    EXPECT_EQ(get("/nope.ts").status, 404);
  }
  EXPECT_EQ(conn_->extra_bytes(), "");
}

TEST_F(ServeFile, TraversalAndErrors) {
  // libsoup removes dot segments itself (even encoded ones) or answers 400; what is left is refused by
  // split_path / resolve_under: never the file outside the root.
  for (const char *path : {"/../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2e%2fsecret.txt", "/sub/..%2fsecret.txt",
                           "/sub/%2e%2e%2f%2e%2e%2fsecret.txt", "/sub", "/%2fetc%2fpasswd", "/sub/..%5csecret.txt"}) {
    auto r = get(path);
    EXPECT_TRUE(r.status == 404 || r.status == 400) << path << " " << r.status;
    EXPECT_NE(r.body, "outside") << path;
  }
  EXPECT_EQ(get("/missing").status, 404);
  EXPECT_EQ(server_->missing_code, ErrorCode::NotFound);
  EXPECT_TRUE(contains(server_->missing_message, "does-not-exist.ts")) << server_->missing_message;
  auto r = get("/seg.ts", {"Content-Length: 0"}, "POST");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.get("allow"), "GET, HEAD");
}

// The same through curl, an independent client: ranges, HEAD, and connection reuse.
TEST_F(ServeFile, Curl) {
  if (!sluice::test::have_program("curl"))
    GTEST_SKIP() << "curl is not installed";
  const std::string out = dir_.file("out.bin");
  auto c = sluice::test::run_command(
      {"curl", "-sS", "--http1.1", "-r", "10-19", "-o", out, "-w", "%{http_code}", server_->url("/seg.ts")}, 30);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "206");
  EXPECT_TRUE(sluice::test::read_text(out) == data_.substr(10, 10));
  c = sluice::test::run_command({"curl", "-sS", "--http1.1", "-I", server_->url("/seg.ts")}, 30);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "HTTP/1.1 200")) << c.out;
  EXPECT_TRUE(contains(c.out, "Content-Length: 100000")) << c.out;
  c = sluice::test::run_command({"curl", "-sS", "-v", "--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-o",
                                 "/dev/null", "-r", "0-99", server_->url("/seg.ts"), server_->url("/empty.m3u8"),
                                 server_->url("/seg.ts")},
                                30);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(sluice::test::count(c.err, "using existing connection"), 2) << c.err;
  c = sluice::test::run_command(
      {"curl", "-sS", "--http1.1", "-o", out, "-w", "%{http_code}", "-r", "0-1,4-5", server_->url("/seg.ts")}, 30);
  EXPECT_EQ(c.out, "200");
  EXPECT_TRUE(sluice::test::read_text(out) == data_);
}

} // namespace

// The cache of small files: contents checked against the file on every use, bounded, no symlinks.
TEST(FileCacheTest, ServesCurrentContents) {
  TempDir dir;
  FileCache cache(1000, 300);
  std::string a = dir.file("a.m3u8");
  write_file(a, "first");
  auto e1 = cache.get(a);
  ASSERT_TRUE(e1);
  EXPECT_EQ(std::string(static_cast<const char *>(g_bytes_get_data(e1->bytes, nullptr)), 5), "first");
  EXPECT_EQ(cache.get(a), e1) << "an unchanged file comes from memory";
  // g_file_set_contents replaces the file (new inode): the cache must see it.
  write_file(a, "second, longer");
  auto e2 = cache.get(a);
  EXPECT_NE(e2, e1);
  EXPECT_EQ(std::string(static_cast<const char *>(g_bytes_get_data(e2->bytes, nullptr)), e2->size), "second, longer");
  EXPECT_NE(e2->etag, e1->etag);
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), 14u);
}

TEST(FileCacheTest, BoundedAndLeastRecentlyUsedFirst) {
  TempDir dir;
  FileCache cache(1000, 300);
  write_file(dir.file("big.ts"), std::string(301, 'x'));
  EXPECT_EQ(cache.get(dir.file("big.ts")), nullptr) << "larger than max_file_bytes: not cached";
  for (int i = 0; i < 5; ++i)
    write_file(dir.file(std::to_string(i) + ".ts"), std::string(250, static_cast<char>('a' + i)));
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(cache.get(dir.file(std::to_string(i) + ".ts")));
  EXPECT_EQ(cache.bytes(), 1000u);
  auto first = cache.get(dir.file("0.ts")); // 0 becomes the most recent; 1 is now the oldest
  ASSERT_TRUE(cache.get(dir.file("4.ts")));
  EXPECT_LE(cache.bytes(), 1000u);
  EXPECT_EQ(cache.entries(), 4u);
  EXPECT_EQ(cache.get(dir.file("0.ts")), first) << "recently used entries stay";
}

TEST(FileCacheTest, RefusesSymlinksAndMissingFiles) {
  TempDir dir;
  FileCache cache;
  write_file(dir.file("real.ts"), "data");
  ASSERT_EQ(symlink(dir.file("real.ts").c_str(), dir.file("link.ts").c_str()), 0);
  Error e = sluice::test::expect_error([&] { cache.get(dir.file("link.ts")); });
  EXPECT_EQ(e.code(), ErrorCode::NotFound);
  e = sluice::test::expect_error([&] { cache.get(dir.file("missing.ts")); });
  EXPECT_EQ(e.code(), ErrorCode::NotFound);
  ASSERT_TRUE(cache.get(dir.file("real.ts")));
  ASSERT_EQ(unlink(dir.file("real.ts").c_str()), 0);
  e = sluice::test::expect_error([&] { cache.get(dir.file("real.ts")); });
  EXPECT_EQ(e.code(), ErrorCode::NotFound) << "a removed file is forgotten, not served";
  EXPECT_EQ(cache.entries(), 0u);
}

TEST_F(ServeFile, FromTheCache) {
  FileCache cache;
  server_->options.cache = &cache; // used only by the server's thread
  for (int round = 0; round < 2; ++round) {
    auto r = get("/seg.ts");
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.body == data_);
    std::string etag = r.get("etag");
    r = get("/seg.ts", {"Range: bytes=10-19"});
    EXPECT_EQ(r.status, 206);
    EXPECT_EQ(r.body, data_.substr(10, 10));
    r = get("/seg.ts", {"If-None-Match: " + etag});
    EXPECT_EQ(r.status, 304);
  }
  write_file(dir_.file("www/seg.ts"), "replaced");
  auto r = get("/seg.ts");
  EXPECT_EQ(r.body, "replaced");
}
