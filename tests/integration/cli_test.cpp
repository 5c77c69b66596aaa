// SPDX-License-Identifier: LGPL-2.1-or-later
// The sluice command line, run as a real process: help, probe, pipeline list/show/print/validate, transcode.
#include "core/fs.h"
#include "core/json.h"
#include "media.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

using namespace sluice;
using sluice::test::ClipSpec;
using sluice::test::run_command;

namespace {
std::string bin() {
  return test::sluice_binary();
}

class Cli : public ::testing::Test {
protected:
  void SetUp() override { test::init_gst(); }
  test::TempDir tmp;
};

bool contains(const std::string &hay, const std::string &needle) {
  return hay.find(needle) != std::string::npos;
}
} // namespace

TEST_F(Cli, HelpAndVersion) {
  auto r = run_command({bin(), "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char *c : {"transcode", "probe", "pipeline list", "pipeline print", "pipeline validate"})
    EXPECT_TRUE(contains(r.out, c)) << c;
  r = run_command({bin(), "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "sluice 0.")) << r.out;
  for (const char *sub : {"transcode", "probe", "pipeline", "encoders"}) {
    r = run_command({bin(), sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_TRUE(contains(r.out, "Usage:")) << sub << ": " << r.out;
  }
  r = run_command({bin(), "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "unknown command"));
  r = run_command({bin()});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(Cli, ProbePrintsJsonAndRefusesNonMedia) {
  ASSERT_TRUE(test::make_clip(tmp.file("a.mp4"), ClipSpec{320, 240, 30, 1, 0.5, 2, true, "mp4"}));
  auto r = run_command({bin(), "probe", tmp.file("a.mp4")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto root = json::parse(r.out, "probe output");
  JsonObject *video = json_object_get_object_member(json_node_get_object(root.get()), "video");
  EXPECT_EQ(json_object_get_int_member(video, "width"), 320);
  fs::write_atomic(tmp.file("notes.mp4"), "not a video\n");
  r = run_command({bin(), "probe", tmp.file("notes.mp4")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "not a media file")) << r.err;
  r = run_command({bin(), "transcode", tmp.file("notes.mp4"), "--out", tmp.file("o")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "notes.mp4")) << r.err;
  EXPECT_FALSE(fs::exists(tmp.file("o")));
  r = run_command({bin(), "transcode", tmp.file("a.mp4")});
  EXPECT_EQ(r.exit_code, 2) << "missing --out is a usage error";
}

TEST_F(Cli, PipelineListShowValidate) {
  auto r = run_command({bin(), "pipeline", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "hls"));
  r = run_command({bin(), "pipeline", "show", "hls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto root = json::parse(r.out, "show output");
  JsonArray *params = json_object_get_array_member(json_node_get_object(root.get()), "parameters");
  EXPECT_GE(json_array_get_length(params), 3u);
  r = run_command({bin(), "pipeline", "show", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "unknown pipeline 'nope'")) << r.err;
  // The live ladders are descriptions like the others: listed, shown, printed for an input's caps, validated.
  r = run_command({bin(), "pipeline", "list"});
  EXPECT_TRUE(contains(r.out, "live-hls ") && contains(r.out, "live-cmaf ")) << r.out;
  r = run_command({bin(), "pipeline", "show", "live-cmaf"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "\"output\" : \"live-cmaf\"")) << r.out;
  r = run_command({bin(), "pipeline", "print", "live-hls", "--input-caps", "640x360@25", "--set", "segment_seconds=4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(g_str_has_prefix(r.out.c_str(), "gst-launch-1.0 -e appsrc name=v ")) << r.out;
  EXPECT_TRUE(contains(r.out, "framerate=25/1") && contains(r.out, "key-int-max=100 ")) << r.out;
  EXPECT_TRUE(contains(r.out, "width=640,height=360") && !contains(r.out, "width=854")) << "never upscaled: " << r.out;
  r = run_command({bin(), "pipeline", "print", "live-cmaf"}); // 1280x720@30 when no caps are given
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "width=1280,height=720") && contains(r.out, "mp4mux name=hls_audio")) << r.out;
  r = run_command({bin(), "pipeline", "print", "live-hls", "--input-caps", "wide"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "--input-caps")) << r.err;
  for (const char *live : {"live-hls.json", "live-cmaf.json"}) {
    r = run_command({bin(), "pipeline", "validate", std::string(g_getenv("SLUICE_PIPELINES_DIR")) + "/" + live});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  r = run_command({bin(), "transcode", tmp.file("none.mp4"), "--out", tmp.file("o"), "--pipeline", "live-hls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "live")) << r.err;

  const std::string dir = g_getenv("SLUICE_PIPELINES_DIR");
  r = run_command({bin(), "pipeline", "validate", dir + "/hls.json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string text = fs::read_file(dir + "/hls.json");
  std::string bad = text;
  bad.replace(bad.find("{scaler}"), 8, "{scalr}");
  fs::write_atomic(tmp.file("bad.json"), bad);
  r = run_command({bin(), "pipeline", "validate", tmp.file("bad.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "{scalr}")) << r.err;
  // A description that loads but does not build (an element that does not exist).
  bad = text;
  bad.replace(bad.find("aacparse"), 8, "aacparsr");
  fs::write_atomic(tmp.file("bad2.json"), bad);
  r = run_command({bin(), "pipeline", "validate", tmp.file("bad2.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "aacparsr")) << r.err;
}

TEST_F(Cli, HostileValuesAreRefused) {
  ASSERT_TRUE(test::make_clip(tmp.file("a.mp4"), ClipSpec{320, 240, 30, 1, 0.5, 0, true, "mp4"}));
  struct Case {
    std::vector<std::string> extra;
    std::string expect;
  } cases[] = {
      {{"--set", "preset=veryfast ! filesink location=/tmp/pwned"}, "preset"},
      {{"--set", "segment_seconds=4 name=x"}, "segment_seconds"},
      {{"--set", "segment_seconds=999"}, "segment_seconds"},
      {{"--set", "bogus=1"}, "bogus"},
      {{"--set", "noequals"}, "key=value"},
      {{"--encoder", "x264enc ! fakesink"}, "encoder"},
      {{"--ladder", "720p\" ! fakesink"}, "ladder"},
  };
  for (const auto &c : cases) {
    std::vector<std::string> argv = {bin(),     "pipeline",        "print", "hls",
                                     "--input", tmp.file("a.mp4"), "--out", tmp.file("o")};
    argv.insert(argv.end(), c.extra.begin(), c.extra.end());
    auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 1) << c.extra.back() << ": " << r.out;
    EXPECT_TRUE(contains(r.err, c.expect)) << r.err;
    EXPECT_FALSE(contains(r.out, "pwned"));
  }
  auto r = run_command(
      {bin(), "pipeline", "print", "hls", "--input", tmp.file("a.mp4"), "--out", tmp.file("o\" ! fakesink")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "output folder")) << r.err;
}

TEST_F(Cli, PrintedCommandRunByHandMatchesTranscode) {
  if (!test::have_program("ffprobe"))
    GTEST_SKIP() << "ffprobe is not installed (tools/setup installs it)";
  // A path with a space and pipeline syntax in it: quoting must survive the shell and gst-launch.
  fs::make_dirs(tmp.file("in dir ! name=x"));
  const std::string input = tmp.file("in dir ! name=x/clip.mp4");
  ASSERT_TRUE(test::make_clip(input, ClipSpec{640, 360, 30, 1, 2.0, 2, true, "mp4"}));
  const std::string by_hand = tmp.file("by hand");
  auto r = run_command({bin(), "pipeline", "print", "hls", "--input", input, "--out", by_hand, "--ladder", "240p,360p",
                        "--set", "segment_seconds=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string line = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(line.rfind("gst-launch-1.0 -e ", 0), 0u) << line;
  // GStreamer 1.22's gst-launch-1.0 sometimes misses the end of stream of a clip this short (hlssink2
  // writes while the pipeline is still PAUSED) and never exits, although its output is complete. So the
  // run is finished when every playlist has its EXT-X-ENDLIST (written at EOS) or the process exits; a
  // process still there a moment after that is stopped.
  fs::make_dirs(by_hand);
  const std::string sh_line = line + " >/dev/null";
  std::vector<std::string> args = {"sh", "-c", sh_line};
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  GPid pid;
  GError *err = nullptr;
  ASSERT_TRUE(g_spawn_async(
      nullptr, argv.data(), nullptr, static_cast<GSpawnFlags>(G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH),
      [](gpointer) { setpgid(0, 0); }, // a group of its own: the shell and gst-launch
      nullptr, &pid, &err))
      << (err ? err->message : "");
  auto ended = [&](const char *name) {
    const std::string pl = by_hand + "/" + name + ".m3u8";
    return fs::exists(pl) && contains(fs::read_file(pl), "#EXT-X-ENDLIST");
  };
  int status = 0;
  bool exited = false, complete = false;
  for (int i = 0; i < 1200 && !exited; i++) { // 120 s at most
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (!exited && ended("240p") && ended("360p")) {
      if (complete) // a second look, 1 s later: the sinks have closed their files
        break;
      complete = true;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!exited) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  g_spawn_close_pid(pid);
  if (exited) {
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the printed command failed";
  }
  ASSERT_TRUE(ended("240p") && ended("360p")) << "gst-launch-1.0 did not finish its playlists in 120 s";

  const std::string ours = tmp.file("ours");
  r = run_command({bin(), "transcode", input, "--out", ours, "--ladder", "240p,360p", "--set", "segment_seconds=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, ours + "/master.m3u8")) << r.out;

  for (const char *name : {"240p", "360p"}) {
    SCOPED_TRACE(name);
    const std::string a = by_hand + "/" + name + ".m3u8", b = ours + "/" + name + ".m3u8";
    ASSERT_TRUE(fs::exists(a));
    ASSERT_TRUE(fs::exists(b));
    auto probe = [](const std::string &pl) {
      return run_command({"ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,nb_read_frames,profile", "-of", "csv=p=0", pl})
          .out;
    };
    EXPECT_EQ(probe(a), probe(b));
    // Same segments (file names and count) in both.
    auto segs = [](const std::string &dir, const std::string &prefix) {
      std::vector<std::string> out;
      for (const auto &f : fs::list_dir(dir))
        if (f.rfind(prefix + "_", 0) == 0)
          out.push_back(f);
      return out;
    };
    EXPECT_EQ(segs(by_hand, name), segs(ours, name));
  }
}

TEST_F(Cli, CtrlCStopsAndRemovesPartialOutput) {
  ASSERT_TRUE(test::make_clip(tmp.file("long.mp4"), ClipSpec{640, 360, 30, 1, 30.0, 2, true, "mp4"}));
  const std::string out = tmp.file("out");
  std::vector<std::string> args = {
      bin(), "transcode", tmp.file("long.mp4"), "--out", out, "--set", "segment_seconds=1", "--set", "preset=medium"};
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  GPid pid;
  GError *err = nullptr;
  ASSERT_TRUE(g_spawn_async(nullptr, argv.data(), nullptr, G_SPAWN_DO_NOT_REAP_CHILD, nullptr, nullptr, &pid, &err));
  // Wait until the pipeline has written a few segments into its working folder.
  const std::string work = out + ".partial";
  bool started = false;
  for (int i = 0; i < 300 && !started; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    started = fs::list_dir(work).size() >= 4;
  }
  EXPECT_TRUE(started) << "the transcode did not start writing";
  kill(pid, SIGINT);
  int status = 0;
  for (int i = 0; i < 200; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (i == 199) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "sluice did not stop on SIGINT";
    }
  }
  g_spawn_close_pid(pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_FALSE(fs::exists(work)) << "partial output left behind";
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(Cli, ProgressLineOnATerminal) {
  if (!test::have_program("script"))
    GTEST_SKIP() << "script (util-linux) is not installed: no pseudo-terminal to run under";
  ASSERT_TRUE(test::make_clip(tmp.file("a.mp4"), ClipSpec{640, 360, 30, 1, 6.0, 2, true, "mp4"}));
  // script(1) gives sluice a terminal; the progress line is fed by sluiceprogress messages.
  const std::string cmd = "'" + bin() + "' transcode '" + tmp.file("a.mp4") + "' --out '" + tmp.file("o") + "'";
  auto r = run_command({"script", "-qefc", cmd, "/dev/null"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string all = r.out + r.err;
  EXPECT_TRUE(contains(all, "fps")) << all;
  EXPECT_TRUE(contains(all, "ETA")) << all;
  EXPECT_TRUE(contains(all, "100%")) << all;
  EXPECT_TRUE(contains(all, "HLS output:")) << all;
  // Without a terminal there is no progress line, only the result.
  r = run_command({bin(), "transcode", tmp.file("a.mp4"), "--out", tmp.file("o2")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.err, "ETA")) << r.err;
}
