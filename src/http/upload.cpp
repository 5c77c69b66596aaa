// SPDX-License-Identifier: LGPL-2.1-or-later
// Streaming uploads: libsoup's body accumulation is turned off and every chunk goes straight to disk.
#include "http/upload.h"

#include "core/error.h"
#include "core/fs.h"
#include "http/log.h"
#include "jobs/stored.h"
#include "store/store.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace sluice::http {

namespace {

// The text fields of a form stay in memory until the upload is answered: bounded in count and bytes.
constexpr std::size_t kMaxFields = 32;
constexpr std::size_t kMaxFieldBytes = 64 * 1024; // all text fields together
constexpr const char *kDataKey = "sluice-upload";

std::string lower(std::string s) {
  for (auto &c : s)
    c = g_ascii_tolower(c);
  return s;
}

} // namespace

Upload::Upload(SoupServerMessage *msg, const std::string &tmp_dir, std::int64_t max_size, storage::Storage *storage)
    : max_size_(max_size), storage_(storage) {
  SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
  goffset length = soup_message_headers_get_content_length(h);
  if (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH && length > max_size)
    throw UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                      "the upload is " + std::to_string(length) + " bytes; this server accepts at most " +
                          std::to_string(max_size),
                      ""};

  const char *ct = soup_message_headers_get_one(h, "Content-Type");
  std::string type = ct ? lower(ct) : "";
  if (auto semi = type.find(';'); semi != std::string::npos)
    type = type.substr(0, semi);
  while (!type.empty() && type.back() == ' ')
    type.pop_back();

  if (type == "multipart/form-data") {
    kind_ = Kind::Multipart;
    std::string boundary;
    try {
      boundary = MultipartParser::boundary_from_content_type(ct);
    } catch (const Error &e) {
      throw UploadError{SOUP_STATUS_BAD_REQUEST, "bad_request", e.what(), ""};
    }
    MultipartHandler handler;
    handler.begin = [this](const PartInfo &p) {
      if (p.name == "file") {
        if (seen_file_)
          throw Error("the form has more than one 'file' part");
        seen_file_ = true;
        in_file_part_ = true;
        filename_ = p.filename;
      } else if (!p.filename.empty()) {
        // A file under another name is not a text field to keep in memory.
        throw Error("the form has a file in the field '" + p.name + "'; the file goes in the field 'file'");
      } else {
        in_file_part_ = false;
        field_name_ = p.name;
        auto &v = fields_[p.name];
        field_bytes_ -= v.size();
        v.clear();
        if (fields_.size() > kMaxFields)
          throw UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                            "the form has more than " + std::to_string(kMaxFields) + " text fields", p.name};
      }
    };
    handler.data = [this](const PartInfo &, const char *data, std::size_t len) {
      if (in_file_part_) {
        write_file(data, len);
      } else {
        if (field_bytes_ + len > kMaxFieldBytes)
          throw UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                            "the form's text fields are longer than " + std::to_string(kMaxFieldBytes) +
                                " bytes in all",
                            field_name_};
        // A NUL would cut the value wherever it is read as a C string ("5\0junk" read as 5): refused.
        if (std::memchr(data, '\0', len))
          throw Error("form field '" + field_name_ + "' holds a NUL character");
        fields_[field_name_].append(data, len);
        field_bytes_ += len;
      }
    };
    handler.end = [this](const PartInfo &) { in_file_part_ = false; };
    parser_ = std::make_unique<MultipartParser>(boundary, std::move(handler));
  } else if (g_str_has_prefix(type.c_str(), "video/") || g_str_has_prefix(type.c_str(), "audio/") ||
             type == "application/octet-stream") {
    kind_ = Kind::Raw;
    if (GUri *uri = soup_server_message_get_uri(msg); uri && g_uri_get_query(uri)) {
      GHashTable *params = g_uri_parse_params(g_uri_get_query(uri), -1, "&", G_URI_PARAMS_WWW_FORM, nullptr);
      if (!params)
        throw UploadError{SOUP_STATUS_BAD_REQUEST, "bad_request", "the query string cannot be parsed", ""};
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init(&it, params);
      while (g_hash_table_iter_next(&it, &k, &v))
        fields_[static_cast<const char *>(k)] = static_cast<const char *>(v);
      g_hash_table_unref(params);
    }
    if (const char *name = soup_message_headers_get_one(h, "X-Filename"))
      filename_ = name;
    else if (auto f = fields_.find("filename"); f != fields_.end())
      filename_ = f->second;
    seen_file_ = true;
  } else {
    throw UploadError{SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "not_media",
                      "upload the file as multipart/form-data (field 'file') or as a raw body with Content-Type "
                      "video/*, audio/* or application/octet-stream; got '" +
                          std::string(ct ? ct : "no Content-Type") + "'",
                      ""};
  }

  fs::make_dirs(tmp_dir);
  std::string tmpl = fs::join(tmp_dir, "upload-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = g_mkstemp_full(buf.data(), O_WRONLY | O_CLOEXEC, 0640);
  if (fd_ < 0)
    throw UploadError{SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal",
                      std::string("cannot create a temporary file for the upload: ") + g_strerror(errno), ""};
  path_ = buf.data();
  SLUICE_LOG(http_log(), Debug, "upload into %s (%s)", path_.c_str(), kind_ == Kind::Multipart ? "multipart" : "raw");
}

Upload::~Upload() {
  discard();
}

void Upload::discard() {
  if (streamed_)
    streamed_->abandon("the upload was not kept");
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (!path_.empty()) {
    SLUICE_LOG(http_log(), Debug, "removing the temporary upload %s", path_.c_str());
    unlink(path_.c_str());
    path_.clear();
  }
}

void Upload::keep(const std::string &dest) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (rename(path_.c_str(), dest.c_str()) != 0)
    throw Error(ErrorCode::Io, "cannot move the upload to " + dest + ": " + g_strerror(errno));
  path_.clear();
  // Kept as the video's source: whoever removes the video removes its object.
  if (streamed_)
    streamed_->keep();
}

void Upload::fail(UploadError err) {
  if (!error_) {
    SLUICE_LOG(http_log(), Info, "upload %s failed: %s", path_.c_str(), err.message.c_str());
    error_ = std::move(err);
  }
  if (streamed_)
    streamed_->abandon(error_->message);
  // Nothing more is written; the rest of the body is read and dropped so the answer can be sent.
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (!path_.empty()) {
    unlink(path_.c_str());
    path_.clear();
  }
}

void Upload::start_streaming() {
  // From the file's first byte: by then a form's file part has said its name, which the key's extension comes from.
  try {
    streamed_ = jobs::SourceUpload::start(*storage_, path_, store::new_id(), jobs::source_extension(filename_));
  } catch (const Error &e) {
    // The service puts the file once it is whole instead, as it does for a file that arrives any other way.
    SLUICE_LOG(http_log(), Warning, "upload %s: cannot stream it to storage as it arrives: %s", path_.c_str(),
               e.what());
  }
}

void Upload::write_file(const char *data, std::size_t len) {
  if (fd_ < 0)
    return;
  if (storage_ && !streamed_ && file_bytes_ == 0)
    start_streaming();
  while (len > 0) {
    ssize_t n = ::write(fd_, data, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      fail(UploadError{e == ENOSPC ? static_cast<guint>(SOUP_STATUS_INSUFFICIENT_STORAGE)
                                   : static_cast<guint>(SOUP_STATUS_INTERNAL_SERVER_ERROR),
                       e == ENOSPC ? "insufficient_storage" : "internal",
                       std::string("cannot write the upload: ") + g_strerror(e), ""});
      return;
    }
    data += n;
    len -= static_cast<std::size_t>(n);
    file_bytes_ += n;
  }
  if (streamed_)
    streamed_->grew(file_bytes_);
}

void Upload::on_chunk(const char *data, std::size_t len) {
  body_bytes_ += static_cast<std::int64_t>(len);
  if (error_)
    return;
  // Chunked bodies have no Content-Length: count as they stream. The multipart framing is small.
  if (body_bytes_ > max_size_ + (kind_ == Kind::Multipart ? 64 * 1024 : 0)) {
    fail(UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                     "the upload is larger than this server accepts (" + std::to_string(max_size_) + " bytes)", ""});
    return;
  }
  if (kind_ == Kind::Raw) {
    write_file(data, len);
    return;
  }
  try {
    parser_->feed(data, len);
  } catch (const UploadError &e) {
    fail(e);
  } catch (const Error &e) {
    fail(UploadError{SOUP_STATUS_BAD_REQUEST, "bad_request", e.what(), ""});
  }
  if (!error_ && file_bytes_ > max_size_)
    fail(UploadError{SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "too_large",
                     "the upload is larger than this server accepts (" + std::to_string(max_size_) + " bytes)", ""});
}

std::optional<UploadError> Upload::finish() {
  body_complete_ = true;
  if (!error_ && kind_ == Kind::Multipart) {
    try {
      parser_->finish();
    } catch (const Error &e) {
      fail(UploadError{SOUP_STATUS_BAD_REQUEST, "bad_request", e.what(), ""});
    }
    if (!error_ && !seen_file_)
      fail(UploadError{SOUP_STATUS_BAD_REQUEST, "bad_request", "the form has no 'file' part", "file"});
  }
  if (!error_ && fd_ >= 0) {
    if (fsync(fd_) != 0 || close(fd_) != 0) {
      fd_ = -1;
      fail(UploadError{SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal",
                       std::string("cannot write the upload: ") + g_strerror(errno), ""});
    }
    fd_ = -1;
  }
  if (!error_ && file_bytes_ == 0)
    fail(UploadError{SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "not_media", "the uploaded file is empty", "file"});
  if (!error_ && streamed_)
    streamed_->finish(file_bytes_);
  return error_;
}

void Upload::attach(SoupServerMessage *msg, std::shared_ptr<Upload> upload) {
  auto *holder = new std::shared_ptr<Upload>(std::move(upload));
  g_object_set_data_full(G_OBJECT(msg), kDataKey, holder,
                         [](gpointer p) { delete static_cast<std::shared_ptr<Upload> *>(p); });
  soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
  g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *m, GBytes *chunk, gpointer) {
                     auto up = Upload::from(m);
                     if (!up)
                       return;
                     gsize len = 0;
                     auto data = static_cast<const char *>(g_bytes_get_data(chunk, &len));
                     up->on_chunk(data, len);
                   }),
                   nullptr);
  // A client that goes away in the middle of the body leaves nothing behind.
  g_signal_connect(msg, "finished", G_CALLBACK(+[](SoupServerMessage *m, gpointer) {
                     auto up = Upload::from(m);
                     if (up && !up->body_complete_)
                       up->discard();
                   }),
                   nullptr);
}

std::shared_ptr<Upload> Upload::from(SoupServerMessage *msg) {
  auto *holder = static_cast<std::shared_ptr<Upload> *>(g_object_get_data(G_OBJECT(msg), kDataKey));
  return holder ? *holder : nullptr;
}

} // namespace sluice::http
