// SPDX-License-Identifier: LGPL-2.1-or-later
// One S3 request through libcurl, signed by libcurl's CURLOPT_AWS_SIGV4, and S3's XML answers turned into errors.
#include "storage/s3_internal.h"

#include "core/error.h"
#include "core/log.h"

#include <curl/curl.h>
#include <glib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <memory>
#include <mutex>

namespace sluice::storage::s3 {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  const Request *request = nullptr;
  Response *response = nullptr;
  CURL *curl = nullptr;
  std::size_t sent = 0;
  bool to_sink = false;
  bool decided = false;
  std::string sink_error; // a sink that threw: its message, rethrown once libcurl returns
  ErrorCode sink_code = ErrorCode::Io;
};

std::size_t on_header(char *data, std::size_t size, std::size_t count, void *user) {
  auto *t = static_cast<Transfer *>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) { // a new answer (after a 100 Continue, or a redirect): forget the last one's
    t->response->headers.clear();
    return size * count;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos)
    return size * count;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  t->response->headers[name] = std::string(value);
  return size * count;
}

std::size_t on_body(char *data, std::size_t size, std::size_t count, void *user) {
  auto *t = static_cast<Transfer *>(user);
  std::size_t n = size * count;
  if (!t->decided) {
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    t->to_sink = t->request->sink && status >= 200 && status < 300;
    t->decided = true;
    if (t->to_sink && t->request->on_status)
      t->request->on_status(status);
  }
  if (!t->to_sink) {
    if (t->response->body.size() < (1 << 20)) // an error document is small; never keep a large one
      t->response->body.append(data, n);
    return n;
  }
  try {
    t->request->sink(data, n);
  } catch (const Error &e) {
    t->sink_error = e.what();
    t->sink_code = e.code();
    return 0; // stops the transfer
  } catch (const std::exception &e) {
    t->sink_error = e.what();
    return 0;
  }
  return n;
}

std::size_t on_read(char *buffer, std::size_t size, std::size_t count, void *user) {
  auto *t = static_cast<Transfer *>(user);
  if (t->request->body_fd >= 0) {
    const Request &r = *t->request;
    std::size_t n = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(size * count),
                                                                    r.body_size - static_cast<std::int64_t>(t->sent)));
    while (n > 0) {
      ssize_t got = pread(r.body_fd, buffer, n, r.body_offset + static_cast<std::int64_t>(t->sent));
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        return CURL_READFUNC_ABORT; // the file shrank or failed: the request fails, the upload with it
      t->sent += static_cast<std::size_t>(got);
      return static_cast<std::size_t>(got);
    }
    return 0;
  }
  std::string_view body = t->request->body;
  std::size_t n = std::min(size * count, body.size() - t->sent);
  std::copy_n(body.data() + t->sent, n, buffer);
  t->sent += n;
  return n;
}

struct CurlDeleter {
  void operator()(CURL *c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist *l) const { curl_slist_free_all(l); }
};

// Where a request went, for messages: the method and the URL without its query (which may hold an upload id).
std::string target(const Request &request) {
  auto q = request.url.find('?');
  return request.method + " " + request.url.substr(0, q);
}

} // namespace

Response perform(const Credentials &credentials, const Request &request) {
  global_init();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl)
    throw Error(ErrorCode::Internal, "libcurl could not make a handle");
  CURL *c = curl.get();
  Response response;
  Transfer t;
  t.request = &request;
  t.response = &response;
  t.curl = c;

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add = [&headers](const std::string &h) {
    curl_slist *l = curl_slist_append(headers.get(), h.c_str());
    if (!l)
      throw Error(ErrorCode::Internal, "out of memory");
    (void)headers.release();
    headers.reset(l);
  };
  for (const auto &h : request.headers)
    add(h);
  // libcurl 7.88 signs the value of this header as the payload's hash (and lists it in SignedHeaders), whatever it is:
  // UNSIGNED-PAYLOAD too, which S3 takes for a body whose hash the signature does not cover.
  add("x-amz-content-sha256: " + (request.unsigned_payload ? std::string("UNSIGNED-PAYLOAD")
                                  : request.body_fd >= 0
                                      ? sha256_hex(request.body_fd, request.body_offset, request.body_size)
                                      : sha256_hex(request.body)));
  // No "Expect:" header to turn off 100-continue: libcurl 7.88 would sign it (empty) without sending it, and S3
  // would compute another signature.
  std::unique_ptr<curl_slist, SlistDeleter> connect_to;
  if (!request.connect_to.empty())
    connect_to.reset(curl_slist_append(nullptr, request.connect_to.c_str()));

  std::string sigv4 = "aws:amz:" + credentials.region + ":s3";
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERNAME, credentials.access_key.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, credentials.secret_key.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (connect_to)
    curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to.get());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  // A stalled transfer (under 1 byte/s for 60 s) fails rather than hanging a thread forever.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.has_body) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L); // PUT; POST through CUSTOMREQUEST below
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(request.body_fd >= 0 ? request.body_size
                                                                  : static_cast<std::int64_t>(request.body.size())));
    if (request.method != "PUT")
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

  CURLcode rc = curl_easy_perform(c);
  if (!t.sink_error.empty())
    throw Error(t.sink_code, t.sink_error);
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    SLUICE_LOG(cat(), Warning, "%s: %s", target(request).c_str(), why.c_str());
    throw Error(ErrorCode::Unavailable, "object storage: " + target(request) + " failed: " + why);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  SLUICE_LOG(cat(), Debug, "%s: %ld", target(request).c_str(), response.status);
  return response;
}

void throw_error(const Response &response, const std::string &what) {
  std::string code;
  std::string message;
  if (!response.body.empty()) {
    try {
      XmlNode root = parse_xml(response.body);
      if (root.name == "Error") {
        code = root.child_text("Code");
        message = root.child_text("Message");
      }
    } catch (const Error &) {
      // not XML: the status says it
    }
  }
  std::string text = "object storage: " + what + ": ";
  if (!code.empty())
    text += code + (message.empty() ? "" : " (" + message + ")");
  else
    text += "HTTP " + std::to_string(response.status);
  if (!code.empty())
    text += ", HTTP " + std::to_string(response.status);
  bool not_found = code == "NoSuchKey" || code == "NoSuchBucket" || code == "NoSuchUpload" ||
                   (code.empty() && response.status == 404);
  throw Error(not_found ? ErrorCode::NotFound : ErrorCode::Unavailable, text);
}

std::string sha256_hex(std::string_view bytes) {
  std::unique_ptr<gchar, decltype(&g_free)> sum(
      g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(bytes.data()), bytes.size()),
      &g_free);
  return sum.get();
}

std::string sha256_hex(int fd, std::int64_t offset, std::int64_t size) {
  std::unique_ptr<GChecksum, decltype(&g_checksum_free)> sum(g_checksum_new(G_CHECKSUM_SHA256), &g_checksum_free);
  std::string buf(1 << 16, '\0');
  while (size > 0) {
    ssize_t got = pread(fd, buf.data(), static_cast<std::size_t>(std::min<std::int64_t>(size, 1 << 16)), offset);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      throw Error(ErrorCode::Io, std::string("cannot read the file being uploaded: ") +
                                     (got < 0 ? g_strerror(errno) : "it is shorter than was said"));
    g_checksum_update(sum.get(), reinterpret_cast<const guchar *>(buf.data()), got);
    offset += got;
    size -= got;
  }
  return g_checksum_get_string(sum.get());
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (g_ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string canonical_query(std::vector<std::pair<std::string, std::string>> params) {
  for (auto &[name, value] : params) {
    name = uri_encode(name, false);
    value = uri_encode(value, false);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto &[name, value] : params) {
    if (!out.empty())
      out += '&';
    out += name + "=" + value;
  }
  return out;
}

} // namespace sluice::storage::s3
