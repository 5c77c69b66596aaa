// SPDX-License-Identifier: LGPL-2.1-or-later
// Publishing a finished package folder to storage: every file, the playlists and manifests last.
#include "storage/publish.h"

#include "core/error.h"
#include "core/log.h"

#include <algorithm>
#include <filesystem>

namespace stdfs = std::filesystem;

namespace sluice::storage {

namespace {

log::Category *cat() {
  return log::category("sluice-storage", "sluice object storage");
}

// 0: media and other files, 1: a rendition's playlist, 2: a top-level playlist or manifest.
int rank(const std::string &relative) {
  bool listing = relative.ends_with(".m3u8") || relative.ends_with(".mpd");
  if (!listing)
    return 0;
  return relative.find('/') == std::string::npos ? 2 : 1;
}

} // namespace

std::vector<std::string> publish_dir(Storage &storage, const std::string &local_dir, const std::string &prefix) {
  if (!prefix.empty() && prefix.back() != '/')
    throw Error(ErrorCode::Invalid, "a publishing prefix ends with '/': '" + prefix + "'");
  check_prefix(prefix);
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(local_dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec))
      files.push_back(stdfs::relative(it->path(), local_dir).string());
  }
  if (ec)
    throw Error(ErrorCode::Io, "cannot read the package folder " + local_dir + ": " + ec.message());
  std::stable_sort(files.begin(), files.end(), [](const std::string &a, const std::string &b) {
    int ra = rank(a), rb = rank(b);
    return ra != rb ? ra < rb : a < b;
  });
  std::vector<std::string> written;
  for (const auto &relative : files) {
    std::string key = prefix + relative;
    storage.put_file(key, local_dir + "/" + relative, content_type_for(key));
    written.push_back(key);
  }
  SLUICE_LOG(cat(), Info, "published %zu files of %s to %s%s", written.size(), local_dir.c_str(),
             storage.describe().c_str(), prefix.c_str());
  return written;
}

} // namespace sluice::storage
