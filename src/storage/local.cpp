// SPDX-License-Identifier: LGPL-2.1-or-later
// LocalStorage: objects as files under a folder, written through a temporary name and renamed into place.
#include "storage/local.h"

#include "core/error.h"
#include "core/fs.h"

#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace stdfs = std::filesystem;

namespace sluice::storage {

namespace {

// Files being written carry this prefix: list() never shows them.
constexpr std::string_view kTempPrefix = ".sluice-tmp-";

[[noreturn]] void io_error(const std::string &what, int err) {
  throw Error(err == ENOSPC ? ErrorCode::NoSpace : ErrorCode::Io, what + ": " + g_strerror(err));
}

void write_all(int fd, const char *data, std::size_t size, const std::string &path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      io_error("cannot write " + path, errno);
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

std::string etag_of(const struct stat &st) {
  char buf[80];
  g_snprintf(buf, sizeof buf, "\"%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x-%lx\"",
             static_cast<gint64>(st.st_size), static_cast<gint64>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
             static_cast<long>(st.st_ino));
  return buf;
}

// A file being written next to its final name: renamed over it by commit(), removed if never committed.
class TempFile {
public:
  explicit TempFile(const std::string &final_path) : final_(final_path) {
    fs::make_dirs(stdfs::path(final_path).parent_path().string());
    tmp_ = (stdfs::path(final_path).parent_path() / (std::string(kTempPrefix) + "XXXXXX")).string();
    fd_ = g_mkstemp_full(tmp_.data(), O_WRONLY | O_CLOEXEC, 0644);
    if (fd_ < 0)
      io_error("cannot write " + final_path, errno);
  }
  ~TempFile() { discard(); }
  // Closes and removes the temporary file (nothing once committed).
  void discard() noexcept {
    if (fd_ >= 0)
      close(fd_);
    fd_ = -1;
    if (!committed_ && !tmp_.empty())
      g_unlink(tmp_.c_str());
    tmp_.clear();
  }
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;

  void write(const char *data, std::size_t size) { write_all(fd_, data, size, final_); }
  struct stat commit() {
    if (fsync(fd_) != 0)
      io_error("cannot write " + final_, errno);
    close(fd_);
    fd_ = -1;
    if (g_rename(tmp_.c_str(), final_.c_str()) != 0)
      io_error("cannot rename to " + final_, errno);
    committed_ = true;
    struct stat st {};
    g_stat(final_.c_str(), &st);
    return st;
  }

private:
  std::string final_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

class LocalUpload : public Upload {
public:
  LocalUpload(std::string key, const std::string &path) : key_(std::move(key)), file_(path) {}
  void write(const void *data, std::size_t size) override {
    if (done_)
      throw Error(ErrorCode::Internal, "write to a finished upload of " + key_);
    file_.write(static_cast<const char *>(data), size);
  }
  ObjectInfo finish() override {
    if (done_)
      throw Error(ErrorCode::Internal, "upload of " + key_ + " already ended");
    done_ = true;
    struct stat st = file_.commit();
    return ObjectInfo{key_, static_cast<std::int64_t>(st.st_size), etag_of(st), static_cast<std::int64_t>(st.st_mtime)};
  }
  void abort() noexcept override {
    done_ = true;
    file_.discard();
  }

private:
  std::string key_;
  TempFile file_;
  bool done_ = false;
};

// Removes the empty folders from dir up to (not including) root's own folders ("videos/" stays).
void prune(stdfs::path dir, const stdfs::path &root) {
  std::error_code ec;
  while (dir.string().size() > root.string().size() && dir.parent_path() != root) {
    if (!stdfs::remove(dir, ec)) // fails (and stops) on a folder that is not empty
      break;
    dir = dir.parent_path();
  }
}

} // namespace

LocalStorage::LocalStorage(std::string root) : root_(fs::absolute(root)) {
  fs::make_dirs(root_);
}

std::string LocalStorage::path_of(const std::string &key) const {
  return root_ + "/" + key;
}

std::string LocalStorage::describe() const {
  return "file://" + root_;
}

ObjectInfo LocalStorage::put_bytes(const std::string &key, std::string_view bytes, const std::string &) {
  check_key(key);
  TempFile file(path_of(key));
  file.write(bytes.data(), bytes.size());
  struct stat st = file.commit();
  return ObjectInfo{key, static_cast<std::int64_t>(st.st_size), etag_of(st), static_cast<std::int64_t>(st.st_mtime)};
}

ObjectInfo LocalStorage::put_file(const std::string &key, const std::string &path, const std::string &) {
  check_key(key);
  int in = g_open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (in < 0)
    io_error("cannot read " + path, errno);
  std::unique_ptr<int, void (*)(int *)> closer(&in, [](int *f) { close(*f); });
  TempFile file(path_of(key));
  std::string chunk(1u << 20, '\0');
  while (true) {
    ssize_t n = read(in, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      io_error("cannot read " + path, errno);
    if (n == 0)
      break;
    file.write(chunk.data(), static_cast<std::size_t>(n));
  }
  struct stat st = file.commit();
  return ObjectInfo{key, static_cast<std::int64_t>(st.st_size), etag_of(st), static_cast<std::int64_t>(st.st_mtime)};
}

std::unique_ptr<Upload> LocalStorage::begin_upload(const std::string &key, const std::string &) {
  check_key(key);
  return std::make_unique<LocalUpload>(key, path_of(key));
}

void LocalStorage::get_file(const std::string &key, const std::string &path) {
  check_key(key);
  if (!head(key))
    throw Error(ErrorCode::NotFound, "no object " + key + " in " + describe());
  TempFile file(path);
  get_range(key, 0, -1, [&file](const char *data, std::size_t size) { file.write(data, size); });
  file.commit();
}

void LocalStorage::get_range(const std::string &key, std::int64_t offset, std::int64_t length, const Sink &sink) {
  check_key(key);
  if (offset < 0 || length < -1)
    throw Error(ErrorCode::Invalid, "bad byte range of " + key);
  std::string path = path_of(key);
  int fd = g_open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
      throw Error(ErrorCode::NotFound, "no object " + key + " in " + describe());
    io_error("cannot read " + path, errno);
  }
  std::unique_ptr<int, void (*)(int *)> closer(&fd, [](int *f) { close(*f); });
  std::string chunk(256u << 10, '\0');
  std::int64_t at = offset;
  std::int64_t left = length;
  while (left != 0) {
    std::size_t want = left < 0 ? chunk.size() : static_cast<std::size_t>(std::min<std::int64_t>(left, chunk.size()));
    ssize_t n = pread(fd, chunk.data(), want, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      io_error("cannot read " + path, errno);
    if (n == 0)
      break;
    sink(chunk.data(), static_cast<std::size_t>(n));
    at += n;
    if (left > 0)
      left -= n;
  }
}

std::optional<ObjectInfo> LocalStorage::head(const std::string &key) {
  check_key(key);
  struct stat st {};
  if (lstat(path_of(key).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return std::nullopt;
  return ObjectInfo{key, static_cast<std::int64_t>(st.st_size), etag_of(st), static_cast<std::int64_t>(st.st_mtime)};
}

void LocalStorage::remove(const std::string &key) {
  check_key(key);
  std::string path = path_of(key);
  if (g_unlink(path.c_str()) != 0 && errno != ENOENT)
    io_error("cannot delete " + path, errno);
  prune(stdfs::path(path).parent_path(), root_);
}

std::vector<ObjectInfo> LocalStorage::list(const std::string &prefix) {
  check_prefix(prefix);
  // Walk the deepest folder the prefix names whole, keep the files whose key starts with the prefix.
  auto slash = prefix.rfind('/');
  std::string dir = slash == std::string::npos ? root_ : root_ + "/" + prefix.substr(0, slash);
  std::vector<ObjectInfo> out;
  std::error_code ec;
  if (!stdfs::is_directory(stdfs::symlink_status(dir, ec)))
    return out;
  for (auto it = stdfs::recursive_directory_iterator(dir, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec) || it->is_symlink(ec))
      continue;
    std::string name = it->path().filename().string();
    if (name.starts_with(kTempPrefix))
      continue;
    std::string key = it->path().string().substr(root_.size() + 1);
    if (!key.starts_with(prefix))
      continue;
    struct stat st {};
    if (lstat(it->path().c_str(), &st) != 0)
      continue;
    out.push_back(
        ObjectInfo{key, static_cast<std::int64_t>(st.st_size), etag_of(st), static_cast<std::int64_t>(st.st_mtime)});
  }
  if (ec)
    throw Error(ErrorCode::Io, "cannot list " + dir + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const ObjectInfo &a, const ObjectInfo &b) { return a.key < b.key; });
  return out;
}

std::size_t LocalStorage::remove_prefix(const std::string &prefix) {
  std::vector<ObjectInfo> objects = list(prefix);
  for (const auto &o : objects)
    remove(o.key);
  return objects.size();
}

std::string LocalStorage::presign_get(const std::string &key, std::chrono::seconds) {
  check_key(key);
  throw Error(ErrorCode::Unavailable, "a local folder has no presigned URLs: serve its files through sluice");
}

} // namespace sluice::storage
