// SPDX-License-Identifier: LGPL-2.1-or-later
// [storage] url and its keys (or the usual AWS_* variables) made into a Storage: a local folder or an S3 bucket.
#include "storage/open.h"

#include "core/error.h"
#include "storage/local.h"

#include <glib.h>

namespace sluice::storage {

namespace {

std::string or_env(const std::string &value, const Getenv &env, std::initializer_list<const char *> names) {
  if (!value.empty())
    return value;
  for (const char *name : names)
    if (auto v = env(name); v && !v->empty())
      return *v;
  return "";
}

} // namespace

std::optional<std::string> process_env(const char *name) {
  const char *v = g_getenv(name);
  return v ? std::optional<std::string>(v) : std::nullopt;
}

S3Settings parse_s3(const Settings &settings, const Getenv &env) {
  const std::string &url = settings.url;
  if (!url.starts_with("s3://"))
    throw Error(ErrorCode::Invalid, "[storage] url '" + url + "' is not s3://BUCKET/PREFIX");
  std::string rest = url.substr(5);
  auto slash = rest.find('/');
  S3Settings s;
  s.bucket = rest.substr(0, slash);
  s.prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  // Bucket names: 3-63 of a-z 0-9 . - (S3's rules, path-style).
  bool bucket_ok = s.bucket.size() >= 3 && s.bucket.size() <= 63;
  for (char c : s.bucket)
    bucket_ok = bucket_ok && (g_ascii_islower(c) || g_ascii_isdigit(c) || c == '.' || c == '-');
  if (!bucket_ok)
    throw Error(ErrorCode::Invalid, "[storage] url '" + url + "': '" + s.bucket +
                                        "' is not a bucket name (3 to 63 of a-z, 0-9, '.' and '-')");
  if (!s.prefix.empty()) {
    check_prefix(s.prefix);
    if (s.prefix.back() != '/')
      s.prefix += '/';
  }
  s.region = or_env(settings.region, env, {"AWS_REGION", "AWS_DEFAULT_REGION"});
  if (s.region.empty())
    s.region = "us-east-1";
  s.endpoint = or_env(settings.endpoint, env, {"AWS_ENDPOINT_URL"});
  if (s.endpoint.empty())
    s.endpoint = "https://s3." + s.region + ".amazonaws.com";
  s.access_key = or_env(settings.access_key, env, {"AWS_ACCESS_KEY_ID"});
  s.secret_key = or_env(settings.secret_key, env, {"AWS_SECRET_ACCESS_KEY"});
  if (s.access_key.empty())
    throw Error(ErrorCode::Invalid, "[storage] url is s3:// but no access key is set ([storage] access-key or "
                                    "AWS_ACCESS_KEY_ID)");
  if (s.secret_key.empty())
    throw Error(ErrorCode::Invalid, "[storage] url is s3:// but no secret key is set ([storage] secret-key or "
                                    "AWS_SECRET_ACCESS_KEY)");
  return s;
}

void check_url(const std::string &url) {
  if (url.empty())
    return;
  if (url.starts_with("file://")) {
    if (url.size() <= 7 || url[7] != '/')
      throw Error(ErrorCode::Invalid, "[storage] url '" + url + "' is not file:///ABSOLUTE/PATH");
    return;
  }
  if (url.starts_with("s3://")) {
    Settings s;
    s.url = url;
    s.access_key = s.secret_key = "-"; // only the url's form is checked here
    parse_s3(s, [](const char *) { return std::nullopt; });
    return;
  }
  throw Error(ErrorCode::Invalid, "[storage] url '" + url + "' is neither file:///PATH nor s3://BUCKET/PREFIX");
}

std::unique_ptr<Storage> open(const Settings &settings, const std::string &data_dir, const Getenv &env) {
  check_url(settings.url);
  if (settings.url.empty())
    return std::make_unique<LocalStorage>(data_dir);
  if (settings.url.starts_with("file://"))
    return std::make_unique<LocalStorage>(settings.url.substr(7));
  return std::make_unique<S3Storage>(parse_s3(settings, env));
}

} // namespace sluice::storage
