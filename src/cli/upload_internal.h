// SPDX-License-Identifier: LGPL-2.1-or-later
// What the source files of `sluice upload` share (cli/upload*.cpp only): exit codes, HTTP, progress, the cache.
#pragma once

#include "core/gobj.h"
#include "core/json.h"
#include "core/log.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sluice::cli::upload_detail {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitAuth = 4;
inline constexpr int kExitJobFailed = 5;
inline constexpr int kExitInterrupted = 130;

inline constexpr std::uint64_t kDefaultChunk = 8 * 1024 * 1024;
inline constexpr std::uint64_t kMinChunk = 64 * 1024;
inline constexpr std::uint64_t kMaxChunk = 512 * 1024 * 1024;
inline constexpr GUriFlags kUriFlags = static_cast<GUriFlags>(SOUP_HTTP_URI_FLAGS);

inline log::Category *upload_log() {
  static log::Category *cat = log::category("sluice-upload", "sluice upload: the tus client");
  return cat;
}

// Ends the command with an exit status and a message for stderr.
class Exit : public std::runtime_error {
public:
  Exit(int status, const std::string &message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

private:
  int status_;
};

// SIGINT or SIGTERM arrived: whatever was going on stops.
struct Interrupted {};

// What the command was asked to do (options, environment and FILE).
struct Options {
  std::string file, server, key, title, pipeline;
  bool wait = false;
  std::uint64_t chunk = kDefaultChunk;
};

// ---- text (upload_http.cpp and upload_progress.cpp) ----

std::string format_bytes(std::uint64_t n);
std::string format_seconds(double s);
std::string base64(const guint8 *data, gsize len);
std::string base64(const std::string &s);
// Text of a server's answer made safe for a terminal: control characters become spaces, at most max bytes.
std::string printable(const std::string &text, std::size_t max = 1000);
// A member of an answer's object when it is a string (or a number), else def: a server may send anything.
std::string string_member(JsonObject *o, const char *name, const std::string &def = "");
double number_member(JsonObject *o, const char *name, double def);

// ---- upload_progress.cpp: progress on stderr ----

// Progress on stderr: a bar redrawn in place on a terminal, a line every tenth otherwise.
class Progress {
public:
  Progress(std::uint64_t total, bool tty) : total_(total), tty_(tty) {}

  // Bytes from `offset` on are sent by this run (the speed counts from there).
  void start(std::uint64_t offset);
  void at(std::uint64_t position);
  // A message on a line of its own (the bar, if any, is drawn again under it at the next update).
  void note(const std::string &text);
  // Redraws the bar (or a job's progress) as a single line on a terminal.
  void line(const std::string &text);
  void clear();
  void finished();
  bool tty() const { return tty_; }

private:
  // Bytes per second over the last few seconds.
  double speed() const;
  static int terminal_width();
  void draw();

  std::uint64_t total_;
  bool tty_;
  std::uint64_t first_ = 0, position_ = 0;
  gint64 started_ = 0, drawn_ = 0;
  int decile_ = 0;
  bool shown_ = false;
  std::deque<std::pair<gint64, std::uint64_t>> window_;
};

// ---- upload_http.cpp: HTTP over one SoupSession, retries ----

struct Reply {
  GObjectPtr<SoupMessage> msg;
  guint status = 0;
  std::string body;

  std::string header(const char *name) const;
  std::string reason() const;
  // The answer's JSON object, or nullptr when it is not one.
  json::Node json() const;
  // "422 invalid_parameter: unknown pipeline 'x'" from a JSON error, else the status, its phrase and the text.
  std::string describe() const;
  std::string error_code() const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// HTTP over one SoupSession (used by the worker thread only), with the key sent to the server only.
class Http {
public:
  Http(GUri *base, std::string key, GCancellable *cancel);
  ~Http() { g_uri_unref(base_); }
  Http(const Http &) = delete;
  Http &operator=(const Http &) = delete;

  // url resolved against the server's base URL (an absolute URL stays as it is); throws Exit when it cannot be.
  std::string resolve(const std::string &ref) const;

  const std::string &base_url() const { return base_url_; }
  void set_base_url(std::string s) { base_url_ = std::move(s); }
  bool has_key() const { return !key_.empty(); }
  const std::string &last_error() const { return error_; }
  GCancellable *cancellable() const { return cancel_; }

  // One request: the answer (body read up to kMaxAnswer), or nullopt when none came (last_error() says why).
  // on_wrote(n) is told the request body's bytes written so far. Throws Interrupted when canceled.
  std::optional<Reply> request(const char *method, const std::string &url, const Headers &headers,
                               GBytes *body = nullptr, const char *content_type = nullptr,
                               std::function<void(std::uint64_t)> on_wrote = {});

  // The answer's headers, its body left to read from *in (caller unrefs); for the event stream.
  std::optional<Reply> open(const char *method, const std::string &url, const Headers &headers, GBytes *body,
                            const char *content_type, std::function<void(std::uint64_t)> on_wrote, GInputStream **in);

  void check_canceled(GError *err) const;
  // Waits s seconds, or less when interrupted (then throws Interrupted).
  void sleep(double s) const;

private:
  // The request's message with its headers (the key for the server only) and body.
  Reply prepare(const char *method, GUri *uri, const Headers &headers, GBytes *body, const char *content_type) const;
  bool same_origin(GUri *uri) const;

  GUri *base_;
  std::string base_url_;
  std::string key_;
  GCancellable *cancel_;
  GObjectPtr<SoupSession> session_;
  std::string error_;
};

// Failed attempts in a row: waits 1, 2, 4, 8, 16 s, then gives up with `giving_up`.
class Backoff {
public:
  Backoff(Http &http, Progress &progress) : http_(http), progress_(progress) {}

  // After a failure: waits (retry_after_s when the server said so), or throws Exit(kExitUnreachable).
  void failed(const std::string &why, const std::string &giving_up, double retry_after_s = -1);
  void succeeded() { failures_ = 0; }

private:
  Http &http_;
  Progress &progress_;
  int failures_ = 0;
};

double retry_after(const Reply &r);
bool parse_offset(const std::string &text, std::uint64_t &out);
// An answer worth retrying: the server is busy or a proxy lost it.
bool transient(guint status);

// What the upload and the follower of its job share: the options, the connection, the display, the retries.
struct Client {
  Client(const Options &o, GUri *base, GCancellable *cancel);
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  // Ends the command for an answer that is no: an exit status of its own for a key that is missing or refused.
  [[noreturn]] void refused(const Reply &r, const std::string &what);
  // "no answer from URL when (why)" after a request that got none.
  std::string lost(const std::string &when) const;

  const Options &o;
  Http http;
  Progress progress;
  Backoff backoff;
};

// ---- upload_cache.cpp: the remembered uploads ----

// The remembered uploads: CACHE/sluice/uploads/SHA256.json, one per (server, file) identity.
class Remembered {
public:
  Remembered(const std::string &server, const std::string &path, const struct stat &st);
  ~Remembered();
  Remembered(const Remembered &) = delete;
  Remembered &operator=(const Remembered &) = delete;

  // Creates the folder, forgets stale entries and takes this file's lock (another run of the same upload fails).
  void open();
  // The upload URL remembered for this identity, if any.
  std::string url() const;
  void remember(const std::string &url);
  void forget();

private:
  std::string dir_, identity_, file_, lock_file_;
  int lock_fd_ = -1;
};

// ---- upload_tus.cpp: the tus upload (POST, HEAD, PATCH) ----

// Sends one file with tus 1.0.0, resuming a remembered upload of it.
class Uploader {
public:
  explicit Uploader(Client &c) : c_(c) {}
  ~Uploader();
  Uploader(const Uploader &) = delete;
  Uploader &operator=(const Uploader &) = delete;

  // Sends the file; returns the video's id.
  std::string upload();
  // After Interrupted: how far the upload got, on stderr.
  void report_interrupted() const;

private:
  std::string resume_hint() const;
  void open_file();
  // The file must stay as it was: a file that changes while it is sent would arrive as a mix.
  void check_unchanged();
  void read_chunk(std::uint64_t offset, std::size_t len);
  std::string metadata() const;
  // POST: a new upload; returns its URL.
  std::string create();
  // HEAD: the server's offset of url; nullopt when the server no longer has it (or has another length).
  std::optional<std::uint64_t> head(const std::string &url);
  // Once every byte is on the server and the last answer was lost: the video it became, from GET on the upload.
  std::string video_of(const std::string &url);
  // The remembered upload when the server still has it, else a new one; sets url_ and offset_.
  void begin(const std::string &name);
  // Asks the server's offset again after a failed or unexpected PATCH (a new upload, once, when it lost this one).
  void resync(int &restarts);
  // PATCH of the chunk at offset_: true once the server has every byte (video: the id its answer gave, if any);
  // synced turns false when the server's offset must be asked again.
  bool send_chunk(GChecksum *sum, bool &synced, std::string &video);
  // After a PATCH that failed with r: waits, or throws when the server will not take the upload.
  void patch_failed(const Reply &r);
  // Sends the chunks from offset_ until the server has every byte (video as send_chunk).
  void send_all(std::string &video);

  Client &c_;
  std::unique_ptr<Remembered> remembered_;
  int fd_ = -1;
  struct stat st_ {};
  std::uint64_t size_ = 0, offset_ = 0;
  bool offset_known_ = false; // offset_ is what the server said (not yet while asking a remembered upload's)
  std::string url_;
  std::vector<char> buffer_;
};

// ---- upload_wait.cpp: --wait, the follower of the video's job ----

// Follows the video's job over the event stream until the video is ready to play or will not be.
class Follower {
public:
  explicit Follower(Client &c) : c_(c) {}

  // Follows the video's job over the event stream until it is ready (0) or failed (kExitJobFailed).
  int follow(const std::string &video);

private:
  // The video's state: 0 when ready (after printing its URLs), an exit status when it will not be, or nullopt.
  std::optional<int> check(const std::string &video);
  // The streaming job: the newest one whose output is a package (nullptr when there is none yet).
  static JsonObject *streaming_job_of(JsonObject *video);
  // Prints the ready video's playback URLs; returns kExitOk.
  int ready(JsonObject *video, const std::string &id);
  // Throws the exit of a failed or canceled job.
  [[noreturn]] void not_ready(const std::string &state, JsonObject *job);
  void show_job_progress(const std::string &data);
  // The event stream at url, opened (retrying while the server cannot stream) from last_id on; caller unrefs.
  GInputStream *open_stream(const std::string &url, const std::string &video, const std::string &last_id);
  // Reads the stream's events until the video is ready or will not be (its exit status), or until the stream
  // ends (nullopt); last_id follows the events' ids.
  std::optional<int> read_events(GDataInputStream *lines, const std::string &video, std::string &last_id);

  Client &c_;
  std::string streaming_job_;
  std::string job_state_;
  int job_quarter_ = 0;
  int uploaded_polls_ = 0;
};

} // namespace sluice::cli::upload_detail
