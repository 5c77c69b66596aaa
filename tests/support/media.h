// SPDX-License-Identifier: LGPL-2.1-or-later
// Test support: media generated at test time with GStreamer, temp folders, running the sluice binary.
#pragma once

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::test {

// Initialises GStreamer once (and makes sure our plugin is registered).
void init_gst();

// Register with ::testing::AddGlobalTestEnvironment to run init_gst() before a suite's tests.
class GstEnvironment : public ::testing::Environment {
public:
  void SetUp() override { init_gst(); }
};

// A temporary folder removed at destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

private:
  std::string path_;
};

struct ClipSpec {
  int width = 320;
  int height = 240;
  int fps_n = 30, fps_d = 1;
  double seconds = 2.0;
  int audio_channels = 2; // 0: no audio
  bool video = true;
  std::string container = "mp4"; // mp4, mkv, webm, avi, ts
  std::string vcodec = "h264";   // h264, vp9, mpeg4
  std::string acodec = "aac";    // aac, opus, mp3
  std::string par = "1/1";       // pixel aspect ratio of the encoded video
};

// Encodes a clip with test sources; fails the current test (ADD_FAILURE) and returns false on error.
bool make_clip(const std::string &path, const ClipSpec &spec);

// Runs a gst-launch description to EOS (timeout in seconds); returns "" or the error text.
std::string run_launch(const std::string &description, int timeout_s = 120);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs argv (no shell) and captures its output.
CommandResult run_command(const std::vector<std::string> &argv, int timeout_s = 300);
// The sluice executable under test.
std::string sluice_binary();
bool have_program(const std::string &name);

std::string read_text(const std::string &path);

} // namespace sluice::test
