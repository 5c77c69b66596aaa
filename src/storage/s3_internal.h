// SPDX-License-Identifier: LGPL-2.1-or-later
// The S3 backend's parts: one signed request through libcurl, SigV4 query presigning, and the XML S3 answers with.
#pragma once

#include "storage/s3.h"
#include "storage/storage.h"

#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::storage::s3 {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string region;
};

// One request. libcurl (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3") signs it: the path and query of url are signed as
// they are written, so they must already be canonical (uri_encode, canonical_query).
struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers; // "Name: value"; an x-amz-date here is the date libcurl signs with
  std::string_view body;            // sent with x-amz-content-sha256: its SHA-256
  bool has_body = false;            // a PUT or POST with body (possibly empty)
  bool unsigned_payload = false;    // x-amz-content-sha256: UNSIGNED-PAYLOAD instead (signed as such)
  int body_fd = -1; // >= 0: the body is body_size bytes of this file from body_offset (read as sent), not `body`
  std::int64_t body_offset = 0, body_size = 0;
  Sink sink;                                  // when set, a 2xx answer's body goes here instead of Response::body
  std::function<void(long status)> on_status; // with sink: called with the 2xx status before the first byte
  std::string connect_to;                     // a CURLOPT_CONNECT_TO entry (HOST:PORT:CONNECT-TO-HOST:PORT), for tests
};

struct Response {
  long status = 0;
  std::string body;                           // the answer's body (a 2xx one only when Request::sink is unset)
  std::map<std::string, std::string> headers; // names in lower case
};

// Performs the request; throws Unavailable when the endpoint cannot be reached (what libcurl said). Any HTTP status
// comes back in Response.
Response perform(const Credentials &credentials, const Request &request);

// Throws the sluice::Error for a failed answer: S3's XML <Code> and <Message>, the status; NoSuchKey,
// NoSuchBucket and 404 are NotFound.
[[noreturn]] void throw_error(const Response &response, const std::string &what);

std::string sha256_hex(std::string_view bytes);
// The SHA-256 of size bytes of the file fd from offset (read with pread); throws Io.
std::string sha256_hex(int fd, std::int64_t offset, std::int64_t size);
// AWS's UriEncode: every byte but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash) as %XX.
std::string uri_encode(std::string_view s, bool keep_slash);
// name=value pairs, each URI-encoded, sorted by name: the canonical query string SigV4 signs.
std::string canonical_query(std::vector<std::pair<std::string, std::string>> params);

// The query string of a presigned GET (query-string SigV4, X-Amz-SignedHeaders=host, UNSIGNED-PAYLOAD) of
// canonical_path on host (with its port when not the scheme's), valid ttl_seconds from now; ends with
// X-Amz-Signature.
std::string presign_query(const Credentials &credentials, const std::string &host, const std::string &canonical_path,
                          std::int64_t ttl_seconds, std::time_t now);

// A little of XML, enough for S3's answers: an element, its text (entities decoded) and its children.
struct XmlNode {
  std::string name;
  std::string text;
  std::vector<XmlNode> children;
  // The first child of that name, or nullptr.
  const XmlNode *child(std::string_view child_name) const;
  // The text of the first child of that name, or "".
  std::string child_text(std::string_view child_name) const;
};
// The document's root element; throws Unavailable when it is not well-formed.
XmlNode parse_xml(std::string_view xml);
std::string xml_escape(std::string_view s);

} // namespace sluice::storage::s3

namespace sluice::storage {

struct S3Storage::Impl {
  S3Settings settings;
  s3::Credentials credentials;

  // Path-style: /BUCKET/PREFIXKEY, URI-encoded ('/' kept).
  std::string object_path(const std::string &key) const;
  std::string object_url(const std::string &key, const std::string &query = "") const;
  std::string bucket_url(const std::string &query) const;
  s3::Response call(const s3::Request &request) const { return s3::perform(credentials, request); }
};

// The streaming upload of S3Storage (s3_upload.cpp).
std::unique_ptr<Upload> make_s3_upload(const S3Storage::Impl &impl, const std::string &key,
                                       const std::string &content_type);

} // namespace sluice::storage
