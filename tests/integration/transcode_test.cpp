// SPDX-License-Identifier: LGPL-2.1-or-later
// End-to-end transcodes of generated clips, checked with readers we did not write (ffprobe, hlsdemux).
#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "jobs/transcode.h"
#include "media.h"
#include "media/hls.h"
#include "media/probe_json.h"

#include <glib/gstdio.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <sstream>

using namespace sluice;
using sluice::test::ClipSpec;
using sluice::test::TempDir;

namespace {

struct FfStream {
  std::string type, codec, profile;
  int width = 0, height = 0, level = 0, channels = 0;
  long frames = -1;
  std::string frame_rate;
};

struct FfInfo {
  double duration = -1;
  std::vector<FfStream> streams;
  const FfStream *video() const {
    for (const auto &s : streams)
      if (s.type == "video")
        return &s;
    return nullptr;
  }
  const FfStream *audio() const {
    for (const auto &s : streams)
      if (s.type == "audio")
        return &s;
    return nullptr;
  }
};

// Reads a playlist (or file) with ffprobe, counting frames.
FfInfo ffprobe(const std::string &path) {
  FfInfo info;
  auto r = test::run_command(
      {"ffprobe", "-v", "error", "-count_frames", "-show_entries",
       "stream=codec_type,codec_name,profile,level,width,height,channels,nb_read_frames,r_frame_rate:format=duration",
       "-of", "json", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  if (r.exit_code != 0)
    return info;
  auto root = json::parse(r.out, "ffprobe output");
  JsonObject *o = json_node_get_object(root.get());
  if (JsonNode *f = json_object_get_member(o, "format")) {
    auto d = json::opt_string(json_node_get_object(f), "duration", "format");
    if (d)
      info.duration = g_ascii_strtod(d->c_str(), nullptr);
  }
  JsonArray *arr = json_object_get_array_member(o, "streams");
  for (guint i = 0; arr && i < json_array_get_length(arr); i++) {
    JsonObject *s = json_array_get_object_element(arr, i);
    FfStream st;
    st.type = json_object_get_string_member_with_default(s, "codec_type", "");
    st.codec = json_object_get_string_member_with_default(s, "codec_name", "");
    st.profile = json_object_get_string_member_with_default(s, "profile", "");
    st.width = static_cast<int>(json_object_get_int_member_with_default(s, "width", 0));
    st.height = static_cast<int>(json_object_get_int_member_with_default(s, "height", 0));
    st.level = static_cast<int>(json_object_get_int_member_with_default(s, "level", 0));
    st.channels = static_cast<int>(json_object_get_int_member_with_default(s, "channels", 0));
    st.frame_rate = json_object_get_string_member_with_default(s, "r_frame_rate", "");
    const char *n = json_object_get_string_member_with_default(s, "nb_read_frames", "");
    if (*n)
      st.frames = std::atol(n);
    info.streams.push_back(st);
  }
  return info;
}

// Keyframe flag of the first video packet of a segment file.
bool starts_with_keyframe(const std::string &segment) {
  auto r = test::run_command({"ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1",
                              "-show_entries", "packet=flags", "-of", "csv=p=0", segment});
  return r.exit_code == 0 && r.out.find('K') != std::string::npos;
}

int profile_idc(const std::string &ffprofile) {
  if (ffprofile == "High")
    return 100;
  if (ffprofile == "Main")
    return 77;
  if (ffprofile == "Baseline" || ffprofile == "Constrained Baseline")
    return 66;
  return -1;
}

struct MasterVariant {
  std::map<std::string, std::string> attrs;
  std::string uri;
};

std::vector<MasterVariant> parse_master(const std::string &text) {
  std::vector<MasterVariant> out;
  std::istringstream in(text);
  std::string line;
  std::regex attr(R"re(([A-Z-]+)=("[^"]*"|[^,]*))re");
  while (std::getline(in, line)) {
    if (line.rfind("#EXT-X-STREAM-INF:", 0) == 0) {
      MasterVariant v;
      std::string rest = line.substr(18);
      for (std::sregex_iterator it(rest.begin(), rest.end(), attr), end; it != end; ++it) {
        std::string val = (*it)[2];
        if (val.size() >= 2 && val.front() == '"')
          val = val.substr(1, val.size() - 2);
        v.attrs[(*it)[1]] = val;
      }
      std::getline(in, v.uri);
      out.push_back(v);
    }
  }
  return out;
}

// Decodes an HLS playlist end to end with GStreamer's own HLS demuxer (uridecodebin -> hlsdemux).
std::string decode_with_hlsdemux(const std::string &playlist, bool video, bool audio) {
  gchar *uri = gst_filename_to_uri(playlist.c_str(), nullptr);
  std::string d = std::string("uridecodebin uri=\"") + uri + "\" name=d ";
  g_free(uri);
  if (video)
    d += "d. ! video/x-raw ! fakesink sync=false ";
  if (audio)
    d += "d. ! audio/x-raw ! fakesink sync=false ";
  return test::run_launch(d, 120);
}

struct Expect {
  int frames = 0; // source video frames (0: audio only)
  double fps = 0;
  double seconds = 0;
  bool audio = true;
  int audio_channels = 2;
  std::vector<std::pair<int, int>> sizes; // expected renditions, ascending
};

// The full set of checks on a finished package.
void verify_package(const std::string &out, const Expect &e) {
  SCOPED_TRACE("package " + out);
  ASSERT_TRUE(fs::exists(out + "/master.m3u8"));
  EXPECT_FALSE(fs::exists(jobs::work_dir_for(out))) << "working folder left behind";
  const std::string master = test::read_text(out + "/master.m3u8");
  EXPECT_NE(master.find("#EXT-X-INDEPENDENT-SEGMENTS"), std::string::npos);
  auto variants = parse_master(master);
  const bool video = e.frames > 0;
  ASSERT_EQ(variants.size(), video ? e.sizes.size() : 1u) << master;

  std::vector<std::vector<double>> segment_durations;
  for (size_t i = 0; i < variants.size(); i++) {
    auto v = variants[i];
    SCOPED_TRACE("variant " + v.uri);
    const std::string pl_path = out + "/" + v.uri;
    const std::string pl_text = test::read_text(pl_path);
    EXPECT_NE(pl_text.find("#EXT-X-PLAYLIST-TYPE:VOD"), std::string::npos);
    EXPECT_NE(pl_text.find("#EXT-X-ENDLIST"), std::string::npos);
    auto pl = media::parse_media_playlist(pl_text);
    ASSERT_FALSE(pl.segments.empty());
    std::vector<double> durs;
    for (const auto &s : pl.segments) {
      durs.push_back(s.duration);
      EXPECT_LE(std::lround(s.duration), pl.target_duration);
    }
    segment_durations.push_back(durs);

    // Reader we did not write #1: ffprobe.
    FfInfo ff = ffprobe(pl_path);
    const FfStream *vs = ff.video();
    const FfStream *as = ff.audio();
    EXPECT_EQ(as != nullptr, e.audio);
    if (as) {
      EXPECT_EQ(as->codec, "aac");
      EXPECT_EQ(as->channels, e.audio_channels);
    }
    auto bw = std::atoll(v.attrs["BANDWIDTH"].c_str());
    auto avg = std::atoll(v.attrs["AVERAGE-BANDWIDTH"].c_str());
    EXPECT_GT(avg, 0);
    EXPECT_GE(bw, avg);
    std::int64_t bytes = 0;
    for (const auto &s : pl.segments)
      bytes += fs::file_size(out + "/" + s.uri);
    double measured_avg = bytes * 8.0 / pl.total_duration();
    EXPECT_NEAR(static_cast<double>(avg), measured_avg, measured_avg * 0.01);
    if (!video) {
      EXPECT_EQ(vs, nullptr);
      EXPECT_EQ(v.attrs["CODECS"], "mp4a.40.2");
      EXPECT_EQ(v.attrs.count("RESOLUTION"), 0u);
      EXPECT_NEAR(pl.total_duration(), e.seconds, 0.1);
      EXPECT_EQ(decode_with_hlsdemux(pl_path, false, true), "");
      continue;
    }
    ASSERT_NE(vs, nullptr);
    EXPECT_EQ(vs->codec, "h264");
    // RESOLUTION and the expected ladder match what was encoded.
    EXPECT_EQ(vs->width, e.sizes[i].first);
    EXPECT_EQ(vs->height, e.sizes[i].second);
    EXPECT_EQ(v.attrs["RESOLUTION"], std::to_string(vs->width) + "x" + std::to_string(vs->height));
    EXPECT_EQ(vs->width % 2, 0);
    EXPECT_EQ(vs->height % 2, 0);
    // CODECS from the encoded stream: avc1.PPCCLL with ffprobe's profile and level.
    char expect_codec[32];
    std::snprintf(expect_codec, sizeof expect_codec, "avc1.%02x", profile_idc(vs->profile));
    const std::string codecs = v.attrs["CODECS"];
    EXPECT_EQ(codecs.substr(0, 7), expect_codec) << codecs << " vs profile " << vs->profile;
    char level_hex[8];
    std::snprintf(level_hex, sizeof level_hex, "%02x", vs->level);
    EXPECT_EQ(codecs.substr(9, 2), level_hex) << codecs << " vs level " << vs->level;
    EXPECT_EQ(codecs.find(",mp4a.40.2") != std::string::npos, e.audio) << codecs;
    // FRAME-RATE
    EXPECT_NEAR(g_ascii_strtod(v.attrs["FRAME-RATE"].c_str(), nullptr), e.fps, 0.001);
    // Every frame of the source, no more, no less: durations match within one frame.
    EXPECT_NEAR(static_cast<double>(vs->frames), e.frames, 1.0) << "frames decoded by ffprobe";
    double video_seconds = vs->frames / e.fps;
    EXPECT_NEAR(video_seconds, e.frames / e.fps, 1.0 / e.fps + 1e-6);
    EXPECT_NEAR(pl.total_duration(), e.frames / e.fps, 1.0 / e.fps + 0.05) << "playlist duration";
    // Every segment starts with a keyframe.
    for (const auto &s : pl.segments)
      EXPECT_TRUE(starts_with_keyframe(out + "/" + s.uri)) << s.uri;
    // Reader we did not write #2: GStreamer's hlsdemux decodes it to the end.
    EXPECT_EQ(decode_with_hlsdemux(pl_path, true, e.audio), "");
  }
  // Segment boundaries line up across renditions.
  for (size_t i = 1; i < segment_durations.size(); i++) {
    ASSERT_EQ(segment_durations[i].size(), segment_durations[0].size());
    for (size_t k = 0; k < segment_durations[0].size(); k++)
      EXPECT_NEAR(segment_durations[i][k], segment_durations[0][k], 0.002) << "segment " << k;
  }
  // The master playlist plays as a whole in playbin (hlsdemux, switching variants as it likes).
  gchar *uri = gst_filename_to_uri((out + "/master.m3u8").c_str(), nullptr);
  EXPECT_EQ(test::run_launch(std::string("playbin uri=\"") + uri +
                                 "\" video-sink=\"fakesink sync=false\" audio-sink=\"fakesink sync=false\"",
                             120),
            "");
  g_free(uri);
}

class Transcode : public ::testing::Test {
protected:
  void SetUp() override {
    test::init_gst();
    if (!test::have_program("ffprobe"))
      GTEST_SKIP() << "ffprobe is not installed (tools/setup installs it)";
  }
  jobs::TranscodeResult run(const std::string &input, const std::string &ladder = "",
                            std::map<std::string, std::string> params = {}) {
    jobs::TranscodeRequest req;
    req.input = input;
    req.ladder = ladder;
    req.params = std::move(params);
    return jobs::transcode_sync(req, out());
  }
  std::string out() const { return tmp.file("out"); }
  TempDir tmp;
};

} // namespace

TEST_F(Transcode, LandscapeWithAudioFullLadder) {
  ClipSpec c;
  c.width = 640;
  c.height = 360;
  c.seconds = 3;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), c));
  auto res = run(tmp.file("in.mp4"), "", {{"segment_seconds", "1"}});
  EXPECT_EQ(res.renditions.size(), 2u); // 240p and 360p: never upscaled
  verify_package(out(), {90, 30, 3, true, 2, {{426, 240}, {640, 360}}});
}

TEST_F(Transcode, OddSizeVp9OpusWebm) {
  ClipSpec c;
  c.width = 321;
  c.height = 241;
  c.container = "webm";
  c.vcodec = "vp9";
  c.acodec = "opus";
  ASSERT_TRUE(test::make_clip(tmp.file("in.webm"), c));
  run(tmp.file("in.webm"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {60, 30, 2, true, 2, {{320, 240}}});
}

TEST_F(Transcode, Portrait) {
  ClipSpec c;
  c.width = 360;
  c.height = 640;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), c));
  run(tmp.file("in.mp4"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {60, 30, 2, true, 2, {{240, 426}, {360, 640}}});
}

TEST_F(Transcode, SixtyFpsVideoOnly) {
  ClipSpec c;
  c.width = 320;
  c.height = 240;
  c.fps_n = 60;
  c.audio_channels = 0;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mkv"), ClipSpec{c.width, c.height, 60, 1, 2.0, 0, true, "mkv"}));
  run(tmp.file("in.mkv"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {120, 60, 2, false, 0, {{320, 240}}});
  // No audio asked from a video-only file: the master announces video only.
  EXPECT_EQ(test::read_text(out() + "/master.m3u8").find("mp4a"), std::string::npos);
}

TEST_F(Transcode, AudioOnly) {
  ClipSpec c;
  c.video = false;
  c.seconds = 3;
  ASSERT_TRUE(test::make_clip(tmp.file("in.m4a"), c));
  auto res = run(tmp.file("in.m4a"), "", {{"segment_seconds", "1"}});
  ASSERT_EQ(res.renditions.size(), 1u);
  EXPECT_EQ(res.renditions[0].name, "audio");
  Expect e;
  e.seconds = 3;
  verify_package(out(), e);
}

TEST_F(Transcode, SurroundAudioDownmixedToStereo) {
  ClipSpec c;
  c.audio_channels = 6;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mkv"), ClipSpec{320, 240, 30, 1, 2.0, 6, true, "mkv"}));
  run(tmp.file("in.mkv"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {60, 30, 2, true, 2, {{320, 240}}});
}

TEST_F(Transcode, Mpeg4InAvi) {
  ClipSpec c{352, 288, 25, 1, 2.0, 2, true, "avi", "mpeg4", "mp3"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.avi"), c));
  run(tmp.file("in.avi"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {50, 25, 2, true, 2, {{294, 240}}});
}

TEST_F(Transcode, HalfSecondClip) {
  ClipSpec c{320, 240, 30, 1, 0.5, 2, true, "mp4"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), c));
  run(tmp.file("in.mp4"));
  verify_package(out(), {15, 30, 0.5, true, 2, {{320, 240}}});
}

TEST_F(Transcode, AnamorphicSourceGetsSquarePixels) {
  // 720x576 with 16:15 pixels is displayed as 768x576.
  ClipSpec c{720, 576, 25, 1, 1.0, 0, true, "mkv", "h264", "aac", "16/15"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.mkv"), c));
  run(tmp.file("in.mkv"), "240p,480p", {{"segment_seconds", "1"}});
  verify_package(out(), {25, 25, 1, false, 0, {{320, 240}, {640, 480}}});
}

TEST_F(Transcode, TruncatedInputIsAnErrorAndLeavesNothing) {
  ClipSpec c{320, 240, 30, 1, 4.0, 2, true, "mkv"};
  ASSERT_TRUE(test::make_clip(tmp.file("full.mkv"), c));
  std::string data = fs::read_file(tmp.file("full.mkv"));
  fs::write_atomic(tmp.file("cut.mkv"), data.substr(0, data.size() / 2));
  try {
    run(tmp.file("cut.mkv"));
    FAIL() << "a truncated input must not succeed";
  } catch (const Error &e) {
    EXPECT_TRUE(e.code() == ErrorCode::Truncated || e.code() == ErrorCode::Pipeline) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out()));
  EXPECT_FALSE(fs::exists(jobs::work_dir_for(out())));
}

TEST_F(Transcode, NotMediaInputs) {
  fs::write_atomic(tmp.file("empty.mp4"), "");
  fs::write_atomic(tmp.file("text.mp4"), "This is a text file, not a video.\n");
  for (const char *name : {"empty.mp4", "text.mp4", "missing.mp4"}) {
    SCOPED_TRACE(name);
    try {
      run(tmp.file(name));
      FAIL() << "expected an error";
    } catch (const Error &e) {
      EXPECT_TRUE(e.code() == ErrorCode::NotMedia || e.code() == ErrorCode::NotFound) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << "the message names the file: " << e.what();
    }
    EXPECT_FALSE(fs::exists(out()));
    EXPECT_FALSE(fs::exists(jobs::work_dir_for(out())));
  }
}

TEST_F(Transcode, RefusesANonEmptyOutputFolder) {
  ClipSpec c{320, 240, 30, 1, 0.5, 0, true, "mp4"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), c));
  fs::make_dirs(out());
  fs::write_atomic(out() + "/keep.txt", "precious");
  EXPECT_THROW(run(tmp.file("in.mp4")), Error);
  EXPECT_EQ(test::read_text(out() + "/keep.txt"), "precious");
}

TEST_F(Transcode, RotatedPhoneVideoComesOutUpright) {
  if (!test::have_program("ffmpeg"))
    GTEST_SKIP() << "ffmpeg is not installed (tools/setup installs it); it tags the rotation";
  ASSERT_TRUE(test::make_clip(tmp.file("flat.mp4"), ClipSpec{320, 240, 30, 1, 1.0, 2, true, "mp4"}));
  // Phones store landscape pixels plus a display rotation.
  auto r = test::run_command({"ffmpeg", "-v", "error", "-y", "-i", tmp.file("flat.mp4"), "-c", "copy",
                              "-metadata:s:v:0", "rotate=90", tmp.file("phone.mp4")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  run(tmp.file("phone.mp4"), "", {{"segment_seconds", "1"}});
  verify_package(out(), {30, 30, 1, true, 2, {{240, 320}}});
}

// A job plans with the probe made when its file was uploaded (the catalog's probe_json) while the file is unchanged,
// and probes it again when its size, or its modification time, says it changed since.
TEST_F(Transcode, PlanningUsesTheStoredProbeWhileTheFileIsUnchanged) {
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), ClipSpec{320, 240, 30, 1, 1.0, 2, true, "mp4"}));
  const std::string input = tmp.file("in.mp4");
  auto encoders = pipeline::EncoderTable::load_default();
  media::ProbeResult real = media::probe(input);
  ASSERT_GT(real.duration_ns, 0);
  // Stored as the upload stores it, then read back; made different from what a probe finds (7 s, the file lasts
  // 1 s), so that the plan tells which one it used.
  json::Node stored_json(media::probe_to_json(real));
  media::ProbeResult stored = media::probe_from_json(json::to_string(stored_json.get(), false));
  stored.duration_ns = 7'000'000'000;
  stored.path = "/somewhere/else/upload.tmp"; // where the upload was when it was probed

  jobs::TranscodeRequest req;
  req.input = input;
  req.probed = stored;
  req.probed_at = g_get_real_time();
  auto plan = jobs::plan_transcode(req, tmp.file("work"), encoders);
  EXPECT_EQ(plan.probe.duration_ns, 7'000'000'000) << "unchanged: the stored probe is used";
  EXPECT_DOUBLE_EQ(plan.render.duration, 7.0);
  EXPECT_EQ(plan.probe.path, fs::absolute(input)) << "the pipeline reads the file where it is now";
  EXPECT_NE(plan.launch.find("location=\"" + fs::absolute(input) + "\""), std::string::npos) << plan.launch;

  // Modified after it was probed: probed again.
  req.probed_at = g_get_real_time() - std::int64_t{3600} * G_USEC_PER_SEC;
  EXPECT_EQ(jobs::plan_transcode(req, tmp.file("work"), encoders).probe.duration_ns, real.duration_ns);
  // Another size than the probed one: probed again.
  req.probed_at = g_get_real_time();
  req.probed->size += 1;
  EXPECT_EQ(jobs::plan_transcode(req, tmp.file("work"), encoders).probe.duration_ns, real.duration_ns);
  // No time of the probe: probed again.
  req.probed->size -= 1;
  req.probed_at = 0;
  EXPECT_EQ(jobs::plan_transcode(req, tmp.file("work"), encoders).probe.duration_ns, real.duration_ns);
  // Gone since: the probe says so, as for a file never probed.
  req.probed_at = g_get_real_time();
  ASSERT_EQ(g_unlink(input.c_str()), 0);
  EXPECT_EQ(test::expect_error([&] { jobs::plan_transcode(req, tmp.file("work"), encoders); }).code(),
            ErrorCode::NotFound);
}

TEST_F(Transcode, TsPlaylistsLastAsLongAsTheStream) {
  // 180 frames at 30 fps in 2 s segments: hlssink2 ended the last segment at the last frame's timestamp,
  // so the playlists lasted 5.967 s (one frame less than the stream; the CMAF package was exact).
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), ClipSpec{640, 360, 30, 1, 6.0, 2, true, "mp4"}));
  auto r = test::run_command(
      {test::sluice_binary(), "transcode", tmp.file("in.mp4"), "--out", out(), "--set", "segment_seconds=2"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto variants = parse_master(test::read_text(out() + "/master.m3u8"));
  ASSERT_EQ(variants.size(), 2u); // 240p and 360p
  for (const auto &v : variants) {
    SCOPED_TRACE(v.uri);
    auto pl = media::parse_media_playlist(test::read_text(out() + "/" + v.uri));
    ASSERT_EQ(pl.segments.size(), 3u);
    EXPECT_NEAR(pl.total_duration(), 6.0, 0.001);
    EXPECT_NEAR(pl.segments.back().duration, 2.0, 0.001);
    // ffprobe on the segments put end to end: the video lasts as long as the playlist says.
    std::string all;
    for (const auto &s : pl.segments)
      all += fs::read_file(out() + "/" + s.uri);
    fs::write_atomic(tmp.file("all.ts"), all);
    auto packets = test::run_command({"ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                      "packet=pts_time,duration_time", "-of", "csv=p=0", tmp.file("all.ts")});
    ASSERT_EQ(packets.exit_code, 0) << packets.err;
    double first = 1e18, end = -1e18;
    int frames = 0;
    std::istringstream lines(packets.out);
    for (std::string line; std::getline(lines, line);) {
      auto comma = line.find(',');
      if (comma == std::string::npos)
        continue;
      double pts = g_ascii_strtod(line.c_str(), nullptr), dur = g_ascii_strtod(line.c_str() + comma + 1, nullptr);
      first = std::min(first, pts);
      end = std::max(end, pts + dur);
      ++frames;
    }
    EXPECT_EQ(frames, 180);
    EXPECT_NEAR(end - first, 6.0, 0.001) << "ffprobe";
    EXPECT_NEAR(end - first, pl.total_duration(), 0.001) << "ffprobe against the playlist";
  }
}

// A run whose job's lease was lost while it ran (another process took the job): the fence asked right before the
// rename says no, and nothing is published or left behind; a fence that says yes publishes as usual.
TEST_F(Transcode, FenceDecidesWhetherThePackageIsPublished) {
  ClipSpec c{320, 240, 30, 1, 1.0, 0, true, "mp4"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), c));
  auto encoders = pipeline::EncoderTable::load_default();
  for (const bool holds : {false, true}) {
    SCOPED_TRACE(holds ? "the lease holds" : "the lease was lost");
    const std::string out = tmp.file(holds ? "held" : "lost");
    const std::string work = jobs::work_dir_for(out);
    jobs::TranscodeRequest req;
    req.input = tmp.file("in.mp4");
    jobs::Transcode t(jobs::plan_transcode(req, work, encoders), out, work);
    int asked = 0;
    t.set_fence([&] {
      asked++;
      // Asked once the package is finished, right before it would be renamed into place.
      EXPECT_TRUE(fs::exists(fs::join(work, "master.m3u8")));
      return holds;
    });
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    std::optional<Error> error;
    bool done = false;
    t.start({}, [&](std::optional<Error> err, const jobs::TranscodeResult &) {
      error = std::move(err);
      done = true;
      g_main_loop_quit(loop);
    });
    guint timeout = g_timeout_add_seconds(
        120, +[](gpointer l) -> gboolean { return g_main_loop_quit(static_cast<GMainLoop *>(l)), G_SOURCE_REMOVE; },
        loop);
    g_main_loop_run(loop);
    ASSERT_TRUE(done) << "the run did not end within 120 s";
    g_source_remove(timeout);
    EXPECT_EQ(asked, 1);
    EXPECT_FALSE(fs::exists(work)); // published or removed: no working folder is left either way
    if (holds) {
      EXPECT_FALSE(error.has_value()) << error->what();
      EXPECT_TRUE(fs::exists(fs::join(out, "master.m3u8")));
    } else {
      ASSERT_TRUE(error.has_value());
      EXPECT_EQ(error->code(), ErrorCode::Canceled) << error->what();
      EXPECT_FALSE(fs::exists(out)) << "a package was published after the lease was lost";
    }
  }
}
