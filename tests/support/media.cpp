// SPDX-License-Identifier: LGPL-2.1-or-later
// Test support implementation: generated media, temp folders, subprocesses.
#include "media.h"

#include "core/fs.h"
#include "core/paths.h"

#include <glib/gstdio.h>

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace sluice::test {

void init_gst() {
  static bool done = false;
  if (done)
    return;
  gst_init(nullptr, nullptr);
  paths::ensure_plugin();
  done = true;
}

TempDir::TempDir() {
  GError *err = nullptr;
  gchar *p = g_dir_make_tmp("sluice-test-XXXXXX", &err);
  if (!p) {
    ADD_FAILURE() << "cannot make a temp dir: " << err->message;
    g_clear_error(&err);
    path_ = "/nonexistent";
    return;
  }
  path_ = p;
  g_free(p);
}

TempDir::~TempDir() {
  if (!g_getenv("SLUICE_KEEP_TEST_FILES"))
    fs::remove_all(path_);
}

std::string run_launch(const std::string &description, int timeout_s) {
  init_gst();
  GError *err = nullptr;
  GstElement *p = gst_parse_launch_full(description.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p) {
    std::string m = err ? err->message : "parse error";
    g_clear_error(&err);
    return m;
  }
  g_clear_error(&err);
  gst_object_ref_sink(p);
  GstBus *bus = gst_element_get_bus(p);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, static_cast<GstClockTime>(timeout_s) * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  std::string result;
  if (!msg) {
    result = "timeout";
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError *e = nullptr;
    gchar *dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    result = std::string(GST_MESSAGE_SRC_NAME(msg)) + ": " + (e ? e->message : "error") + " " + (dbg ? dbg : "");
    g_clear_error(&e);
    g_free(dbg);
  }
  if (msg)
    gst_message_unref(msg);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(p);
  return result;
}

bool make_clip(const std::string &path, const ClipSpec &s) {
  std::ostringstream d;
  d.imbue(std::locale::classic());
  const double fps = static_cast<double>(s.fps_n) / s.fps_d;
  const long frames = std::lround(s.seconds * fps);
  const long audio_buffers = std::lround(s.seconds * 48000 / 1024.0);
  std::string mux;
  if (s.container == "mp4")
    mux = "mp4mux name=mux faststart=true";
  else if (s.container == "mkv")
    mux = "matroskamux name=mux";
  else if (s.container == "webm")
    mux = "webmmux name=mux";
  else if (s.container == "avi")
    mux = "avimux name=mux";
  else if (s.container == "ts")
    mux = "mpegtsmux name=mux";
  else {
    ADD_FAILURE() << "unknown container " << s.container;
    return false;
  }
  d << mux << " ! filesink location=\"" << path << "\" ";
  if (s.video) {
    d << "videotestsrc num-buffers=" << frames << " pattern=smpte ! video/x-raw,format=I420,width=" << s.width
      << ",height=" << s.height << ",framerate=" << s.fps_n << "/" << s.fps_d << ",pixel-aspect-ratio=" << s.par
      << " ! ";
    if (s.vcodec == "h264")
      d << "x264enc speed-preset=ultrafast key-int-max=30 bframes=0 ! h264parse";
    else if (s.vcodec == "vp9")
      d << "vp9enc deadline=1 cpu-used=8 target-bitrate=500000 keyframe-max-dist=30";
    else if (s.vcodec == "mpeg4")
      d << "avenc_mpeg4 bitrate=800000";
    else {
      ADD_FAILURE() << "unknown video codec " << s.vcodec;
      return false;
    }
    d << " ! queue ! mux. ";
  }
  if (s.audio_channels > 0) {
    d << "audiotestsrc num-buffers=" << audio_buffers << " samplesperbuffer=1024 wave=sine freq=440 ! audio/x-raw,rate=48000,channels="
      << s.audio_channels << " ! audioconvert ! ";
    if (s.acodec == "aac")
      d << "avenc_aac ! aacparse";
    else if (s.acodec == "opus")
      d << "opusenc";
    else if (s.acodec == "mp3")
      d << "lamemp3enc";
    else {
      ADD_FAILURE() << "unknown audio codec " << s.acodec;
      return false;
    }
    d << " ! queue ! mux. ";
  }
  std::string err = run_launch(d.str(), 120);
  if (!err.empty()) {
    ADD_FAILURE() << "cannot generate " << path << ": " << err << "\n  pipeline: " << d.str();
    return false;
  }
  return true;
}

CommandResult run_command(const std::vector<std::string> &argv, int timeout_s) {
  CommandResult r;
  std::vector<char *> args;
  std::vector<std::string> with_timeout = {"timeout", "-s", "KILL", std::to_string(timeout_s)};
  with_timeout.insert(with_timeout.end(), argv.begin(), argv.end());
  for (auto &a : with_timeout)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  gchar *out = nullptr, *err = nullptr;
  gint status = 0;
  GError *error = nullptr;
  if (!g_spawn_sync(nullptr, args.data(), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out, &err, &status, &error)) {
    r.err = error ? error->message : "spawn failed";
    g_clear_error(&error);
    return r;
  }
  r.out = out ? out : "";
  r.err = err ? err : "";
  g_free(out);
  g_free(err);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string sluice_binary() {
  const char *b = g_getenv("SLUICE_BINARY");
  return b ? b : "sluice";
}

bool have_program(const std::string &name) {
  gchar *p = g_find_program_in_path(name.c_str());
  bool ok = p != nullptr;
  g_free(p);
  return ok;
}

std::string read_text(const std::string &path) {
  gchar *c = nullptr;
  gsize n = 0;
  if (!g_file_get_contents(path.c_str(), &c, &n, nullptr))
    return "";
  std::string s(c, n);
  g_free(c);
  return s;
}

} // namespace sluice::test
