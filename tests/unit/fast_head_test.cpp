// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the fast path's reading of a request head (read_fast_head): what it offers, what it leaves to libsoup
// whole, and that it ends a head where libsoup would; and answer_file's descriptor for sendfile().

#include "http/connections.h"
#include "http/files.h"

#include <gtest/gtest.h>
#include <libsoup/soup.h>
#include <sys/stat.h>
#include <unistd.h>

#include "media.h"

#include <string>
#include <vector>

namespace {

using namespace sluice::http;
using sluice::test::TempDir;

const std::string kSeg = "/videos/0123456789abcdef/hls/240p_00000.ts";

std::string head_of(const std::string &request_line, const std::vector<std::string> &fields = {"Host: 127.0.0.1"}) {
  std::string h = request_line + "\r\n";
  for (const auto &f : fields)
    h += f + "\r\n";
  return h + "\r\n";
}

bool offered(const std::string &bytes) {
  FastHead h;
  return read_fast_head(bytes.data(), bytes.size(), h);
}

TEST(FastHead, OffersPlainGetAndHead) {
  const std::string get = head_of("GET " + kSeg + "?v=abc123 HTTP/1.1", {"Host: 127.0.0.1:8080", "Range: bytes=0-9"});
  FastHead h;
  ASSERT_TRUE(read_fast_head(get.data(), get.size(), h));
  EXPECT_STREQ(h.method, "GET");
  EXPECT_EQ(h.length, get.size());
  EXPECT_EQ(h.path, kSeg);
  EXPECT_EQ(h.query, "v=abc123");
  EXPECT_STREQ(soup_message_headers_get_one(h.headers, "Range"), "bytes=0-9");

  FastHead head;
  const std::string hd = head_of("HEAD " + kSeg + " HTTP/1.1", {"Host: example.org", "Connection: keep-alive"});
  ASSERT_TRUE(read_fast_head(hd.data(), hd.size(), head));
  EXPECT_STREQ(head.method, "HEAD");
  EXPECT_EQ(head.query, "");
}

TEST(FastHead, EndsAtTheFirstEmptyLineWhateverFollows) {
  // A pipelined request, or the start of one, after the head: its length is the first head's, and the same.
  const std::string first = head_of("GET " + kSeg + " HTTP/1.1");
  for (const std::string &after : {std::string(), head_of("GET /api/v1/videos HTTP/1.1"), std::string("POST /x"),
                                   std::string("\r\n\r\n"), std::string(1, '\0')}) {
    FastHead h;
    const std::string bytes = first + after;
    ASSERT_TRUE(read_fast_head(bytes.data(), bytes.size(), h)) << after;
    EXPECT_EQ(h.length, first.size());
  }
}

TEST(FastHead, LeavesEverythingElseToLibsoup) {
  const std::vector<std::pair<const char *, std::string>> refused = {
      {"part of a head", "GET " + kSeg + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
      {"POST", head_of("POST " + kSeg + " HTTP/1.1")},
      {"OPTIONS", head_of("OPTIONS " + kSeg + " HTTP/1.1")},
      {"HTTP/1.0", head_of("GET " + kSeg + " HTTP/1.0")},
      {"HTTP/2.0", head_of("GET " + kSeg + " HTTP/2.0")},
      {"a body", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Content-Length: 0"})},
      {"chunked", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Transfer-Encoding: chunked"})},
      {"Expect", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Expect: 100-continue"})},
      {"Upgrade", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Connection: Upgrade", "Upgrade: websocket"})},
      {"Origin", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Origin: https://example.com"})},
      {"Connection: close", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Connection: close"})},
      {"no Host", head_of("GET " + kSeg + " HTTP/1.1", {})},
      {"two Hosts", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a", "Host: b"})},
      {"a Host with a slash", head_of("GET " + kSeg + " HTTP/1.1", {"Host: a/b"})},
      {"absolute-form", head_of("GET http://127.0.0.1" + kSeg + " HTTP/1.1")},
      {"asterisk", head_of("GET * HTTP/1.1")},
      {"percent-encoded", head_of("GET /videos/0123456789abcdef/hls/240p%5f00000.ts HTTP/1.1")},
      {"dot segment", head_of("GET /videos/0123456789abcdef/hls/../x.ts HTTP/1.1")},
      {"single dot", head_of("GET /videos/0123456789abcdef/./hls/x.ts HTTP/1.1")},
      {"empty segment", head_of("GET /videos//hls/x.ts HTTP/1.1")},
      {"plus in the query", head_of("GET " + kSeg + "?v=a+b HTTP/1.1")},
      {"fragment", head_of("GET " + kSeg + "#x HTTP/1.1")},
      {"bare LF", "GET " + kSeg + " HTTP/1.1\nHost: a\n\n"},
      {"bare LF ending", "GET " + kSeg + " HTTP/1.1\r\nHost: a\r\n\n\r\n\r\n"},
      {"bare CR", "GET " + kSeg + " HTTP/1.1\r\nHost: a\r\rX: y\r\n\r\n"},
      {"a request behind a bare LF", "GET " + kSeg + " HTTP/1.1\r\nHost: a\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"NUL", std::string("GET ") + kSeg + " HTTP/1.1\r\nHost: a\r\nX: \0y\r\n\r\n"},
      {"lowercase method", head_of("get " + kSeg + " HTTP/1.1")},
      {"empty", ""},
  };
  for (const auto &[what, bytes] : refused)
    EXPECT_FALSE(offered(bytes)) << what;
}

class Descriptor : public ::testing::Test {
protected:
  TempDir dir;
  std::string path;
  void SetUp() override {
    path = dir.file("a.ts");
    const std::string data(1000, 'x');
    ASSERT_TRUE(g_file_set_contents(path.c_str(), data.data(), static_cast<gssize>(data.size()), nullptr));
  }
};

TEST_F(Descriptor, GetGivesTheOpenFileAndItsRange) {
  SoupMessageHeaders *req = soup_message_headers_new(SOUP_MESSAGE_HEADERS_REQUEST);
  SoupMessageHeaders *resp = soup_message_headers_new(SOUP_MESSAGE_HEADERS_RESPONSE);
  soup_message_headers_replace(req, "Range", "bytes=10-19");
  ServeOptions opts;
  opts.descriptor = true;
  {
    FileAnswer a;
    answer_file(false, req, resp, path, opts, a);
    EXPECT_EQ(a.status, SOUP_STATUS_PARTIAL_CONTENT);
    EXPECT_EQ(a.offset, 10);
    EXPECT_EQ(a.length, 10);
    EXPECT_EQ(a.body, nullptr);
    ASSERT_GE(a.fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(a.fd, &st), 0);
    EXPECT_EQ(st.st_size, 1000);
    EXPECT_EQ(soup_message_headers_get_content_length(resp), 10);
  }
  // HEAD and 304 send nothing: no descriptor is kept open.
  soup_message_headers_remove(req, "Range");
  FileAnswer head;
  answer_file(true, req, resp, path, opts, head);
  EXPECT_EQ(head.status, SOUP_STATUS_OK);
  EXPECT_EQ(head.fd, -1);
  soup_message_headers_replace(req, "If-None-Match", soup_message_headers_get_one(resp, "ETag"));
  FileAnswer not_modified;
  answer_file(false, req, resp, path, opts, not_modified);
  EXPECT_EQ(not_modified.status, SOUP_STATUS_NOT_MODIFIED);
  EXPECT_EQ(not_modified.fd, -1);
  soup_message_headers_unref(req);
  soup_message_headers_unref(resp);
}

} // namespace
