// SPDX-License-Identifier: LGPL-2.1-or-later
// sluice upload: a tus 1.0.0 client that sends a file in checksummed chunks, resumes it and follows its job.
#include "cli/upload.h"

#include "cli/upload_internal.h"
#include "core/fs.h"
#include "core/mainloop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <thread>

namespace sluice::cli {

namespace {

using namespace upload_detail;

const char *kSummary =
    "Upload FILE to a sluice server with the tus 1.0.0 resumable protocol.\n"
    "\n"
    "FILE is sent in chunks (--chunk-size, 8M by default), each with its SHA-256 for the server to check. An\n"
    "interrupted upload (Ctrl-C, a lost connection) resumes where the server stopped when the same command runs\n"
    "again: the upload's URL is remembered in the user's cache folder ($XDG_CACHE_HOME/sluice/uploads, by\n"
    "default ~/.cache/sluice/uploads) under the server, the file's absolute path, size and modification time,\n"
    "until the upload is complete. A lost connection is retried 5 times (after 1, 2, 4, 8 and 16 s).\n"
    "\n"
    "Prints the new video's id on stdout. With --wait, follows its job over the event stream and prints the\n"
    "playback URLs (\"hls URL\", \"dash URL\") once the video is ready.";

const char *kDescription =
    "Environment:\n"
    "  SLUICE_SERVER    the server's URL when --server is not given\n"
    "  SLUICE_API_KEY   the API key when --key is not given (sent as Authorization: Bearer, never printed)\n"
    "\n"
    "Exit status:\n"
    "  0    uploaded (with --wait: and ready to play)\n"
    "  1    the server refused the upload (its reason is printed), or FILE cannot be read\n"
    "  2    usage error\n"
    "  3    the server cannot be reached, or the connection was lost and did not come back: run again to resume\n"
    "  4    the server asks for an API key, or refused it or its scope (401, 403)\n"
    "  5    --wait: the video's job failed or was canceled (the reason is printed)\n"
    "  130  interrupted (Ctrl-C): run the same command again to resume\n";

// "8M", "512K", "1G" or plain bytes; 0 when it is none of these.
std::uint64_t parse_size(const std::string &text) {
  if (text.empty() || !g_ascii_isdigit(text[0]))
    return 0;
  char *end = nullptr;
  errno = 0;
  guint64 n = g_ascii_strtoull(text.c_str(), &end, 10);
  if (errno)
    return 0;
  std::string unit = end ? end : "";
  for (auto &c : unit)
    c = g_ascii_toupper(c);
  std::uint64_t mult = 1;
  if (unit == "K" || unit == "KIB")
    mult = 1024;
  else if (unit == "M" || unit == "MIB")
    mult = 1024 * 1024;
  else if (unit == "G" || unit == "GIB")
    mult = 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B")
    return 0;
  if (n > G_MAXUINT64 / mult)
    return 0;
  return n * mult;
}

// The server's base URL (path ending with '/'), or nullptr after printing why not.
GUri *parse_server(const std::string &text) {
  g_autoptr(GError) err = nullptr;
  g_autoptr(GUri) u = g_uri_parse(text.c_str(), kUriFlags, &err);
  if (!u ||
      (g_ascii_strcasecmp(g_uri_get_scheme(u), "http") != 0 && g_ascii_strcasecmp(g_uri_get_scheme(u), "https") != 0) ||
      !g_uri_get_host(u) || !*g_uri_get_host(u)) {
    std::fprintf(stderr, "sluice upload: --server must be an http:// or https:// URL, not '%s'\n", text.c_str());
    return nullptr;
  }
  std::string path = g_uri_get_path(u);
  if (path.empty() || path.back() != '/')
    path += '/';
  return g_uri_build(G_URI_FLAGS_NONE, g_uri_get_scheme(u), nullptr, g_uri_get_host(u), g_uri_get_port(u), path.c_str(),
                     nullptr, nullptr);
}

// A header value cannot hold control characters, spaces or non-ASCII bytes (a key has none).
bool header_safe(const std::string &s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Checks what parse_options read; false after printing the usage error.
bool check_options(Options &o, const gchar *chunk) {
  if (o.server.empty()) {
    std::fprintf(stderr, "sluice upload: need --server URL (or $SLUICE_SERVER)\n");
    return false;
  }
  if (!o.key.empty() && !header_safe(o.key)) {
    std::fprintf(stderr, "sluice upload: the API key holds characters that no key has (spaces, control characters)\n");
    return false;
  }
  if (chunk) {
    o.chunk = parse_size(chunk);
    if (o.chunk < kMinChunk || o.chunk > kMaxChunk) {
      std::fprintf(stderr, "sluice upload: --chunk-size must be 64K to 512M, not '%s'\n", chunk);
      return false;
    }
  }
  return true;
}

// The command line (and $SLUICE_SERVER, $SLUICE_API_KEY) into o; false after printing a usage error.
bool parse_options(int argc, char **argv, Options &o) {
  g_autofree gchar *server = nullptr;
  g_autofree gchar *key = nullptr;
  g_autofree gchar *title = nullptr;
  g_autofree gchar *pipeline = nullptr;
  g_autofree gchar *chunk = nullptr;
  gboolean wait = FALSE;
  GOptionEntry entries[] = {
      {"server", 's', 0, G_OPTION_ARG_STRING, &server, "The sluice server, e.g. http://127.0.0.1:8080 ($SLUICE_SERVER)",
       "URL"},
      {"key", 'k', 0, G_OPTION_ARG_STRING, &key,
       "API key with the upload scope (and read for --wait) ($SLUICE_API_KEY)", "KEY"},
      {"title", 't', 0, G_OPTION_ARG_STRING, &title, "The video's title", "TITLE"},
      {"pipeline", 'p', 0, G_OPTION_ARG_STRING, &pipeline, "The pipeline of its job (default: the server's)", "NAME"},
      {"wait", 'w', 0, G_OPTION_ARG_NONE, &wait, "Follow the job until the video is ready; print its playback URLs",
       nullptr},
      {"chunk-size", 0, 0, G_OPTION_ARG_STRING, &chunk, "Bytes per request, e.g. 1M (default 8M; 64K to 512M)", "SIZE"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  g_autoptr(GOptionContext) ctx = g_option_context_new("FILE --server URL");
  g_option_context_set_summary(ctx, kSummary);
  g_option_context_set_description(ctx, kDescription);
  g_option_context_add_main_entries(ctx, entries, nullptr);
  g_autoptr(GError) err = nullptr;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    std::fprintf(stderr, "sluice: %s\n(see sluice upload --help)\n", err->message);
    return false;
  }
  if (argc != 2) {
    std::fprintf(stderr, "sluice upload: need one FILE (see sluice upload --help)\n");
    return false;
  }
  o.file = fs::absolute(argv[1]);
  const char *server_env = g_getenv("SLUICE_SERVER");
  o.server = server ? server : (server_env ? server_env : "");
  const char *key_env = g_getenv("SLUICE_API_KEY");
  o.key = key ? key : (key_env ? key_env : "");
  o.title = title ? title : "";
  o.pipeline = pipeline ? pipeline : "";
  o.wait = wait;
  return check_options(o, chunk);
}

// The upload, then with --wait the following of its job; returns the exit status.
int upload_and_follow(Client &c) {
  Uploader uploader(c);
  std::string video;
  try {
    video = uploader.upload();
  } catch (const Interrupted &) {
    c.progress.clear();
    uploader.report_interrupted();
    return kExitInterrupted;
  }
  std::printf("%s\n", video.c_str());
  std::fflush(stdout);
  if (!c.o.wait)
    return kExitOk;
  try {
    return Follower(c).follow(video);
  } catch (const Interrupted &) {
    c.progress.clear();
    std::fprintf(stderr, "sluice: interrupted: the upload is complete (video %s); its job goes on\n", video.c_str());
    return kExitInterrupted;
  }
}

// The worker thread's part: the whole command, its errors printed; returns the exit status.
int run_upload(const Options &o, GUri *base, GCancellable *cancel) {
  try {
    Client c(o, base, cancel);
    try {
      return upload_and_follow(c);
    } catch (const Exit &) {
      c.progress.clear();
      throw;
    }
  } catch (const Exit &e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return e.status();
  } catch (const Interrupted &) {
    return kExitInterrupted;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return kExitFailed;
  }
}

// The upload runs on a thread of its own (blocking libsoup calls on its own main context); this thread's
// loop turns SIGINT and SIGTERM into a cancellation, and a second one into an immediate exit.
int run_in_worker(const Options &o, GUri *base) {
  g_autoptr(GCancellable) cancel = g_cancellable_new();
  g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
  std::atomic<int> status{kExitFailed};
  std::thread worker([&] {
    {
      g_autoptr(GMainContext) context = g_main_context_new();
      g_main_context_push_thread_default(context);
      status = run_upload(o, base, cancel);
      g_main_context_pop_thread_default(context);
    }
    post([loop] { g_main_loop_quit(loop); });
  });
  struct Signals {
    GCancellable *cancel;
    int count = 0;
  } signals{cancel};
  run_main_loop(
      loop,
      +[](gpointer data) -> gboolean {
        auto *s = static_cast<Signals *>(data);
        if (s->count++ > 0) {
          std::fprintf(stderr, "\nsluice: stopping now\n");
          _exit(kExitInterrupted);
        }
        g_cancellable_cancel(s->cancel);
        return G_SOURCE_CONTINUE;
      },
      &signals);
  worker.join();
  return status;
}

} // namespace

int cmd_upload(int argc, char **argv) {
  Options o;
  if (!parse_options(argc, argv, o))
    return kExitUsage;
  g_autoptr(GUri) base = parse_server(o.server);
  if (!base)
    return kExitUsage;
  return run_in_worker(o, base);
}

} // namespace sluice::cli
