// SPDX-License-Identifier: LGPL-2.1-or-later
// What the source files of resumable uploads share (app/uploads*.cpp only).
#pragma once

#include "app/uploads.h"
#include "core/log.h"

#include <glib.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace sluice::app::uploads_detail {

inline log::Category *uploads_log() {
  static log::Category *c = log::category("sluice-uploads", "sluice resumable uploads");
  return c;
}

// Within one PATCH, the offset is made durable (and recorded) every this many bytes.
inline constexpr std::int64_t kSyncEvery = 16LL << 20;
// Written-back (not waited for) every this many bytes.
inline constexpr std::int64_t kFlushEvery = 1LL << 20;
// The bytes a PATCH brought are synced and recorded this long after its answer at the latest.
inline constexpr std::int64_t kSyncWithinUs = 1 * G_USEC_PER_SEC;
// A partial upload's bytes (Upload-Concat: partial) are the final upload's once it names them: they are written to
// disk once, in the joined file, when the final comes within this long (tus clients send it as soon as their parts
// are in), and synced where they are otherwise, or when a HEAD or GET asks. Neither written back as they arrive nor
// synced every 16 MiB: on a network faster than the disk that writing would take as long as the upload again.
inline constexpr std::int64_t kPartialSyncWithinUs = 10 * G_USEC_PER_SEC;

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

// Joins the files of a final upload's parts (`sources`, of `parts`' lengths) into dest; 0 or an errno. Blocking: run
// off the main loop. `copied`: when the last byte was appended (monotonic µs). See uploads_join.cpp.
int join_files(const std::vector<std::string> &sources, const std::vector<store::ResumableUpload> &parts,
               const std::string &dest, std::int64_t &copied);

} // namespace sluice::app::uploads_detail
