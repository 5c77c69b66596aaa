// SPDX-License-Identifier: LGPL-2.1-or-later
// Resumable uploads over HTTP (tus 1.0.0 with every extension) and direct uploads; the model is app::Uploads.
#include "http/tus.h"

#include "http/tus_internal.h"

#include "app/uploads.h"
#include "core/json.h"
#include "http/limits.h"
#include "http/middleware.h"
#include "http/respond.h"
#include "http/upload.h"
#include "jobs/scheduler.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>

namespace sluice::http {

using namespace tus_detail;

namespace {

constexpr const char *kExtensions =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation";
constexpr const char *kPatchKey = "sluice-tus-patch";
constexpr const char *kCreatedKey = "sluice-tus-created";
constexpr const char *kOffsetStream = "application/offset+octet-stream";

// A request header that may come once: its value, or nullopt when absent; `twice` when it came more than once.
std::optional<std::string> single(SoupServerMessage *msg, const char *name, bool &twice) {
  struct Count {
    const char *name;
    int n = 0;
    std::string value;
  } c{name, 0, {}};
  soup_message_headers_foreach(
      soup_server_message_get_request_headers(msg),
      [](const char *n, const char *v, gpointer p) {
        auto *cc = static_cast<Count *>(p);
        if (g_ascii_strcasecmp(n, cc->name) == 0 && cc->n++ == 0)
          cc->value = v;
      },
      &c);
  twice = c.n > 1;
  if (c.n == 0)
    return std::nullopt;
  return c.value;
}

// A non-negative decimal integer (no sign, no spaces); one past what an int64 holds reads as its largest value (a
// length that large is too large, not malformed).
std::optional<std::int64_t> number(const std::string &s) {
  if (s.empty() || s.size() > 100)
    return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (!g_ascii_isdigit(c))
      return std::nullopt;
    const int d = c - '0';
    v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
  }
  return v;
}

// Reads a numeric header; false (and a 400 set) when it is malformed or repeated.
bool numeric_header(SoupServerMessage *msg, const char *name, std::optional<std::int64_t> &out) {
  bool twice = false;
  auto v = single(msg, name, twice);
  out.reset();
  if (!v)
    return true;
  if (twice) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", std::string(name) + " is given more than once", name);
    return false;
  }
  out = number(*v);
  if (!out) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request",
              std::string(name) + ": expected a non-negative integer, got '" + v->substr(0, 40) + "'", name);
    return false;
  }
  return true;
}

std::string http_date(std::int64_t us) {
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
  g_autofree gchar *s = soup_date_time_to_string(dt, SOUP_DATE_HTTP);
  return s;
}

std::string location_of(SoupServerMessage *msg, const std::string &id) {
  std::string loc = kUploads + "/" + id;
  if (direct_of(msg)) {
    g_autofree gchar *t = g_uri_escape_string(token_query(msg).c_str(), nullptr, FALSE);
    loc += std::string("?token=") + t;
  }
  return loc;
}

// The Patch being written by msg.
std::shared_ptr<app::Uploads::Patch> patch_of(SoupServerMessage *msg) {
  auto *p = static_cast<std::shared_ptr<app::Uploads::Patch> *>(g_object_get_data(G_OBJECT(msg), kPatchKey));
  return p ? *p : nullptr;
}

// Streams msg's body into patch as it arrives; a body cut short keeps what came (the Patch's destructor).
void attach_patch(SoupServerMessage *msg, std::shared_ptr<app::Uploads::Patch> patch) {
  auto *holder = new std::shared_ptr<app::Uploads::Patch>(std::move(patch));
  g_object_set_data_full(G_OBJECT(msg), kPatchKey, holder,
                         [](gpointer p) { delete static_cast<std::shared_ptr<app::Uploads::Patch> *>(p); });
  soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
  g_signal_connect(msg, "got-chunk", G_CALLBACK(+[](SoupServerMessage *m, GBytes *chunk, gpointer) {
                     auto p = patch_of(m);
                     if (!p || g_object_get_data(G_OBJECT(m), kRateRefusedKey))
                       return;
                     gsize len = 0;
                     auto data = static_cast<const char *>(g_bytes_get_data(chunk, &len));
                     p->write(data, len);
                   }),
                   nullptr);
  // A client gone in the middle of the body: what arrived is recorded now (not when the message is freed).
  g_signal_connect(
      msg, "finished",
      G_CALLBACK(+[](SoupServerMessage *m, gpointer) { g_object_set_data(G_OBJECT(m), kPatchKey, nullptr); }), nullptr);
}

// What a PATCH (or a creation-with-upload) says about its bytes.
struct PatchHeaders {
  std::optional<std::int64_t> offset, length, content_length;
  std::optional<app::Checksum> checksum;
};

// The PATCH (or creation-with-upload) headers: Content-Type, Upload-Offset, Upload-Checksum, Upload-Length. False:
// msg is answered (400, 415).
bool patch_headers(SoupServerMessage *msg, bool creating, PatchHeaders &ph) {
  std::string type = header(msg, "Content-Type");
  if (auto semi = type.find(';'); semi != std::string::npos)
    type.resize(semi);
  if (creating) {
    ph.offset = 0;
  } else {
    if (g_ascii_strcasecmp(type.c_str(), kOffsetStream) != 0) {
      set_error(msg, SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                std::string("a PATCH sends its bytes with Content-Type: ") + kOffsetStream);
      return false;
    }
    if (!numeric_header(msg, "Upload-Offset", ph.offset) || !numeric_header(msg, "Upload-Length", ph.length))
      return false;
    if (!ph.offset) {
      set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", "a PATCH says where its bytes go: Upload-Offset",
                "Upload-Offset");
      return false;
    }
  }
  SoupMessageHeaders *in = soup_server_message_get_request_headers(msg);
  if (soup_message_headers_get_encoding(in) == SOUP_ENCODING_CONTENT_LENGTH)
    ph.content_length = soup_message_headers_get_content_length(in);
  bool twice = false;
  if (auto c = single(msg, "Upload-Checksum", twice)) {
    auto space = c->find(' ');
    GChecksumType kind = G_CHECKSUM_SHA256;
    bool known = false;
    if (space != std::string::npos)
      if (auto t = app::checksum_type(c->substr(0, space))) {
        kind = *t;
        known = true;
      }
    std::string b64 = space == std::string::npos ? "" : c->substr(space + 1);
    gsize len = 0;
    g_autofree guchar *raw = b64.empty() ? nullptr : g_base64_decode(b64.c_str(), &len);
    if (twice || !known || !raw || len == 0 || len != static_cast<gsize>(g_checksum_type_get_length(kind))) {
      set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request",
                "Upload-Checksum: expected 'sha1', 'md5' or 'sha256', a space and the digest in base64",
                "Upload-Checksum");
      return false;
    }
    ph.checksum = app::Checksum{kind, std::string(reinterpret_cast<const char *>(raw), len)};
  }
  return true;
}

// The PATCH locked and its body streamed into the upload, with the upload's row as the executor read it (a creation:
// the row just written). False: msg is answered.
bool begin_patch(Context &cx, SoupServerMessage *msg, const std::string &id,
                 const std::optional<store::ResumableUpload> &row, const PatchHeaders &ph) {
  auto r = cx.service.uploads().begin_patch(id, row, *ph.offset, ph.length, ph.content_length, ph.checksum);
  if (auto *f = std::get_if<app::Failure>(&r)) {
    set_failure(msg, *f);
    if (f->refusal == app::Refusal::OffsetMismatch || f->refusal == app::Refusal::Conflict)
      upload_headers(msg, *row);
    return false;
  }
  attach_patch(msg, std::get<std::shared_ptr<app::Uploads::Patch>>(std::move(r)));
  return true;
}

// After the body of a PATCH or a creation-with-upload: the bytes are made durable and their offset recorded (on the
// executor, msg paused), and only then answered; the last one starts ingest, and the answer waits for it too.
// `status` is the success status (204 for a PATCH, 201 for a creation).
void finish_body(Context &cx, SoupServerMessage *msg, guint status) {
  auto patch = patch_of(msg);
  if (!patch)
    return;
  g_object_set_data(G_OBJECT(msg), kPatchKey, nullptr); // the lock goes with it once recorded
  Context *c = &cx;
  // The answer may come at once (an inline catalog, no part to send to the bucket) or later (a catalog pool, a part in
  // flight): msg is paused only when finish() returned without it.
  struct Wait {
    bool answered = false, paused = false;
  };
  auto wait = std::make_shared<Wait>();
  auto answer = answer_on<app::Result<store::ResumableUpload>>(
      cx, msg, false, [c, msg, status](app::Result<store::ResumableUpload> r) {
        if (auto *f = std::get_if<app::Failure>(&r))
          return set_failure(msg, *f);
        const auto u = std::get<store::ResumableUpload>(r);
        upload_headers(msg, u);
        status == SOUP_STATUS_NO_CONTENT ? set_no_content(msg) : soup_server_message_set_status(msg, status, nullptr);
        if (u.state != "processing")
          return;
        // The last byte: ingest probes on a thread, whatever the catalog.
        c->service.uploads().complete(
            u, answer_on<app::Result<store::ResumableUpload>>(
                   *c, msg, true, [msg, status](app::Result<store::ResumableUpload> done) {
                     if (auto *f = std::get_if<app::Failure>(&done))
                       return set_failure(msg, *f);
                     const auto &v = std::get<store::ResumableUpload>(done);
                     upload_headers(msg, v);
                     status == SOUP_STATUS_NO_CONTENT ? set_no_content(msg)
                                                      : soup_server_message_set_status(msg, status, nullptr);
                     if (!v.video_id.empty())
                       soup_message_headers_replace(out_headers(msg), "Sluice-Video-Id", v.video_id.c_str());
                   }));
      });
  patch->finish(true, [wait, msg, answer, alive = cx.alive](app::Result<store::ResumableUpload> r) {
    wait->answered = true;
    if (*alive)
      answer(std::move(r));
    if (wait->paused) {
      release(msg);
      g_object_unref(msg);
    }
  });
  if (!wait->answered) {
    wait->paused = true;
    g_object_ref(msg);
    hold(msg);
  }
}

// Upload-Concat: "partial", or "final;URL URL" (absolute URLs or paths of this server's uploads).
bool read_concat(SoupServerMessage *msg, app::UploadRequest &r) {
  bool twice = false;
  auto c = single(msg, "Upload-Concat", twice);
  if (!c)
    return true;
  auto bad = [&](const std::string &why) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", "Upload-Concat: " + why, "Upload-Concat");
    return false;
  };
  if (twice)
    return bad("given more than once");
  if (*c == "partial") {
    r.concat = app::UploadRequest::Concat::Partial;
    return true;
  }
  if (!g_str_has_prefix(c->c_str(), "final;"))
    return bad("expected 'partial' or 'final;' and the URLs of the parts");
  r.concat = app::UploadRequest::Concat::Final;
  g_auto(GStrv) urls = g_strsplit(c->c_str() + 6, " ", -1);
  for (int i = 0; urls[i]; ++i) {
    std::string url = urls[i];
    if (url.empty())
      continue;
    if (r.parts.size() >= 1000)
      return bad("more than 1000 parts");
    std::string path = url;
    if (GUri *u = g_uri_parse(url.c_str(), G_URI_FLAGS_NONE, nullptr)) {
      path = g_uri_get_path(u);
      g_uri_unref(u);
    }
    auto slash = path.rfind('/');
    if (slash == std::string::npos || path.substr(0, slash) != kUploads || !store::is_id(path.substr(slash + 1)))
      return bad("'" + url.substr(0, 100) + "' is not an upload of this server");
    r.parts.push_back(path.substr(slash + 1));
  }
  if (r.parts.empty())
    return bad("a final upload names its parts");
  return true;
}

// POST /api/v1/uploads, once its headers are in: what they ask for (false: msg is answered).
bool create_headers(SoupServerMessage *msg, app::UploadRequest &r) {
  std::optional<std::int64_t> defer;
  if (!numeric_header(msg, "Upload-Length", r.length) || !numeric_header(msg, "Upload-Defer-Length", defer) ||
      !read_concat(msg, r))
    return false;
  if (defer && *defer != 1) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request", "Upload-Defer-Length: expected 1", "Upload-Defer-Length");
    return false;
  }
  const bool final = r.concat == app::UploadRequest::Concat::Final;
  if (!final && r.length.has_value() == defer.has_value()) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request",
              r.length ? "give Upload-Length or Upload-Defer-Length, not both"
                       : "a new upload says its size (Upload-Length) or that it will later (Upload-Defer-Length: 1)",
              "Upload-Length");
    return false;
  }
  bool twice = false;
  r.metadata_header = single(msg, "Upload-Metadata", twice).value_or("");
  if (twice || !app::parse_tus_metadata(r.metadata_header)) {
    set_error(msg, SOUP_STATUS_BAD_REQUEST, "bad_request",
              twice ? "Upload-Metadata is given more than once"
                    : "Upload-Metadata: expected comma-separated pairs of a key and its value in base64",
              "Upload-Metadata");
    return false;
  }
  return true;
}

// The creation, once a direct upload's token is admitted: the upload is created now (its row on the executor, msg
// paused; a final concatenation waits for the handler, it has no body), and a body that comes with it streams into
// it.
void create_now(Context &cx, SoupServerMessage *msg, app::UploadRequest r) {
  if (const auto *d = direct_of(msg)) {
    r.direct_id = d->id;
    r.max_size = d->max_size;
    // Its metadata was checked when it was made (an object of strings): it wins over the client's.
    json::Node n = json::parse(d->metadata_json.empty() ? "{}" : d->metadata_json, "direct upload metadata");
    JsonObject *o = json_node_get_object(n.get());
    g_autoptr(GList) members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next)
      r.forced[static_cast<const char *>(l->data)] =
          json_object_get_string_member(o, static_cast<const char *>(l->data));
  }
  if (r.concat == app::UploadRequest::Concat::Final) {
    // Joined and ingested in the handler (the parts may be large): the request is kept for it.
    auto *kept = new app::UploadRequest(std::move(r));
    g_object_set_data_full(G_OBJECT(msg), kCreatedKey, kept,
                           [](gpointer p) { delete static_cast<app::UploadRequest *>(p); });
    return;
  }
  Context *c = &cx;
  cx.service.uploads().create(
      r, answer_on<app::Result<store::ResumableUpload>>(
             cx, msg, catalog_waits(cx), [c, msg](app::Result<store::ResumableUpload> created) {
               if (auto *f = std::get_if<app::Failure>(&created)) {
                 if (f->field == "token") // another request used the token meanwhile: its upload is gone
                   return set_error(msg, SOUP_STATUS_UNAUTHORIZED, "unauthorized", f->message);
                 return set_failure(msg, *f);
               }
               const auto &u = std::get<store::ResumableUpload>(created);
               soup_message_headers_replace(out_headers(msg), "Location", location_of(msg, u.id).c_str());
               upload_headers(msg, u);
               g_object_set_data_full(G_OBJECT(msg), "sluice-tus-id", g_strdup(u.id.c_str()), g_free);
               // creation-with-upload: the body is the upload's first bytes.
               std::string type = header(msg, "Content-Type");
               SoupMessageHeaders *in = soup_server_message_get_request_headers(msg);
               const bool has_body = soup_message_headers_get_encoding(in) == SOUP_ENCODING_CHUNKED ||
                                     soup_message_headers_get_content_length(in) > 0;
               PatchHeaders ph;
               if (has_body && g_str_has_prefix(type.c_str(), kOffsetStream) && patch_headers(msg, true, ph))
                 begin_patch(*c, msg, u.id, u, ph);
             }));
}

} // namespace

namespace tus_detail {

// The headers that describe an upload's progress (every tus answer about one upload).
void upload_headers(SoupServerMessage *msg, const store::ResumableUpload &u) {
  SoupMessageHeaders *h = out_headers(msg);
  soup_message_headers_replace(h, "Upload-Offset", std::to_string(u.offset).c_str());
  soup_message_headers_replace(h, "Upload-Expires", http_date(u.expires).c_str());
  soup_message_headers_replace(h, "Cache-Control", "no-store");
}

// Tus-Resumable must be 1.0.0: 412 with the versions this server speaks otherwise.
bool check_version(SoupServerMessage *msg) {
  if (header(msg, "Tus-Resumable") == kTusVersion)
    return true;
  set_error(msg, SOUP_STATUS_PRECONDITION_FAILED, "tus_version",
            "this server speaks tus " + std::string(kTusVersion) + "; send Tus-Resumable: " + kTusVersion);
  soup_message_headers_replace(out_headers(msg), "Tus-Version", kTusVersion);
  return false;
}

} // namespace tus_detail

bool is_tus_path(const std::string &path) {
  return path == kUploads || g_str_has_prefix(path.c_str(), (kUploads + "/").c_str());
}

void tus_options(Context &cx, SoupServerMessage *msg) {
  SoupMessageHeaders *h = out_headers(msg);
  soup_message_headers_replace(h, "Tus-Resumable", kTusVersion);
  soup_message_headers_replace(h, "Tus-Version", kTusVersion);
  soup_message_headers_replace(h, "Tus-Extension", kExtensions);
  soup_message_headers_replace(h, "Tus-Max-Size", std::to_string(cx.config.max_upload_size).c_str());
  soup_message_headers_replace(h, "Tus-Checksum-Algorithm", "sha1,md5,sha256");
}

bool tus_body(Context &cx, SoupServerMessage *msg, const Match &m) {
  soup_message_headers_replace(out_headers(msg), "Tus-Resumable", kTusVersion);
  if (!cx.service.accepting()) {
    set_error(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "unavailable", "the server is shutting down");
    return true;
  }
  if (!check_version(msg))
    return true;
  // A body refused once the catalog answers is read and dropped, not kept in memory.
  soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
  const bool create = is_create(m);
  const std::string token = pending_token(msg);
  const std::string id = create ? "" : m.params.at(0);
  // The headers first: what they refuse needs no catalog.
  app::UploadRequest r;
  PatchHeaders ph;
  if (create ? !create_headers(msg, r) : !patch_headers(msg, false, ph))
    return true;
  if (create && token.empty()) {
    create_now(cx, msg, std::move(r));
    return soup_server_message_get_status(msg) != 0;
  }
  // The token's row and the upload's are read on the executor; the body waits (msg paused) until they are back.
  auto read = read_for(token, id, create ? nullptr : &cx.service.uploads(), ph.offset, header(msg, "Origin"));
  on_catalog(cx, msg, std::move(read), [&cx, msg, create, token, id, r, ph](store::Outcome<Read> &o) {
    if (!o.ok())
      return set_failure(msg, app::failure_of(*o.error));
    if (!token.empty() && !admit_direct(msg, id, o.value->direct))
      return;
    if (create)
      return create_now(cx, msg, r);
    begin_patch(cx, msg, id, o.value->upload, ph);
  });
  return soup_server_message_get_status(msg) != 0;
}

namespace handlers {

void create_upload(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  if (auto *kept = static_cast<app::UploadRequest *>(g_object_get_data(G_OBJECT(msg), kCreatedKey))) {
    // A final concatenation: answered once its parts are joined and the result went through ingest.
    cx.service.uploads().create(
        *kept,
        answer_on<app::Result<store::ResumableUpload>>(cx, msg, true, [msg](app::Result<store::ResumableUpload> r) {
          if (auto *f = std::get_if<app::Failure>(&r))
            return set_failure(msg, *f);
          const auto &u = std::get<store::ResumableUpload>(r);
          soup_message_headers_replace(out_headers(msg), "Location", location_of(msg, u.id).c_str());
          upload_headers(msg, u);
          if (!u.video_id.empty())
            soup_message_headers_replace(out_headers(msg), "Sluice-Video-Id", u.video_id.c_str());
          soup_server_message_set_status(msg, SOUP_STATUS_CREATED, nullptr);
        }));
    return;
  }
  if (!g_object_get_data(G_OBJECT(msg), "sluice-tus-id"))
    return set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", "the upload was not set up");
  soup_server_message_set_status(msg, SOUP_STATUS_CREATED, nullptr);
  finish_body(cx, msg, SOUP_STATUS_CREATED);
}

void patch_upload(Context &cx, Request &rq) {
  if (!patch_of(rq.msg))
    return set_error(rq.msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", "the PATCH was not set up");
  finish_body(cx, rq.msg, SOUP_STATUS_NO_CONTENT);
}

} // namespace handlers

} // namespace sluice::http
