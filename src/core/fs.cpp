// SPDX-License-Identifier: LGPL-2.1-or-later
// File system helpers built on std::filesystem and POSIX for fsync.
#include "core/fs.h"

#include "core/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace stdfs = std::filesystem;

namespace sluice::fs {

bool exists(const std::string &path) {
  std::error_code ec;
  return stdfs::exists(path, ec);
}

bool is_dir(const std::string &path) {
  std::error_code ec;
  return stdfs::is_directory(path, ec);
}

std::int64_t file_size(const std::string &path) {
  std::error_code ec;
  auto s = stdfs::file_size(path, ec);
  return ec ? -1 : static_cast<std::int64_t>(s);
}

std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::Io, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_atomic(const std::string &path, const std::string &contents) {
  std::string tmp = path + ".tmp-" + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorCode::Io, "cannot write " + tmp + ": " + g_strerror(errno));
  const char *p = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      throw Error(ErrorCode::Io, "cannot write " + tmp + ": " + g_strerror(e));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    throw Error(ErrorCode::Io, "cannot rename " + tmp + ": " + g_strerror(e));
  }
}

void make_dirs(const std::string &path) {
  std::error_code ec;
  stdfs::create_directories(path, ec);
  if (ec)
    throw Error(ErrorCode::Io, "cannot create " + path + ": " + ec.message());
}

void remove_all(const std::string &path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
}

std::vector<std::string> list_dir(const std::string &path) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = stdfs::directory_iterator(path, ec); !ec && it != stdfs::directory_iterator(); it.increment(ec))
    out.push_back(it->path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string join(const std::string &a, const std::string &b) {
  // What std::filesystem's operator/ makes on POSIX, without building paths (every media request joins here).
  if (!b.empty() && b[0] == '/')
    return b;
  if (a.empty())
    return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string absolute(const std::string &path) {
  std::error_code ec;
  auto p = stdfs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

bool safe_segment(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

namespace {

std::optional<std::string> real_path(const std::string &path) {
  std::unique_ptr<char, decltype(&free)> r(realpath(path.c_str(), nullptr), &free);
  if (!r)
    return std::nullopt;
  return std::string(r.get());
}

} // namespace

std::optional<std::string> resolve_under(const std::string &root, const std::vector<std::string> &segments,
                                         const std::string &base) {
  if (segments.empty())
    return std::nullopt;
  for (const auto &s : segments)
    if (!safe_segment(s))
      return std::nullopt;
  auto real_root = real_path(root);
  if (!real_root)
    return std::nullopt;
  // Is `path` strictly inside the folder `dir` (both real paths)?
  auto inside = [](const std::string &path, const std::string &dir) {
    std::string prefix = dir.back() == '/' ? dir : dir + '/';
    return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0;
  };
  if (!base.empty()) {
    auto real_base = real_path(base);
    if (!real_base || (*real_root != *real_base && !inside(*real_root, *real_base)))
      return std::nullopt;
  }
  std::string candidate = *real_root;
  for (const auto &s : segments) {
    if (candidate.empty() || candidate.back() != '/')
      candidate += '/';
    candidate += s;
  }
  auto real = real_path(candidate);
  if (!real || !inside(*real, *real_root))
    return std::nullopt;
  struct stat st;
  if (stat(real->c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return std::nullopt;
  return real;
}

} // namespace sluice::fs
