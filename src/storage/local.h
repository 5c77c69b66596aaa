// SPDX-License-Identifier: LGPL-2.1-or-later
// LocalStorage: objects as files under a folder, written through a temporary name and renamed into place.
#pragma once

#include "storage/storage.h"

#include <string>

namespace sluice::storage {

class LocalStorage : public Storage {
public:
  explicit LocalStorage(std::string root); // the folder is made when missing
  const std::string &root() const { return root_; }
  // The file that holds key (whether or not it exists).
  std::string path_of(const std::string &key) const;

  std::string describe() const override;
  ObjectInfo put_file(const std::string &key, const std::string &path, const std::string &content_type) override;
  ObjectInfo put_bytes(const std::string &key, std::string_view bytes, const std::string &content_type) override;
  std::unique_ptr<Upload> begin_upload(const std::string &key, const std::string &content_type) override;
  void get_file(const std::string &key, const std::string &path) override;
  void get_range(const std::string &key, std::int64_t offset, std::int64_t length, const Sink &sink) override;
  std::optional<ObjectInfo> head(const std::string &key) override;
  void remove(const std::string &key) override;
  std::size_t remove_prefix(const std::string &prefix) override;
  std::vector<ObjectInfo> list(const std::string &prefix) override;
  std::string presign_get(const std::string &key, std::chrono::seconds ttl) override;

private:
  std::string root_;
};

} // namespace sluice::storage
