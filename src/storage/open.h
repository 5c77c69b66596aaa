// SPDX-License-Identifier: LGPL-2.1-or-later
// [storage] url and its keys (or the usual AWS_* variables) made into a Storage: a local folder or an S3 bucket.
#pragma once

#include "storage/s3.h"
#include "storage/storage.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace sluice::storage {

// The configuration's words, as written: empty means not set.
struct Settings {
  std::string url; // "" (the data folder), file:///PATH or s3://BUCKET[/PREFIX]
  std::string endpoint;
  std::string region;
  std::string access_key;
  std::string secret_key;
};

// Reads an environment variable (tests pass their own).
using Getenv = std::function<std::optional<std::string>(const char *name)>;
std::optional<std::string> process_env(const char *name);

// s3://bucket/prefix and the keys, each falling back to AWS_ENDPOINT_URL, AWS_REGION (then AWS_DEFAULT_REGION),
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; the endpoint defaults to https://s3.REGION.amazonaws.com, the region to
// us-east-1. Throws Invalid naming what is wrong or missing (never a secret's value).
S3Settings parse_s3(const Settings &settings, const Getenv &env = process_env);

// Checks the url's form without opening anything (for the configuration's loading).
void check_url(const std::string &url);

// The storage the settings name: LocalStorage at data_dir for "", at PATH for file:///PATH; S3Storage for s3://.
std::unique_ptr<Storage> open(const Settings &settings, const std::string &data_dir, const Getenv &env = process_env);

} // namespace sluice::storage
