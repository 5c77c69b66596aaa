// SPDX-License-Identifier: LGPL-2.1-or-later
// Sources and finished packages in object storage ([storage] url): their keys, publishing, versions and fetching.
#include "jobs/stored.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "storage/open.h"
#include "storage/publish.h"

#include <glib.h>

#include <set>
#include <thread>

namespace sluice::jobs {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

constexpr const char *kSourceName = "source";

} // namespace

std::unique_ptr<storage::Storage> open_storage(const ServerConfig &config) {
  if (config.storage_url.empty())
    return nullptr;
  storage::Settings s;
  s.url = config.storage_url;
  s.endpoint = config.storage_endpoint;
  s.region = config.storage_region;
  s.access_key = config.storage_access_key;
  s.secret_key = config.storage_secret_key;
  return storage::open(s, config.data_dir);
}

std::string video_prefix(const std::string &video_id) {
  return "videos/" + video_id + "/";
}

std::string source_key(const std::string &video_id, const std::string &ext) {
  return video_prefix(video_id) + kSourceName + (ext.empty() ? "" : "." + ext);
}

std::string source_extension(const std::string &filename) {
  auto dot = filename.rfind('.');
  if (dot == std::string::npos || dot + 1 >= filename.size() || filename.size() - dot - 1 > 8)
    return "bin";
  std::string ext = filename.substr(dot + 1);
  for (auto &c : ext) {
    if (!g_ascii_isalnum(c))
      return "bin";
    c = g_ascii_tolower(c);
  }
  return ext;
}

std::string package_prefix(const std::string &video_id, const std::string &pipeline, std::int64_t version) {
  return video_prefix(video_id) + pipeline + "/v" + std::to_string(version) + "/";
}

std::string package_version(const std::string &prefix, const std::string &video_id, const std::string &pipeline) {
  const std::string base = video_prefix(video_id) + pipeline + "/v";
  if (!prefix.starts_with(base) || prefix.size() < base.size() + 2 || prefix.back() != '/')
    return "";
  const std::string digits = prefix.substr(base.size(), prefix.size() - base.size() - 1);
  for (char c : digits)
    if (!g_ascii_isdigit(c))
      return "";
  return "v" + digits;
}

std::string publish_package(storage::Storage &storage, const std::string &dir, const std::string &video_id,
                            const std::string &pipeline, std::int64_t version) {
  const std::string prefix = package_prefix(video_id, pipeline, version);
  try {
    // What an earlier use of the same prefix left (none expected: a version is one claim's) goes first.
    storage.remove_prefix(prefix);
    storage::publish_dir(storage, dir, prefix);
    return prefix;
  } catch (const Error &e) {
    SLUICE_LOG(cat(), Warning, "publishing %s to %s%s failed: %s", dir.c_str(), storage.describe().c_str(),
               prefix.c_str(), e.what());
    try {
      storage.remove_prefix(prefix);
    } catch (const Error &e2) {
      SLUICE_LOG(cat(), Warning, "cannot remove the half-written %s: %s", prefix.c_str(), e2.what());
    }
    throw Error(ErrorCode::Io, std::string("cannot publish the package to storage: ") + e.what());
  }
}

std::size_t remove_other_versions(storage::Storage &storage, const std::string &video_id, const std::string &pipeline,
                                  const std::string &current) noexcept {
  std::size_t removed = 0;
  try {
    const std::string folder = video_prefix(video_id) + pipeline + "/";
    std::set<std::string> others;
    for (const auto &o : storage.list(folder)) {
      if (current.empty() || !o.key.starts_with(current)) {
        auto slash = o.key.find('/', folder.size());
        others.insert(slash == std::string::npos ? o.key : o.key.substr(0, slash + 1));
      }
    }
    for (const auto &p : others) {
      if (p.back() == '/') {
        removed += storage.remove_prefix(p);
      } else {
        storage.remove(p);
        removed++;
      }
    }
    if (removed)
      SLUICE_LOG(cat(), Info, "video %s, %s: %zu objects of earlier versions removed", video_id.c_str(),
                 pipeline.c_str(), removed);
  } catch (const std::exception &e) {
    SLUICE_LOG(cat(), Warning, "video %s, %s: cannot remove earlier versions: %s", video_id.c_str(), pipeline.c_str(),
               e.what());
  }
  return removed;
}

void upload_source(storage::Storage &storage, const std::string &path, const std::string &video_id,
                   const std::string &ext) {
  const std::string key = source_key(video_id, ext);
  storage.put_file(key, path, storage::content_type_for(key));
  SLUICE_LOG(cat(), Info, "video %s: source stored as %s", video_id.c_str(), key.c_str());
}

std::string fetch_source(storage::Storage &storage, const std::string &video_dir, const std::string &video_id) {
  const std::string prefix = video_prefix(video_id) + kSourceName;
  for (const auto &o : storage.list(prefix)) {
    const std::string name = o.key.substr(video_prefix(video_id).size());
    if (name != kSourceName && !name.starts_with(std::string(kSourceName) + "."))
      continue;
    fs::make_dirs(video_dir);
    const std::string path = fs::join(video_dir, name);
    storage.get_file(o.key, path);
    SLUICE_LOG(cat(), Info, "video %s: source fetched from %s (%" G_GINT64_FORMAT " bytes)", video_id.c_str(),
               storage.describe().c_str(), static_cast<gint64>(o.size));
    return path;
  }
  return "";
}

std::string stored_prefix(const std::string &result_json) {
  if (result_json.empty() || result_json.find("storage_prefix") == std::string::npos)
    return "";
  try {
    json::Node node = json::parse(result_json, "a job's result");
    JsonObject *o = json::require_object(node.get(), "a job's result");
    return json::opt_string(o, "storage_prefix", "a job's result").value_or("");
  } catch (const Error &) {
    return "";
  }
}

Transcode::Publisher package_publisher(storage::Storage &storage, const store::Job &job) {
  return [&storage, video_id = job.video_id, pipeline = job.pipeline, version = job.token](const std::string &dir) {
    return publish_package(storage, dir, video_id, pipeline, version);
  };
}

std::function<std::string()> source_fetcher(storage::Storage &storage, const std::string &video_dir,
                                            const std::string &video_id) {
  return [&storage, video_dir, video_id] { return fetch_source(storage, video_dir, video_id); };
}

namespace {

// Runs fn on a thread of its own; a thread that cannot start runs nothing (logged: the next publish or delete of
// the same video removes what is left).
void detached(const char *what, std::function<void()> fn) {
  try {
    std::thread([fn = std::move(fn)] { fn(); }).detach();
  } catch (const std::system_error &e) {
    SLUICE_LOG(cat(), Warning, "cannot start a thread for %s: %s", what, e.what());
  }
}

} // namespace

void drop_other_versions_later(storage::Storage &storage, const store::Job &job) {
  const std::string current = stored_prefix(job.result_json);
  if (current.empty())
    return;
  detached("removing earlier versions", [&storage, video_id = job.video_id, pipeline = job.pipeline, current] {
    remove_other_versions(storage, video_id, pipeline, current);
  });
}

void discard_package_later(storage::Storage &storage, const std::string &prefix) {
  if (prefix.empty())
    return;
  detached("removing an unrecorded package", [&storage, prefix] {
    try {
      storage.remove_prefix(prefix);
    } catch (const std::exception &e) {
      SLUICE_LOG(cat(), Warning, "cannot remove the unrecorded package %s: %s", prefix.c_str(), e.what());
    }
  });
}

void remove_video_later(storage::Storage &storage, const std::string &video_id) {
  detached("removing a deleted video's objects", [&storage, video_id] {
    try {
      std::size_t n = storage.remove_prefix(video_prefix(video_id));
      SLUICE_LOG(cat(), Info, "video %s: %zu objects removed", video_id.c_str(), n);
    } catch (const std::exception &e) {
      SLUICE_LOG(cat(), Warning, "cannot remove the objects of video %s: %s", video_id.c_str(), e.what());
    }
  });
}

} // namespace sluice::jobs
