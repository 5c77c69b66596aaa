// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload's remembered uploads: the URL of each unfinished upload in the user's cache folder, to resume it.
#include "cli/upload_internal.h"

#include "core/error.h"
#include "core/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace sluice::cli::upload_detail {

namespace {

// Remembered uploads that were never finished are forgotten after this long (servers expire them sooner).
constexpr gint64 kEntryLifetimeS = 30 * 24 * 3600;

} // namespace

Remembered::Remembered(const std::string &server, const std::string &path, const struct stat &st) {
  dir_ = fs::join(fs::join(g_get_user_cache_dir(), "sluice"), "uploads");
  identity_ = "sluice-upload\n" + server + "\n" + path + "\n" + std::to_string(st.st_size) + "\n" +
              std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  g_autofree gchar *hex = g_compute_checksum_for_string(G_CHECKSUM_SHA256, identity_.c_str(), -1);
  file_ = fs::join(dir_, std::string(hex) + ".json");
  lock_file_ = fs::join(dir_, std::string(hex) + ".lock");
}

Remembered::~Remembered() {
  if (lock_fd_ >= 0)
    close(lock_fd_);
}

void Remembered::open() {
  if (lock_fd_ >= 0)
    close(lock_fd_);
  lock_fd_ = -1;
  if (g_mkdir_with_parents(dir_.c_str(), 0700) != 0)
    throw Exit(kExitFailed, "cannot create " + dir_ + ": " + g_strerror(errno));
  const gint64 now = g_get_real_time() / G_USEC_PER_SEC;
  for (const auto &name : fs::list_dir(dir_)) {
    struct stat st {};
    std::string p = fs::join(dir_, name);
    if ((g_str_has_suffix(name.c_str(), ".json") || g_str_has_suffix(name.c_str(), ".lock")) &&
        stat(p.c_str(), &st) == 0 && now - st.st_mtim.tv_sec > kEntryLifetimeS && p != lock_file_)
      unlink(p.c_str());
  }
  lock_fd_ = ::open(lock_file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    throw Exit(kExitFailed, "cannot open " + lock_file_ + ": " + g_strerror(errno));
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    throw Exit(kExitFailed, "another `sluice upload` of this file to this server is running");
}

std::string Remembered::url() const {
  if (!fs::exists(file_))
    return "";
  try {
    json::Node n = json::parse(fs::read_file(file_), file_);
    JsonObject *o = json::require_object(n.get(), file_);
    if (json::opt_string(o, "identity", file_).value_or("") != identity_)
      return "";
    return json::opt_string(o, "url", file_).value_or("");
  } catch (const Error &e) {
    SLUICE_LOG(upload_log(), Warning, "ignoring %s: %s", file_.c_str(), e.what());
    return "";
  }
}

void Remembered::remember(const std::string &url) {
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "url", url.c_str());
  json_object_set_string_member(o, "identity", identity_.c_str());
  json_object_set_int_member(o, "created", g_get_real_time() / G_USEC_PER_SEC);
  json::Node n(json::object_node(o));
  try {
    fs::write_atomic(file_, json::to_string(n.get(), true) + "\n");
  } catch (const Error &e) {
    // The upload goes on; only resuming it after an interruption will not be possible.
    std::fprintf(stderr, "sluice: warning: cannot remember the upload (%s): it cannot resume if interrupted\n",
                 e.what());
  }
}

void Remembered::forget() {
  unlink(file_.c_str());
  unlink(lock_file_.c_str());
}

} // namespace sluice::cli::upload_detail
