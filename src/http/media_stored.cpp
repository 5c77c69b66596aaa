// SPDX-License-Identifier: LGPL-2.1-or-later
// A finished package's files in object storage: streamed through sluice with bounded memory, or redirected to a
// presigned GET URL; texts read and rewritten here.
#include "http/media_stored.h"

#include "core/error.h"
#include "core/log.h"
#include "core/mainloop.h"
#include "http/files.h"
#include "http/respond.h"

#include <gio/gio.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace sluice::http {

namespace {

log::Category *cat() {
  return log::category("sluice-http", "sluice HTTP server");
}

// A text larger than this is not rewritten (no playlist or MPD of sluice's comes near it).
constexpr std::int64_t kMaxText = 4 << 20;
// Bytes of one streamed response read from storage but not yet written to its client, at most.
constexpr std::size_t kMaxBuffered = 4u << 20;
// Reads of a playlist that failed or was not whole, before the answer says so (502).
constexpr int kTextReads = 3;

bool is_text(const StoredFile &f) {
  return g_str_has_suffix(f.name.c_str(), ".m3u8") || g_str_has_suffix(f.name.c_str(), ".mpd") || f.carries_urls;
}

// One streamed response: a thread reads the object's range from storage into `chunks`, waiting while kMaxBuffered
// bytes are on their way; the main loop hands them to libsoup, which reports each chunk it wrote.
struct Stream {
  std::mutex mutex;
  std::condition_variable room;
  std::deque<GBytes *> chunks;
  std::size_t buffered = 0; // read, not yet written to the client
  bool pump_posted = false;
  bool ended = false;
  bool failed = false;
  bool gone = false; // the message finished (written, or the client went away): nothing more is read or touched
  SoupServerMessage *msg = nullptr;
  gulong wrote_id = 0, finished_id = 0;
  ~Stream() {
    for (GBytes *b : chunks)
      g_bytes_unref(b);
  }
};

// On the main loop: what was read goes to libsoup; at the end the body is completed (or, after a failure, the
// connection is cut: the client sees a short body, never a wrong one).
void pump(const std::shared_ptr<Stream> &s) {
  std::deque<GBytes *> chunks;
  bool ended, failed, gone;
  {
    std::lock_guard lock(s->mutex);
    chunks.swap(s->chunks);
    s->pump_posted = false;
    ended = s->ended;
    failed = s->failed;
    gone = s->gone;
  }
  if (!s->msg || gone) {
    // Released already, or the message is over: the message is let go once the reading thread has ended.
    for (GBytes *b : chunks)
      g_bytes_unref(b);
    if (ended && s->msg)
      g_object_unref(std::exchange(s->msg, nullptr));
    return;
  }
  SoupMessageBody *body = soup_server_message_get_response_body(s->msg);
  for (GBytes *b : chunks) {
    soup_message_body_append_bytes(body, b);
    g_bytes_unref(b);
  }
  if (ended && failed) {
    if (GSocket *sock = soup_server_message_get_socket(s->msg))
      g_socket_shutdown(sock, TRUE, TRUE, nullptr);
  } else if (ended) {
    soup_message_body_complete(body);
  }
  soup_server_message_unpause(s->msg);
  if (ended) // libsoup holds the message while it writes the rest
    g_object_unref(std::exchange(s->msg, nullptr));
}

void post_pump(const std::shared_ptr<Stream> &s) {
  // (Under s->mutex.)
  if (s->pump_posted)
    return;
  s->pump_posted = true;
  post([s] { pump(s); });
}

void start_stream(storage::Storage &storage, const std::string &key, SoupServerMessage *msg, std::int64_t offset,
                  std::int64_t length) {
  auto s = std::make_shared<Stream>();
  s->msg = static_cast<SoupServerMessage *>(g_object_ref(msg));
  soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);
  // The signal handlers hold the stream until they are disconnected (when the message finishes).
  auto *held = new std::shared_ptr<Stream>(s);
  s->wrote_id = g_signal_connect_data(
      msg, "wrote-body-data", G_CALLBACK(+[](SoupServerMessage *, guint size, gpointer p) {
        auto &st = *static_cast<std::shared_ptr<Stream> *>(p);
        std::lock_guard lock(st->mutex);
        st->buffered -= std::min<std::size_t>(st->buffered, size);
        st->room.notify_all();
      }),
      held, +[](gpointer p, GClosure *) { delete static_cast<std::shared_ptr<Stream> *>(p); }, GConnectFlags(0));
  s->finished_id = g_signal_connect_data(
      msg, "finished", G_CALLBACK(+[](SoupServerMessage *m, gpointer p) {
        auto st = *static_cast<std::shared_ptr<Stream> *>(p);
        {
          std::lock_guard lock(st->mutex);
          st->gone = true;
          st->room.notify_all();
        }
        g_signal_handler_disconnect(m, st->wrote_id);
        g_signal_handler_disconnect(m, st->finished_id);
      }),
      new std::shared_ptr<Stream>(s), +[](gpointer p, GClosure *) { delete static_cast<std::shared_ptr<Stream> *>(p); },
      GConnectFlags(0));
  try {
    std::thread([s, &storage, key, offset, length] {
      bool failed = false;
      try {
        storage.get_range(key, offset, length, [&](const char *data, std::size_t size) {
          std::unique_lock lock(s->mutex);
          s->room.wait(lock, [&] { return s->gone || s->buffered < kMaxBuffered; });
          if (s->gone)
            throw Error(ErrorCode::Canceled, "the client went away");
          s->chunks.push_back(g_bytes_new(data, size));
          s->buffered += size;
          post_pump(s);
        });
      } catch (const std::exception &e) {
        std::lock_guard lock(s->mutex);
        failed = !s->gone;
        if (failed)
          SLUICE_LOG(cat(), Warning, "streaming %s from storage failed: %s", key.c_str(), e.what());
      }
      std::lock_guard lock(s->mutex);
      s->ended = true;
      s->failed = failed;
      // The last pump runs even when one is already posted: it lets go of the message.
      s->pump_posted = true;
      post([s] { pump(s); });
    }).detach();
  } catch (const std::system_error &) {
    std::lock_guard lock(s->mutex);
    s->ended = s->failed = true;
    s->pump_posted = true;
    post([s] { pump(s); });
  }
}

// What a thread learned of the object: its head, and the text of a text file.
struct Fetched {
  std::optional<storage::ObjectInfo> info;
  std::optional<std::string> text;
  std::optional<Error> error;
};

void answer(Context &cx, SoupServerMessage *msg, storage::Storage &storage, const StoredFile &file, Fetched &got) {
  // Not in the bucket: a running job's live object may have gone with its job's end (StoredFile::gone says what then).
  const bool absent = got.error ? got.error->code() == ErrorCode::NotFound : !got.info;
  if (absent && file.gone)
    return file.gone();
  if (got.error) {
    if (absent)
      return set_not_found(msg, "no such file");
    SLUICE_LOG(cat(), Warning, "object storage failed for %s: %s", file.key.c_str(), got.error->what());
    return set_error(msg, SOUP_STATUS_BAD_GATEWAY, "storage_unavailable", "the object storage failed; retry");
  }
  if (!got.info)
    return set_not_found(msg, "no such file");
  ServeOptions opts;
  if (got.text) {
    std::string body = *got.text;
    if (file.rewritten)
      body = handlers::versioned_urls(body, file.version, g_str_has_suffix(file.name.c_str(), ".mpd"));
    if (file.carries_urls)
      body = handlers::with_query_everywhere(body, file.token_query, file.name);
    opts.body = std::move(body);
    opts.cache_control = "no-cache";
    return serve_file(msg, file.name, opts);
  }
  StreamedObject object;
  object.size = got.info->size;
  object.etag = got.info->etag;
  object.last_modified = got.info->last_modified;
  object.send = [&storage, key = file.key](SoupServerMessage *m, std::int64_t offset, std::int64_t length) {
    start_stream(storage, key, m, offset, length);
  };
  opts.object = &object;
  opts.cache_control = file.cache_control;
  serve_file(msg, file.name, opts);
}

} // namespace

void serve_stored(Context &cx, SoupServerMessage *msg, storage::Storage &storage, StoredFile file) {
  const char *method = soup_server_message_get_method(msg);
  if (g_strcmp0(method, "GET") != 0 && g_strcmp0(method, "HEAD") != 0)
    return set_method_not_allowed(msg, "GET, HEAD");
  const bool text = is_text(file);
  if (!text && cx.config.storage_serve == "redirect") {
    // Straight from the bucket (or its CDN): a URL that needs no credentials for presign-ttl seconds. The token of a
    // signed video was checked before this.
    const std::string url = storage.presign_get(file.key, std::chrono::seconds(cx.config.presign_ttl_s));
    soup_server_message_set_redirect(msg, SOUP_STATUS_FOUND, url.c_str());
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control", "no-store");
    return;
  }
  // Off the main loop: the object's head (and a text's bytes); the answer back on it.
  auto done = later(cx, msg, [&cx, msg, &storage, file](std::shared_ptr<Fetched> got) {
    try {
      answer(cx, msg, storage, file, *got);
    } catch (const Error &e) {
      set_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "internal", e.what());
    }
  });
  try {
    std::thread([done, &storage, key = file.key, text]() mutable {
      // A running job's live playlists are rewritten under the same keys: a store whose overwrites are not atomic
      // may give a read that fails or is not a whole playlist. Such a playlist is read again (at most kTextReads).
      const bool playlist = g_str_has_suffix(key.c_str(), ".m3u8");
      std::shared_ptr<Fetched> got;
      for (int read = 0; read < kTextReads; ++read) {
        if (read)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        got = std::make_shared<Fetched>();
        try {
          got->info = storage.head(key);
          if (got->info && text && got->info->size <= kMaxText) {
            std::string body;
            body.reserve(static_cast<std::size_t>(got->info->size));
            storage.get_range(key, 0, -1, [&](const char *data, std::size_t size) { body.append(data, size); });
            got->text = std::move(body);
            // The validators of what was read, not of what a newer write left.
            got->info->size = static_cast<std::int64_t>(got->text->size());
            if (playlist && !got->text->starts_with("#EXTM3U"))
              got->error = Error(ErrorCode::Unavailable, "the playlist read was not whole");
          }
        } catch (const Error &e) {
          got->error = e;
        } catch (const std::exception &e) {
          got->error = Error(ErrorCode::Unavailable, e.what());
        }
        if (!playlist || !got->error || got->error->code() == ErrorCode::NotFound)
          break;
      }
      post([done, got]() mutable { done(got); });
    }).detach();
  } catch (const std::system_error &e) {
    auto got = std::make_shared<Fetched>();
    got->error = Error(ErrorCode::Unavailable, e.what());
    done(got);
  }
}

} // namespace sluice::http
