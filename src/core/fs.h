// SPDX-License-Identifier: LGPL-2.1-or-later
// File system helpers: atomic writes, recursive removal, directory listing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

// A path segment that names one entry of a folder: not empty, ".", "..", and without '/', '\\' or NUL.
bool safe_segment(std::string_view s);
// The real path (symlinks resolved) of the regular file root/segments... if it exists and stays inside
// the real path of root, and root itself resolves to base or a folder inside it (so that a folder
// replaced by a link to /etc serves nothing); nullopt otherwise. base defaults to root; every segment
// must be a safe_segment.
std::optional<std::string> resolve_under(const std::string &root, const std::vector<std::string> &segments,
                                         const std::string &base = "");

} // namespace sluice::fs
