// SPDX-License-Identifier: LGPL-2.1-or-later
// The S3 backend's signing checked against AWS's published SigV4 examples (what the S3 test double cannot see), and
// its query strings, XML answers, errors and configuration.
#include "core/error.h"
#include "storage/open.h"
#include "storage/s3_internal.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <thread>

using namespace sluice;
using namespace sluice::storage;

namespace {

// AWS's example credentials (S3 API reference, "Signature Calculations for the Authorization Header" and
// "Authenticating Requests: Using Query Parameters").
const s3::Credentials kAws{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1"};

// A one-request HTTP listener on 127.0.0.1: keeps the request it was sent (headers and body) and answers `answer`.
class OneRequest {
public:
  explicit OneRequest(std::string answer) : answer_(std::move(answer)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd_, reinterpret_cast<sockaddr *>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    EXPECT_EQ(listen(fd_, 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneRequest() {
    if (thread_.joinable()) {
      shutdown(fd_, SHUT_RDWR);
      thread_.join();
    }
    close(fd_);
  }
  int port() const { return port_; }
  // The request as received; waits for it.
  const std::string &request() {
    if (thread_.joinable())
      thread_.join();
    return request_;
  }
  // The value of each header of the request (the last one of a repeated name), names in lower case.
  std::map<std::string, std::string> headers() {
    std::map<std::string, std::string> out;
    const std::string &r = request();
    std::size_t at = r.find("\r\n") + 2;
    while (at < r.size()) {
      std::size_t end = r.find("\r\n", at);
      if (end == std::string::npos || end == at)
        break;
      std::string line = r.substr(at, end - at);
      std::size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto &c : name)
        c = static_cast<char>(g_ascii_tolower(c));
      out[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      at = end + 2;
    }
    return out;
  }
  std::string body() {
    const std::string &r = request();
    return r.substr(r.find("\r\n\r\n") + 4);
  }

private:
  void serve() {
    int c = accept(fd_, nullptr, nullptr);
    if (c < 0)
      return;
    char buf[4096];
    std::size_t want = std::string::npos;
    while (request_.size() < want) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0)
        break;
      request_.append(buf, static_cast<std::size_t>(n));
      std::size_t end = request_.find("\r\n\r\n");
      if (end != std::string::npos && want == std::string::npos) {
        std::size_t cl = request_.find("Content-Length: ");
        want = end + 4 + (cl != std::string::npos && cl < end ? std::stoul(request_.substr(cl + 16)) : 0);
      }
    }
    std::string reply = "HTTP/1.1 " + answer_;
    (void)!write(c, reply.data(), reply.size());
    close(c);
  }

  std::string answer_;
  std::string request_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

const std::string kEmptyOk = "200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

} // namespace

// AWS's "GET Object" example: the first 10 bytes of test.txt in examplebucket, signed on 2013-05-24 with the hash of
// the empty payload. Published signature f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41. libcurl
// does the signing (CURLOPT_AWS_SIGV4); it takes the date from the x-amz-date header that is set. The request goes
// to this test's listener, its Host header the example's (CURLOPT_CONNECT_TO).
TEST(S3Signing, LibcurlSignsAwsGetObjectExample) {
  OneRequest server(kEmptyOk);
  s3::Request req;
  req.url = "http://examplebucket.s3.amazonaws.com/test.txt";
  req.headers = {"Range: bytes=0-9", "x-amz-date: 20130524T000000Z"};
  req.connect_to = "examplebucket.s3.amazonaws.com:80:127.0.0.1:" + std::to_string(server.port());
  s3::Response r = s3::perform(kAws, req);
  EXPECT_EQ(r.status, 200);
  auto h = server.headers();
  EXPECT_EQ(h["host"], "examplebucket.s3.amazonaws.com");
  EXPECT_EQ(h["x-amz-content-sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // As AWS publishes it, but for the space libcurl writes after each comma (S3 takes both).
  EXPECT_EQ(h["authorization"], "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// The same request with another date or secret is signed differently: the comparison above can fail.
TEST(S3Signing, SignatureDependsOnDateAndSecret) {
  for (int i = 0; i < 2; i++) {
    OneRequest server(kEmptyOk);
    s3::Request req;
    req.url = "http://examplebucket.s3.amazonaws.com/test.txt";
    req.headers = {"Range: bytes=0-9", i == 0 ? "x-amz-date: 20130525T000000Z" : "x-amz-date: 20130524T000000Z"};
    req.connect_to = "examplebucket.s3.amazonaws.com:80:127.0.0.1:" + std::to_string(server.port());
    s3::Credentials creds = kAws;
    if (i == 1)
      creds.secret_key += "x";
    s3::perform(creds, req);
    std::string auth = server.headers()["authorization"];
    EXPECT_NE(auth.find("Signature="), std::string::npos);
    EXPECT_EQ(auth.find("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), std::string::npos);
  }
}

// A body's SHA-256 is sent (and signed) as x-amz-content-sha256, and the body arrives whole.
TEST(S3Signing, BodyHashIsSentAndSigned) {
  OneRequest server(kEmptyOk);
  s3::Request req;
  req.method = "PUT";
  req.url = "http://examplebucket.s3.amazonaws.com/test%24file.text";
  req.body = "Welcome to Amazon S3.";
  req.has_body = true;
  req.connect_to = "examplebucket.s3.amazonaws.com:80:127.0.0.1:" + std::to_string(server.port());
  s3::perform(kAws, req);
  EXPECT_EQ(server.request().substr(0, 30), "PUT /test%24file.text HTTP/1.1");
  auto h = server.headers();
  EXPECT_EQ(h["x-amz-content-sha256"], "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  // Signed: what is sent, and nothing that is not.
  EXPECT_NE(h["authorization"].find(", SignedHeaders=host;x-amz-content-sha256;x-amz-date, "), std::string::npos)
      << h["authorization"];
  EXPECT_EQ(server.body(), "Welcome to Amazon S3.");
}

// AWS's presigned URL example: GET test.txt in examplebucket for 86400 s from 2013-05-24T00:00:00Z. Published
// signature aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404.
TEST(S3Signing, PresignedUrlMatchesAwsExample) {
  std::string q = s3::presign_query(kAws, "examplebucket.s3.amazonaws.com", "/test.txt", 86400, 1369353600);
  EXPECT_EQ(q, "X-Amz-Algorithm=AWS4-HMAC-SHA256"
               "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
               "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
               "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
  // Another second, another signature.
  EXPECT_EQ(s3::presign_query(kAws, "examplebucket.s3.amazonaws.com", "/test.txt", 86400, 1369353601)
                .find("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
            std::string::npos);
}

namespace {

std::string hex_digest(const guint8 *d, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; i++) {
    out += digits[d[i] >> 4];
    out += digits[d[i] & 15];
  }
  return out;
}

std::string hmac(const std::string &key, const std::string &data) {
  GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(key.data()), key.size());
  g_hmac_update(h, reinterpret_cast<const guchar *>(data.data()), static_cast<gssize>(data.size()));
  guint8 out[32];
  gsize len = sizeof out;
  g_hmac_get_digest(h, out, &len);
  g_hmac_unref(h);
  return std::string(reinterpret_cast<const char *>(out), len);
}

// SigV4 as AWS's "Signature Calculations for the Authorization Header" spells it, written out here (not libcurl's, not
// the presigner's): the signature of a canonical request made on 2013-05-24 with kAws.
std::string aws_signature(const std::string &canonical_request) {
  const std::string scope = "20130524/us-east-1/s3/aws4_request";
  const std::string to_sign = "AWS4-HMAC-SHA256\n20130524T000000Z\n" + scope + "\n" + s3::sha256_hex(canonical_request);
  std::string key = hmac("AWS4" + kAws.secret_key, "20130524");
  for (const char *part : {"us-east-1", "s3", "aws4_request"})
    key = hmac(key, part);
  std::string sig = hmac(key, to_sign);
  return hex_digest(reinterpret_cast<const guint8 *>(sig.data()), sig.size());
}

} // namespace

// A part's body sent with x-amz-content-sha256: UNSIGNED-PAYLOAD: libcurl signs the header's value as the payload's
// hash, as S3 computes it. The reference signer is first checked against AWS's published GET Object example.
TEST(S3Signing, UnsignedPayloadIsSignedAsAwsSpecifies) {
  EXPECT_EQ(aws_signature("GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                          "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                          "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
                          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  OneRequest server(kEmptyOk);
  s3::Request req;
  req.method = "PUT";
  req.url = "http://examplebucket.s3.amazonaws.com/test%24file.text?partNumber=1&uploadId=abc";
  req.headers = {"x-amz-date: 20130524T000000Z"};
  req.body = "Welcome to Amazon S3.";
  req.has_body = true;
  req.unsigned_payload = true;
  req.connect_to = "examplebucket.s3.amazonaws.com:80:127.0.0.1:" + std::to_string(server.port());
  s3::perform(kAws, req);
  auto h = server.headers();
  EXPECT_EQ(h["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
  const std::string want = aws_signature("PUT\n/test%24file.text\npartNumber=1&uploadId=abc\n"
                                         "host:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                                         "x-amz-date:20130524T000000Z\n\nhost;x-amz-content-sha256;x-amz-date\n"
                                         "UNSIGNED-PAYLOAD");
  EXPECT_EQ(h["authorization"], "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                                "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" +
                                    want);
  EXPECT_EQ(server.body(), "Welcome to Amazon S3.");
}

// libcurl 7.88 signs the query as written, so it must be canonical: encoded, sorted, '=' after every name.
TEST(S3Signing, CanonicalQueryIsSortedAndEncoded) {
  EXPECT_EQ(s3::canonical_query({{"uploadId", "a/b+c"}, {"partNumber", "2"}}), "partNumber=2&uploadId=a%2Fb%2Bc");
  EXPECT_EQ(s3::canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(s3::canonical_query({{"prefix", "videos/x y"}, {"list-type", "2"}}), "list-type=2&prefix=videos%2Fx%20y");
  EXPECT_EQ(s3::uri_encode("videos/a b/~x_-.é", true), "videos/a%20b/~x_-.%C3%A9");
  EXPECT_EQ(s3::uri_encode("a/b", false), "a%2Fb");
}

TEST(S3Errors, XmlErrorBecomesSluiceError) {
  s3::Response r;
  r.status = 404;
  r.body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
           "<Message>The specified key does not exist.</Message><Key>a&amp;b</Key></Error>";
  try {
    s3::throw_error(r, "GET a&b");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_STREQ(e.what(), "object storage: GET a&b: NoSuchKey (The specified key does not exist.), HTTP 404");
  }
  r.status = 403;
  r.body = "<Error><Code>InvalidAccessKeyId</Code><Message>no such key id</Message></Error>";
  try {
    s3::throw_error(r, "PUT x");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::Unavailable);
    EXPECT_STREQ(e.what(), "object storage: PUT x: InvalidAccessKeyId (no such key id), HTTP 403");
  }
  r.status = 502;
  r.body = "<html>bad gateway";
  try {
    s3::throw_error(r, "HEAD x");
    FAIL();
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "object storage: HEAD x: HTTP 502");
  }
}

TEST(S3Xml, ParsesListAnswer) {
  s3::XmlNode doc =
      s3::parse_xml("<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<IsTruncated>false</IsTruncated><Contents><Key>v/a&lt;1&gt;.ts</Key><Size>12</Size>"
                    "<ETag>&quot;abc&quot;</ETag></Contents><Contents><Key>v/b</Key></Contents></ListBucketResult>");
  EXPECT_EQ(doc.name, "ListBucketResult");
  ASSERT_EQ(doc.children.size(), 3u);
  EXPECT_EQ(doc.children[1].child_text("Key"), "v/a<1>.ts");
  EXPECT_EQ(doc.children[1].child_text("ETag"), "\"abc\"");
  EXPECT_EQ(doc.children[2].child_text("Key"), "v/b");
  EXPECT_THROW(s3::parse_xml("<a><b></a>"), Error);
  EXPECT_EQ(s3::xml_escape("a<&\"b"), "a&lt;&amp;&quot;b");
}

TEST(S3Config, UrlKeysAndEnvironmentFallbacks) {
  std::map<std::string, std::string> env = {{"AWS_ACCESS_KEY_ID", "AKENV"},
                                            {"AWS_SECRET_ACCESS_KEY", "secret-env"},
                                            {"AWS_DEFAULT_REGION", "eu-west-3"},
                                            {"AWS_ENDPOINT_URL", "http://127.0.0.1:9000"}};
  Getenv getenv = [&env](const char *name) -> std::optional<std::string> {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  Settings s;
  s.url = "s3://media-bucket/site/a";
  S3Settings p = parse_s3(s, getenv);
  EXPECT_EQ(p.bucket, "media-bucket");
  EXPECT_EQ(p.prefix, "site/a/");
  EXPECT_EQ(p.region, "eu-west-3");
  EXPECT_EQ(p.endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(p.access_key, "AKENV");
  EXPECT_EQ(p.secret_key, "secret-env");

  env["AWS_REGION"] = "eu-north-1"; // before AWS_DEFAULT_REGION
  s = Settings{"s3://b12", "https://s3.example.test", "", "AKCONF", "secret-conf"};
  p = parse_s3(s, getenv);
  EXPECT_EQ(p.prefix, "");
  EXPECT_EQ(p.region, "eu-north-1");
  EXPECT_EQ(p.endpoint, "https://s3.example.test");
  EXPECT_EQ(p.access_key, "AKCONF");
  EXPECT_EQ(p.secret_key, "secret-conf");

  env.clear();
  s = Settings{"s3://bucket", "", "", "AK", ""};
  try {
    parse_s3(s, getenv);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()).find("AK"), std::string::npos) << "no key's value in the message";
    EXPECT_NE(std::string(e.what()).find("AWS_SECRET_ACCESS_KEY"), std::string::npos);
  }
  s.secret_key = "x";
  EXPECT_EQ(parse_s3(s, getenv).endpoint, "https://s3.us-east-1.amazonaws.com");

  for (const char *bad :
       {"s3://", "s3://UPPER", "s3://ab", "s3://b_c/x", "s3://bucket/../x", "ftp://x", "file:relative"})
    EXPECT_THROW(check_url(bad), Error) << bad;
  for (const char *good : {"", "s3://bucket", "s3://my.bucket-1/pre/fix/", "file:///srv/media"})
    EXPECT_NO_THROW(check_url(good)) << good;
}

TEST(S3Config, SettingsS3CannotTakeAreRefused) {
  S3Settings s{"bucket", "", "http://127.0.0.1:9000", "us-east-1", "AK", "SK"};
  EXPECT_NO_THROW(S3Storage{s});
  auto refused = [](S3Settings t) { EXPECT_THROW(S3Storage{t}, Error); };
  S3Settings t = s;
  t.endpoint = "127.0.0.1:9000";
  refused(t);
  t.endpoint = "http://127.0.0.1:9000/path";
  refused(t);
  t = s;
  t.part_size = 1 << 20;
  refused(t);
  t = s;
  t.secret_key = "";
  refused(t);
}
