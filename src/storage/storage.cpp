// SPDX-License-Identifier: LGPL-2.1-or-later
// What every storage shares: the checks of keys and prefixes, a key's Content-Type, an upload fed from a file.
#include "storage/storage.h"

#include "core/error.h"
#include "core/fs.h"

#include <glib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

namespace sluice::storage {

namespace {

bool safe_segments(std::string_view s, bool last_may_be_partial) {
  while (true) {
    auto slash = s.find('/');
    std::string_view segment = s.substr(0, slash);
    if (slash == std::string_view::npos)
      return last_may_be_partial ? (segment.empty() || (segment != "." && segment != ".." && fs::safe_segment(segment)))
                                 : fs::safe_segment(segment);
    if (!fs::safe_segment(segment))
      return false;
    s.remove_prefix(slash + 1);
  }
}

} // namespace

void Upload::write_file_range(int fd, std::int64_t offset, std::int64_t size) {
  std::string buf(static_cast<std::size_t>(std::min<std::int64_t>(size, 1 << 20)), '\0');
  while (size > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::int64_t>(size, static_cast<std::int64_t>(buf.size())));
    ssize_t got = pread(fd, buf.data(), n, offset);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      throw Error(ErrorCode::Io, std::string("cannot read the file being uploaded: ") +
                                     (got < 0 ? g_strerror(errno) : "it is shorter than was said"));
    write(buf.data(), static_cast<std::size_t>(got));
    offset += got;
    size -= got;
  }
}

void check_key(std::string_view key) {
  if (key.empty() || key.size() > 1024 || !safe_segments(key, false))
    throw Error(ErrorCode::Invalid, "'" + std::string(key) + "' is not a storage key (a relative path of safe names)");
}

void check_prefix(std::string_view prefix) {
  if (prefix.empty())
    return;
  if (prefix.size() > 1024 || !safe_segments(prefix, true))
    throw Error(ErrorCode::Invalid, "'" + std::string(prefix) + "' is not a storage prefix");
}

std::string content_type_for(std::string_view key) {
  static const std::array<std::pair<std::string_view, std::string_view>, 12> types = {{
      {".m3u8", "application/vnd.apple.mpegurl"},
      {".mpd", "application/dash+xml"},
      {".ts", "video/mp2t"},
      {".m4s", "video/iso.segment"},
      {".mp4", "video/mp4"},
      {".m4a", "audio/mp4"},
      {".jpg", "image/jpeg"},
      {".png", "image/png"},
      {".webp", "image/webp"},
      {".vtt", "text/vtt"},
      {".json", "application/json"},
      {".txt", "text/plain"},
  }};
  for (const auto &[ext, type] : types)
    if (key.ends_with(ext))
      return std::string(type);
  return "application/octet-stream";
}

} // namespace sluice::storage
