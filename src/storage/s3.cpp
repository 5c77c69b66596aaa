// SPDX-License-Identifier: LGPL-2.1-or-later
// S3Storage: gets, heads, lists, deletes and presigned URLs against an S3-compatible bucket.
#include "storage/s3.h"

#include "core/error.h"
#include "core/log.h"
#include "storage/s3_internal.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

namespace sluice::storage {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

bool ok(const s3::Response &r) {
  return r.status >= 200 && r.status < 300;
}

std::int64_t parse_iso8601(const std::string &text) {
  GDateTime *dt = g_date_time_new_from_iso8601(text.c_str(), nullptr);
  if (!dt)
    return 0;
  std::int64_t t = g_date_time_to_unix(dt);
  g_date_time_unref(dt);
  return t;
}

} // namespace

std::string S3Storage::Impl::object_path(const std::string &key) const {
  return "/" + s3::uri_encode(settings.bucket, false) + "/" + s3::uri_encode(settings.prefix + key, true);
}

std::string S3Storage::Impl::object_url(const std::string &key, const std::string &query) const {
  return settings.endpoint + object_path(key) + (query.empty() ? "" : "?" + query);
}

std::string S3Storage::Impl::bucket_url(const std::string &query) const {
  return settings.endpoint + "/" + s3::uri_encode(settings.bucket, false) + (query.empty() ? "" : "?" + query);
}

S3Storage::S3Storage(S3Settings settings) : impl_(std::make_unique<Impl>()) {
  if (settings.bucket.empty())
    throw Error(ErrorCode::Invalid, "S3 storage needs a bucket");
  if (!settings.prefix.empty()) {
    check_prefix(settings.prefix);
    if (settings.prefix.back() != '/')
      settings.prefix += '/';
  }
  if (!g_str_has_prefix(settings.endpoint.c_str(), "http://") &&
      !g_str_has_prefix(settings.endpoint.c_str(), "https://"))
    throw Error(ErrorCode::Invalid, "S3 endpoint must be an http:// or https:// URL, not '" + settings.endpoint + "'");
  while (!settings.endpoint.empty() && settings.endpoint.back() == '/')
    settings.endpoint.pop_back();
  if (settings.endpoint.find('/', settings.endpoint.find("//") + 2) != std::string::npos ||
      settings.endpoint.find_first_of("?#@") != std::string::npos)
    throw Error(ErrorCode::Invalid,
                "S3 endpoint must be scheme://host[:port] without a path, not '" + settings.endpoint + "'");
  if (settings.region.empty())
    throw Error(ErrorCode::Invalid, "S3 storage needs a region");
  if (settings.access_key.empty() || settings.secret_key.empty())
    throw Error(ErrorCode::Invalid, "S3 storage needs an access key and a secret key");
  if (settings.part_size < (5u << 20))
    throw Error(ErrorCode::Invalid, "S3 multipart parts must be at least 5 MiB");
  impl_->credentials = {settings.access_key, settings.secret_key, settings.region};
  impl_->settings = std::move(settings);
}

S3Storage::~S3Storage() = default;

std::string S3Storage::describe() const {
  return "s3://" + impl_->settings.bucket + "/" + impl_->settings.prefix + " at " + impl_->settings.endpoint;
}

ObjectInfo S3Storage::put_bytes(const std::string &key, std::string_view bytes, const std::string &content_type) {
  check_key(key);
  s3::Request req;
  req.method = "PUT";
  req.url = impl_->object_url(key);
  req.body = bytes;
  req.has_body = true;
  req.headers.push_back("Content-Type: " + (content_type.empty() ? content_type_for(key) : content_type));
  s3::Response r = impl_->call(req);
  if (!ok(r))
    s3::throw_error(r, "PUT " + key);
  return ObjectInfo{key, static_cast<std::int64_t>(bytes.size()), r.headers["etag"],
                    static_cast<std::int64_t>(time(nullptr))};
}

ObjectInfo S3Storage::put_file(const std::string &key, const std::string &path, const std::string &content_type) {
  check_key(key);
  int fd = g_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno));
  std::unique_ptr<int, void (*)(int *)> closer(&fd, [](int *f) { close(*f); });
  // Through the streaming upload: one PUT for a small file, multipart above a part, the file read 1 MiB at a time.
  std::unique_ptr<Upload> upload = begin_upload(key, content_type);
  std::string chunk(1u << 20, '\0');
  while (true) {
    ssize_t n = read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error(ErrorCode::Io, "cannot read " + path + ": " + g_strerror(errno)); // ~Upload aborts
    if (n == 0)
      break;
    upload->write(chunk.data(), static_cast<std::size_t>(n));
  }
  return upload->finish();
}

std::unique_ptr<Upload> S3Storage::begin_upload(const std::string &key, const std::string &content_type) {
  check_key(key);
  return make_s3_upload(*impl_, key, content_type.empty() ? content_type_for(key) : content_type);
}

void S3Storage::get_file(const std::string &key, const std::string &path) {
  check_key(key);
  std::string tmp = path + ".part-XXXXXX";
  int fd = g_mkstemp_full(tmp.data(), O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot write " + path + ": " + g_strerror(errno));
  bool done = false;
  std::unique_ptr<int, std::function<void(int *)>> guard(&fd, [&](int *f) {
    close(*f);
    if (!done)
      g_unlink(tmp.c_str());
  });
  get_range(key, 0, -1, [&](const char *data, std::size_t size) {
    while (size > 0) {
      ssize_t n = write(fd, data, size);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        throw Error(errno == ENOSPC ? ErrorCode::NoSpace : ErrorCode::Io,
                    "cannot write " + path + ": " + g_strerror(errno));
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  });
  if (fsync(fd) != 0)
    throw Error(ErrorCode::Io, "cannot write " + path + ": " + g_strerror(errno));
  if (g_rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(ErrorCode::Io, "cannot rename to " + path + ": " + g_strerror(errno));
  done = true;
}

void S3Storage::get_range(const std::string &key, std::int64_t offset, std::int64_t length, const Sink &sink) {
  check_key(key);
  if (offset < 0 || length < -1)
    throw Error(ErrorCode::Invalid, "bad byte range of " + key);
  if (length == 0)
    return;
  s3::Request req;
  req.url = impl_->object_url(key);
  bool ranged = offset > 0 || length > 0;
  if (ranged)
    req.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" +
                          (length > 0 ? std::to_string(offset + length - 1) : std::string()));
  // A server that ignores Range answers 200 with the whole object: skip to offset and stop at length.
  std::int64_t position = 0;
  std::int64_t end = length > 0 ? offset + length : -1;
  long status = 0;
  req.sink = [&](const char *data, std::size_t size) {
    std::int64_t from = status == 206 ? 0 : std::max<std::int64_t>(0, offset - position);
    std::int64_t to = static_cast<std::int64_t>(size);
    if (status != 206 && end >= 0)
      to = std::min<std::int64_t>(to, end - position);
    position += static_cast<std::int64_t>(size);
    if (to > from)
      sink(data + from, static_cast<std::size_t>(to - from));
  };
  req.on_status = [&status](long s) { status = s; };
  s3::Response resp = impl_->call(req);
  if (!ok(resp))
    s3::throw_error(resp, "GET " + key);
}

std::optional<ObjectInfo> S3Storage::head(const std::string &key) {
  check_key(key);
  s3::Request req;
  req.method = "HEAD";
  req.url = impl_->object_url(key);
  s3::Response r = impl_->call(req);
  if (r.status == 404)
    return std::nullopt;
  if (!ok(r))
    s3::throw_error(r, "HEAD " + key);
  ObjectInfo info;
  info.key = key;
  info.size = g_ascii_strtoll(r.headers["content-length"].c_str(), nullptr, 10);
  info.etag = r.headers["etag"];
  const std::string &modified = r.headers["last-modified"];
  info.last_modified = modified.empty() ? 0 : static_cast<std::int64_t>(curl_getdate(modified.c_str(), nullptr));
  return info;
}

void S3Storage::remove(const std::string &key) {
  check_key(key);
  s3::Request req;
  req.method = "DELETE";
  req.url = impl_->object_url(key);
  s3::Response r = impl_->call(req);
  if (!ok(r) && r.status != 404)
    s3::throw_error(r, "DELETE " + key);
}

std::vector<ObjectInfo> S3Storage::list(const std::string &prefix) {
  check_prefix(prefix);
  const std::string &root = impl_->settings.prefix;
  std::vector<ObjectInfo> out;
  std::string token;
  do {
    std::vector<std::pair<std::string, std::string>> params = {{"list-type", "2"}, {"prefix", root + prefix}};
    if (!token.empty())
      params.emplace_back("continuation-token", token);
    s3::Request req;
    req.url = impl_->bucket_url(s3::canonical_query(params));
    s3::Response r = impl_->call(req);
    if (!ok(r))
      s3::throw_error(r, "LIST " + prefix);
    s3::XmlNode doc = s3::parse_xml(r.body);
    for (const auto &c : doc.children) {
      if (c.name != "Contents")
        continue;
      std::string key = c.child_text("Key");
      if (!g_str_has_prefix(key.c_str(), root.c_str()))
        continue;
      ObjectInfo info;
      info.key = key.substr(root.size());
      info.size = g_ascii_strtoll(c.child_text("Size").c_str(), nullptr, 10);
      info.etag = c.child_text("ETag");
      info.last_modified = parse_iso8601(c.child_text("LastModified"));
      out.push_back(std::move(info));
    }
    token = doc.child_text("IsTruncated") == "true" ? doc.child_text("NextContinuationToken") : "";
  } while (!token.empty());
  std::sort(out.begin(), out.end(), [](const ObjectInfo &a, const ObjectInfo &b) { return a.key < b.key; });
  return out;
}

std::size_t S3Storage::remove_prefix(const std::string &prefix) {
  std::vector<ObjectInfo> objects = list(prefix);
  // DeleteObjects: up to 1000 keys a request, with the Content-MD5 that S3 requires of it.
  for (std::size_t i = 0; i < objects.size(); i += 1000) {
    std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>";
    for (std::size_t j = i; j < std::min(objects.size(), i + 1000); j++)
      body += "<Object><Key>" + s3::xml_escape(impl_->settings.prefix + objects[j].key) + "</Key></Object>";
    body += "</Delete>";
    std::unique_ptr<GChecksum, decltype(&g_checksum_free)> md5(g_checksum_new(G_CHECKSUM_MD5), &g_checksum_free);
    g_checksum_update(md5.get(), reinterpret_cast<const guchar *>(body.data()), static_cast<gssize>(body.size()));
    guint8 digest[16];
    gsize len = sizeof digest;
    g_checksum_get_digest(md5.get(), digest, &len);
    std::unique_ptr<gchar, decltype(&g_free)> b64(g_base64_encode(digest, len), &g_free);
    s3::Request req;
    req.method = "POST";
    req.url = impl_->bucket_url(s3::canonical_query({{"delete", ""}}));
    req.body = body;
    req.has_body = true;
    req.headers = {"Content-Type: application/xml", std::string("Content-MD5: ") + b64.get()};
    s3::Response r = impl_->call(req);
    if (r.status >= 500) {
      // The server failed the batch ("try again"): delete its keys one by one, each DELETE idempotent.
      SLUICE_LOG(cat(), Info, "DeleteObjects under %s answered %ld: deleting one by one", prefix.c_str(), r.status);
      for (std::size_t j = i; j < std::min(objects.size(), i + 1000); j++)
        remove(objects[j].key);
      continue;
    }
    if (!ok(r))
      s3::throw_error(r, "DELETE " + prefix + "*");
    s3::XmlNode doc = s3::parse_xml(r.body);
    if (const s3::XmlNode *e = doc.child("Error"))
      throw Error(ErrorCode::Unavailable, "object storage: DELETE " + e->child_text("Key") + ": " +
                                              e->child_text("Code") + " (" + e->child_text("Message") + ")");
  }
  SLUICE_LOG(cat(), Info, "deleted %zu objects under %s", objects.size(), prefix.c_str());
  return objects.size();
}

std::string S3Storage::presign_get(const std::string &key, std::chrono::seconds ttl) {
  check_key(key);
  if (ttl.count() < 1 || ttl.count() > 604800)
    throw Error(ErrorCode::Invalid, "a presigned URL lives 1 s to 7 days, not " + std::to_string(ttl.count()) + " s");
  const std::string &endpoint = impl_->settings.endpoint;
  std::string host = endpoint.substr(endpoint.find("//") + 2);
  // The Host header a client sends leaves out the scheme's default port.
  if (g_str_has_prefix(endpoint.c_str(), "http://") && g_str_has_suffix(host.c_str(), ":80"))
    host.resize(host.size() - 3);
  else if (g_str_has_prefix(endpoint.c_str(), "https://") && g_str_has_suffix(host.c_str(), ":443"))
    host.resize(host.size() - 4);
  std::string path = impl_->object_path(key);
  return endpoint + path + "?" + s3::presign_query(impl_->credentials, host, path, ttl.count(), time(nullptr));
}

} // namespace sluice::storage
