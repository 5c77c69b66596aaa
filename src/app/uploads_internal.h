// SPDX-License-Identifier: LGPL-2.1-or-later
// What the source files of resumable uploads share (app/uploads*.cpp only).
#pragma once

#include "app/uploads.h"
#include "core/log.h"
#include "storage/storage.h"

#include <glib.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <vector>

namespace sluice::app::uploads_detail {

inline log::Category *uploads_log() {
  static log::Category *c = log::category("sluice-uploads", "sluice resumable uploads");
  return c;
}

// Within one PATCH, the offset is made durable (and recorded) every this many bytes.
inline constexpr std::int64_t kSyncEvery = 16LL << 20;
// Written-back (not waited for) every this many bytes.
inline constexpr std::int64_t kFlushEvery = 1LL << 20;
inline Failure refused(Refusal r, std::string message, std::string field = "") {
  return Failure{r, std::move(message), std::move(field)};
}

inline std::int64_t now_us() {
  return g_get_real_time();
}

inline int write_all(int fd, const char *data, std::size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return 0;
}

inline Failure io_failure(int err, const std::string &what) {
  return refused(err == ENOSPC ? Refusal::NoSpace : Refusal::Unavailable, what + ": " + g_strerror(err));
}

inline bool is_final(const store::ResumableUpload &u) {
  return g_str_has_prefix(u.concat.c_str(), "final");
}

inline bool is_partial(const store::ResumableUpload &u) {
  return u.concat == "partial";
}

// [storage] in a bucket: a partial upload's object (its bytes, for a final on any process), under the storage's root.
inline std::string partial_key(const std::string &id) {
  return "uploads/" + id;
}

// Joins the files of a final upload's parts (`sources`, of `parts`' lengths) into dest; 0 or an errno. Blocking: run
// off the main loop. `copied`: when the last byte was appended (monotonic µs). See uploads_join.cpp.
int join_files(const std::vector<std::string> &sources, const std::vector<store::ResumableUpload> &parts,
               const std::string &dest, std::int64_t &copied);

// [storage] in a bucket: makes each part's file (`sources`) whole here before the join. A part this process received
// whole (and still has) stays; another's is fetched from its object (streamed to the file through a temporary name).
// Blocking: run off the main loop. nullopt, or why not (an object missing: Conflict; the bucket: Unavailable). See
// uploads_bucket.cpp.
std::optional<Failure> gather_parts(storage::Storage *storage, const std::string &holder,
                                    const std::vector<store::ResumableUpload> &parts,
                                    const std::vector<std::string> &sources);

} // namespace sluice::app::uploads_detail
