// SPDX-License-Identifier: LGPL-2.1-or-later
// Serving files from a folder over libsoup: safe paths, MIME types, HEAD, Range, ETag, caching.
#include "http/files.h"

#include "core/error.h"
#include "core/fs.h"
#include "http/text.h"

#include <fcntl.h>
#include <glib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <string_view>
#include <unordered_map>

namespace sluice::http {

namespace {

struct GFree {
  void operator()(void *p) const { g_free(p); }
};
using GStr = std::unique_ptr<char, GFree>;
struct BytesUnref {
  void operator()(GBytes *b) const {
    if (b)
      g_bytes_unref(b);
  }
};
using BytesPtr = std::unique_ptr<GBytes, BytesUnref>;
struct DateUnref {
  void operator()(GDateTime *d) const {
    if (d)
      g_date_time_unref(d);
  }
};
using DatePtr = std::unique_ptr<GDateTime, DateUnref>;

class Fd {
public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0)
      close(fd_);
  }
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

private:
  int fd_;
};

std::string file_etag(std::uint64_t inode, std::int64_t size, std::int64_t mtime_ns) {
  GStr tag(g_strdup_printf("\"%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x\"",
                           static_cast<gint64>(inode), static_cast<gint64>(size), static_cast<gint64>(mtime_ns)));
  return tag.get();
}

// The ETag of a text served instead of a file: "b" and the first half of its SHA-256.
std::string text_etag(const char *data, std::size_t size) {
  GStr sum(g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(data), size));
  return "\"b" + std::string(sum.get(), 32) + "\"";
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); i++) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size())
      return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// Decimal digits only; saturates at INT64_MAX. nullopt when empty or not all digits.
std::optional<std::int64_t> parse_position(std::string_view s) {
  if (s.empty())
    return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    int d = c - '0';
    v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
  }
  return v;
}

// Does an If-None-Match list (entity-tags or "*") match etag by weak comparison (RFC 9110 8.8.3.2)?
bool none_match(std::string_view list, const std::string &etag) {
  std::size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (is_ows(list[i]) || list[i] == ','))
      i++;
    if (i == list.size())
      break;
    if (list[i] == '*')
      return true;
    if (list.compare(i, 2, "W/") == 0)
      i += 2;
    if (i >= list.size() || list[i] != '"')
      return false; // malformed: stop, no match
    std::size_t close = list.find('"', i + 1);
    if (close == std::string_view::npos)
      return false;
    if (list.substr(i, close + 1 - i) == etag) // weak comparison: a W/ prefix is ignored
      return true;
    i = close + 1;
  }
  return false;
}

std::string http_date(std::int64_t unix_seconds) {
  DatePtr dt(g_date_time_new_from_unix_utc(unix_seconds));
  if (!dt)
    return "";
  GStr s(soup_date_time_to_string(dt.get(), SOUP_DATE_HTTP));
  return s ? s.get() : "";
}

std::optional<std::int64_t> parse_http_date(const char *s) {
  DatePtr dt(soup_date_time_new_from_http_string(s));
  if (!dt)
    return std::nullopt;
  return g_date_time_to_unix(dt.get());
}

} // namespace

std::optional<std::vector<std::string>> split_path(const std::string &encoded) {
  if (encoded.empty())
    return std::nullopt;
  std::vector<std::string> segments;
  std::string_view rest(encoded);
  while (true) {
    std::size_t slash = rest.find('/');
    auto decoded = percent_decode(rest.substr(0, slash));
    if (!decoded || !fs::safe_segment(*decoded))
      return std::nullopt;
    segments.push_back(std::move(*decoded));
    if (slash == std::string_view::npos)
      break;
    rest.remove_prefix(slash + 1);
  }
  return segments;
}

const char *mime_type_for(const std::string &name) {
  static const struct {
    const char *ext;
    const char *type;
  } table[] = {
      {"m3u8", "application/vnd.apple.mpegurl"},
      {"ts", "video/mp2t"},
      {"m4s", "video/iso.segment"},
      {"mp4", "video/mp4"},
      {"m4a", "audio/mp4"},
      {"mpd", "application/dash+xml"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"png", "image/png"},
      {"webp", "image/webp"},
      {"vtt", "text/vtt"},
      {"json", "application/json"},
      {"html", "text/html; charset=utf-8"},
      {"js", "text/javascript"},
      {"css", "text/css"},
      {"svg", "image/svg+xml"},
  };
  std::size_t dot = name.rfind('.');
  std::size_t slash = name.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return "application/octet-stream";
  const char *ext = name.c_str() + dot + 1;
  for (const auto &e : table)
    if (g_ascii_strcasecmp(ext, e.ext) == 0)
      return e.type;
  return "application/octet-stream";
}

RangeKind parse_range(const std::string &header, std::int64_t size, ByteRange &out) {
  std::string_view h = trim(header);
  std::size_t eq = h.find('=');
  if (eq == std::string_view::npos)
    return RangeKind::None;
  std::string_view unit = trim(h.substr(0, eq));
  if (unit.size() != 5 || g_ascii_strncasecmp(unit.data(), "bytes", 5) != 0)
    return RangeKind::None;
  std::string_view spec = trim(h.substr(eq + 1));
  if (spec.find(',') != std::string_view::npos)
    return RangeKind::None; // several ranges: we serve the whole representation instead
  std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos)
    return RangeKind::None;
  std::string_view first_s = trim(spec.substr(0, dash)), last_s = trim(spec.substr(dash + 1));
  if (first_s.empty()) { // suffix range "-N": the last N bytes
    auto n = parse_position(last_s);
    if (!n)
      return RangeKind::None;
    if (*n == 0)
      return RangeKind::Unsatisfiable;
    if (size == 0)
      return RangeKind::None; // the whole (empty) representation is the answer
    out.start = *n >= size ? 0 : size - *n;
    out.end = size - 1;
    return RangeKind::Satisfiable;
  }
  auto first = parse_position(first_s);
  if (!first)
    return RangeKind::None;
  std::int64_t last = INT64_MAX;
  if (!last_s.empty()) {
    auto l = parse_position(last_s);
    if (!l || *l < *first)
      return RangeKind::None; // invalid range-spec: ignore the header
    last = *l;
  }
  if (*first >= size)
    return RangeKind::Unsatisfiable;
  out.start = *first;
  out.end = last >= size ? size - 1 : last;
  return RangeKind::Satisfiable;
}

void answer_file(bool head, SoupMessageHeaders *req, SoupMessageHeaders *resp, const std::string &path,
                 const ServeOptions &opts, FileAnswer &out) {
  // What is served: its size, validators and (lazily) its bytes. Nothing is set on resp until every step that
  // can fail has succeeded.
  std::int64_t size = 0;
  std::string etag;
  std::optional<std::int64_t> mtime; // seconds, files only
  std::unique_ptr<Fd> fd;
  std::shared_ptr<const FileCache::Entry> entry;
  std::string last_modified;
  if (opts.text) {
    size = static_cast<std::int64_t>(g_bytes_get_size(opts.text->bytes));
    etag = opts.text->etag;
  } else if (opts.body) {
    size = static_cast<std::int64_t>(opts.body->size());
    etag = text_etag(opts.body->data(), opts.body->size());
  } else if (opts.object) {
    size = opts.object->size;
    etag = opts.object->etag;
    if (opts.object->last_modified > 0)
      mtime = opts.object->last_modified;
  } else if (auto cached = opts.cache && !opts.descriptor ? opts.cache->get(path) : nullptr) {
    entry = cached;
    size = cached->size;
    mtime = cached->mtime_ns / 1000000000;
    etag = cached->etag;
    last_modified = cached->last_modified;
  } else {
    fd = std::make_unique<Fd>(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd->get() < 0) {
      int e = errno;
      throw Error(e == ENOENT || e == ENOTDIR ? ErrorCode::NotFound : ErrorCode::Io,
                  "cannot open " + path + ": " + g_strerror(e));
    }
    struct stat st;
    if (fstat(fd->get(), &st) != 0)
      throw Error(ErrorCode::Io, "cannot stat " + path + ": " + g_strerror(errno));
    if (!S_ISREG(st.st_mode))
      throw Error(ErrorCode::NotFound, path + " is not a regular file");
    size = st.st_size;
    mtime = st.st_mtim.tv_sec;
    std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    etag = file_etag(st.st_ino, size, mtime_ns);
  }
  if (mtime && !entry)
    last_modified = http_date(*mtime);

  // Conditionals (RFC 9110 13.2.2): If-None-Match, or else If-Modified-Since, may answer 304.
  bool not_modified = false;
  if (const char *inm = soup_message_headers_get_list(req, "If-None-Match")) {
    not_modified = none_match(inm, etag);
  } else if (const char *ims = soup_message_headers_get_one(req, "If-Modified-Since"); ims && mtime) {
    auto since = parse_http_date(ims);
    not_modified = since && *mtime <= *since;
  }

  // Range, for GET only (RFC 9110 14.2), unless If-Range says the client's copy is another version.
  RangeKind kind = RangeKind::None;
  ByteRange range;
  const char *range_header = head ? nullptr : soup_message_headers_get_list(req, "Range");
  if (!not_modified && range_header) {
    kind = parse_range(range_header, size, range);
    if (kind != RangeKind::None) {
      if (const char *if_range = soup_message_headers_get_one(req, "If-Range")) {
        std::string_view v = trim(if_range);
        bool same = false;
        if (!v.empty() && v.front() == '"')
          same = v == etag; // strong comparison; weak tags never match
        else if (mtime && !v.empty() && v.substr(0, 2) != "W/")
          same = parse_http_date(std::string(v).c_str()) == mtime;
        if (!same)
          kind = RangeKind::None;
      }
    }
  }

  // The bytes, for a GET that sends content.
  BytesPtr content;
  const bool send = !head && !not_modified && kind != RangeKind::Unsatisfiable && size > 0;
  if (send && !opts.object) {
    if (opts.text) {
      content.reset(g_bytes_ref(opts.text->bytes));
    } else if (opts.body) {
      content.reset(g_bytes_new(opts.body->data(), opts.body->size()));
    } else if (entry) {
      content.reset(g_bytes_ref(entry->bytes));
    } else if (opts.descriptor) {
      out.fd = fd->release();
    } else {
      GError *err = nullptr;
      GMappedFile *mapped = g_mapped_file_new_from_fd(fd->get(), FALSE, &err);
      if (!mapped)
        throw Error::from_gerror(ErrorCode::Io, "cannot map " + path, err);
      content.reset(g_mapped_file_get_bytes(mapped));
      g_mapped_file_unref(mapped);
      if (static_cast<std::int64_t>(g_bytes_get_size(content.get())) != size)
        throw Error(ErrorCode::Io, path + " changed size while being served");
    }
  }
  fd.reset();

  soup_message_headers_replace(resp, "ETag", etag.c_str());
  if (!last_modified.empty())
    soup_message_headers_replace(resp, "Last-Modified", last_modified.c_str());
  if (!opts.cache_control.empty())
    soup_message_headers_replace(resp, "Cache-Control", opts.cache_control.c_str());
  soup_message_headers_replace(resp, "Accept-Ranges", "bytes");

  if (not_modified) {
    out.status = SOUP_STATUS_NOT_MODIFIED;
    // libsoup would otherwise add "Content-Length: 0"; RFC 9110 8.6 allows only the length a 200 would have.
    soup_message_headers_set_content_length(resp, size);
    return;
  }
  if (kind == RangeKind::Unsatisfiable) {
    // An error like every other of the server: JSON, and nothing a cache should keep.
    out.status = SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE;
    GStr cr(g_strdup_printf("bytes */%" G_GINT64_FORMAT, static_cast<gint64>(size)));
    soup_message_headers_replace(resp, "Content-Range", cr.get());
    soup_message_headers_replace(resp, "Cache-Control", "no-store");
    GStr json(
        g_strdup_printf("{\"error\":{\"code\":\"range_not_satisfiable\",\"message\":\"the range starts beyond the "
                        "end of the file (%" G_GINT64_FORMAT " bytes)\"}}\n",
                        static_cast<gint64>(size)));
    out.json = json.get();
    return;
  }
  // A Range not honoured: the whole representation is the answer.
  out.drop_range = range_header && kind == RangeKind::None;

  soup_message_headers_replace(resp, "Content-Type", mime_type_for(path));
  out.status = SOUP_STATUS_OK;
  out.offset = 0;
  out.length = size;
  if (kind == RangeKind::Satisfiable) {
    out.status = SOUP_STATUS_PARTIAL_CONTENT;
    out.offset = range.start;
    out.length = range.end - range.start + 1;
    soup_message_headers_set_content_range(resp, range.start, range.end, size);
  }
  soup_message_headers_set_content_length(resp, out.length);
  out.send_object = send && opts.object;
  out.body = content.release();
}

FileAnswer::~FileAnswer() {
  if (body)
    g_bytes_unref(body);
  if (fd >= 0)
    close(fd);
}

void serve_file(SoupServerMessage *msg, const std::string &path, const ServeOptions &opts) {
  const char *method = soup_server_message_get_method(msg);
  const bool head = g_strcmp0(method, "HEAD") == 0;
  if (!head && g_strcmp0(method, "GET") != 0) {
    soup_server_message_set_status(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, nullptr);
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", "GET, HEAD");
    return;
  }
  SoupMessageHeaders *req = soup_server_message_get_request_headers(msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers(msg);
  FileAnswer a;
  answer_file(head, req, resp, path, opts, a);
  // libsoup's server applies a request's Range itself to a 200 GET response with a body (handle_partial_get in
  // soup-server-io.c, also for If-Range mismatches and multi-range requests); drop the header when we decided
  // to send the whole representation.
  if (a.drop_range)
    soup_message_headers_remove(req, "Range");
  if (!a.json.empty()) {
    soup_server_message_set_status(msg, a.status, nullptr);
    soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, a.json.data(), a.json.size());
    return;
  }
  soup_server_message_set_status(msg, a.status, nullptr);
  if (a.body) {
    SoupMessageBody *body = soup_server_message_get_response_body(msg);
    if (a.offset == 0 && a.length == static_cast<std::int64_t>(g_bytes_get_size(a.body))) {
      soup_message_body_append_bytes(body, a.body);
    } else {
      BytesPtr slice(g_bytes_new_from_bytes(a.body, static_cast<gsize>(a.offset), static_cast<gsize>(a.length)));
      soup_message_body_append_bytes(body, slice.get());
    }
  } else if (a.send_object) {
    opts.object->send(msg, a.offset, a.length);
  }
}

ServedText::ServedText(std::string text) : etag(text_etag(text.data(), text.size())) {
  auto *kept = new std::string(std::move(text));
  bytes = g_bytes_new_with_free_func(
      kept->data(), kept->size(), [](gpointer p) { delete static_cast<std::string *>(p); }, kept);
}

ServedText::~ServedText() {
  g_bytes_unref(bytes);
}

// ---------------------------------------------------------------------------------------------

FileCache::Entry::~Entry() {
  if (bytes)
    g_bytes_unref(bytes);
}

struct FileCache::Impl {
  // Most recently used at the front.
  std::list<std::shared_ptr<Entry>> lru;
  std::unordered_map<std::string, std::list<std::shared_ptr<Entry>>::iterator> index;
};

FileCache::FileCache(std::size_t budget_bytes, std::size_t max_file_bytes)
    : impl_(std::make_unique<Impl>()), budget_(budget_bytes), max_file_(max_file_bytes) {}

FileCache::~FileCache() = default;

std::size_t FileCache::entries() const {
  return impl_->lru.size();
}

std::shared_ptr<const FileCache::Entry> FileCache::get(const std::string &path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    int e = errno;
    if (auto it = impl_->index.find(path); it != impl_->index.end()) {
      used_ -= static_cast<std::size_t>((*it->second)->size);
      impl_->lru.erase(it->second);
      impl_->index.erase(it);
    }
    throw Error(e == ENOENT || e == ENOTDIR ? ErrorCode::NotFound : ErrorCode::Io,
                "cannot open " + path + ": " + g_strerror(e));
  }
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorCode::NotFound, path + " is not a regular file");
  const std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (auto it = impl_->index.find(path); it != impl_->index.end()) {
    auto &e = *it->second;
    if (e->inode == static_cast<std::uint64_t>(st.st_ino) && e->size == st.st_size && e->mtime_ns == mtime_ns) {
      impl_->lru.splice(impl_->lru.begin(), impl_->lru, it->second);
      return *impl_->lru.begin();
    }
    used_ -= static_cast<std::size_t>(e->size);
    impl_->lru.erase(it->second);
    impl_->index.erase(it);
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_file_)
    return nullptr;

  // Read it whole with read(): for files this small that is cheaper than mapping and unmapping.
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    int e = errno;
    throw Error(e == ENOENT || e == ENOTDIR ? ErrorCode::NotFound : ErrorCode::Io,
                "cannot open " + path + ": " + g_strerror(e));
  }
  struct stat fst;
  if (fstat(fd.get(), &fst) != 0 || fst.st_ino != st.st_ino || fst.st_size != st.st_size)
    throw Error(ErrorCode::Io, path + " changed while being read");
  auto size = static_cast<std::size_t>(st.st_size);
  auto *data = static_cast<char *>(g_malloc(size ? size : 1));
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd.get(), data + got, size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      g_free(data);
      throw Error(ErrorCode::Io,
                  "cannot read " + path + (n < 0 ? std::string(": ") + g_strerror(errno) : ": short read"));
    }
    got += static_cast<std::size_t>(n);
  }
  auto e = std::make_shared<Entry>();
  e->path = path;
  e->inode = static_cast<std::uint64_t>(st.st_ino);
  e->size = st.st_size;
  e->mtime_ns = mtime_ns;
  e->etag = file_etag(st.st_ino, st.st_size, mtime_ns);
  e->last_modified = http_date(st.st_mtim.tv_sec);
  e->bytes = g_bytes_new_take(data, size);
  impl_->lru.push_front(e);
  impl_->index[path] = impl_->lru.begin();
  used_ += size;
  while (used_ > budget_ && impl_->lru.size() > 1) {
    auto &last = impl_->lru.back();
    used_ -= static_cast<std::size_t>(last->size);
    impl_->index.erase(last->path);
    impl_->lru.pop_back();
  }
  return e;
}

} // namespace sluice::http
