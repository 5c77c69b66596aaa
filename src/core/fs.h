// SPDX-License-Identifier: LGPL-2.1-or-later
// File system helpers: atomic writes, recursive removal, directory listing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::fs {

bool exists(const std::string &path);
bool is_dir(const std::string &path);
std::int64_t file_size(const std::string &path); // -1 if missing
std::string read_file(const std::string &path);  // throws
// Writes to a temporary sibling, fsyncs and renames over path: readers see the old or the new file.
void write_atomic(const std::string &path, const std::string &contents);
void make_dirs(const std::string &path);
// Removes a file or a directory tree; no error when it does not exist.
void remove_all(const std::string &path);
std::vector<std::string> list_dir(const std::string &path); // names, sorted
std::string join(const std::string &a, const std::string &b);
std::string absolute(const std::string &path);

} // namespace sluice::fs
