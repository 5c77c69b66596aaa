// SPDX-License-Identifier: LGPL-2.1-or-later
// A job's HLS segments cut at the keyframes: the first segment of every rendition is written while the pictures of
// the third GOP are still held before the encoders, and the package keeps what hlssink2 made.
#include "core/error.h"
#include "core/fs.h"
#include "jobs/hls_cuts.h"
#include "jobs/runner.h"
#include "jobs/transcode.h"
#include "media.h"
#include "media/hls.h"
#include "media/ts.h"
#include "pipeline/render.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <sstream>

using namespace sluice;
using sluice::test::ClipSpec;
using sluice::test::TempDir;

namespace {

// Holds every picture from `from` on (stream time, ns) at a pad until released.
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  bool open = false;
  GstClockTime from = GST_CLOCK_TIME_NONE;
  int held = 0; // pictures that had to wait

  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
    cv.notify_all();
  }

  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data) {
    auto *g = static_cast<Gate *>(data);
    GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
    if (!GST_BUFFER_PTS_IS_VALID(buf) || GST_BUFFER_PTS(buf) < g->from)
      return GST_PAD_PROBE_OK;
    std::unique_lock<std::mutex> lock(g->mutex);
    if (!g->open)
      g->held++;
    g->cv.wait(lock, [g] { return g->open; });
    return GST_PAD_PROBE_OK;
  }
};

// The names of the plan's media playlists.
std::vector<std::string> playlists_of(const jobs::TranscodePlan &plan) {
  std::vector<std::string> names;
  for (const auto &r : plan.render.renditions)
    names.push_back(r.name + ".m3u8");
  return names;
}

// Whether every playlist exists and lists a segment that is there.
bool every_rendition_has_a_segment(const std::string &dir, const std::vector<std::string> &names) {
  for (const auto &n : names) {
    if (!fs::exists(fs::join(dir, n)))
      return false;
    auto pl = media::parse_media_playlist(fs::read_file(fs::join(dir, n)));
    if (pl.segments.empty() || !fs::exists(fs::join(dir, pl.segments.front().uri)))
      return false;
  }
  return true;
}

} // namespace

TEST(SegmentLocation, NumbersLikePrintf) {
  EXPECT_EQ(jobs::segment_location("/out/720p_%05d.ts", 0), "/out/720p_00000.ts");
  EXPECT_EQ(jobs::segment_location("/out/720p_%05d.ts", 123456), "/out/720p_123456.ts");
  EXPECT_EQ(jobs::segment_location("/out/a%d.ts", 7), "/out/a7.ts");
  EXPECT_EQ(jobs::segment_location("/out/100%%/b%3d.ts", 7), "/out/100%/b  7.ts");
  for (const char *bad : {"/out/a.ts", "/out/%s.ts", "/out/%d_%d.ts", "/out/%n", "/out/a%", "/out/%5", "/out/%x"})
    EXPECT_THROW(jobs::segment_location(bad, 1), Error) << bad;
}

// 2 s segments of a clip of 3 GOPs, every picture from 4 s on held before the renditions' encoders: each rendition's
// first segment is written and listed all the same (hlssink2 closed it only once the second GOP was complete, i.e.
// once the keyframe at 4 s had reached it: it never would here). Then, released, the package is whole.
TEST(HlsCuts, FirstSegmentBeforeTheThirdGopIsDecoded) {
  TempDir tmp;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), ClipSpec{640, 360, 30, 1, 6.0, 2, true, "mp4"}));
  auto encoders = pipeline::EncoderTable::load_default();
  jobs::TranscodeRequest req;
  req.input = tmp.file("in.mp4");
  req.params["segment_seconds"] = "2";
  const std::string out = tmp.file("out");
  fs::make_dirs(out);
  auto plan = jobs::plan_transcode(req, out, encoders);
  const auto names = playlists_of(plan);
  ASSERT_EQ(names.size(), 2u); // 240p and 360p

  jobs::Runner runner(plan.launch);
  Gate gate;
  gate.from = 4 * GST_SECOND;
  g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
  std::optional<Error> error;
  bool done = false, playable_while_held = false;
  int closed = 0;
  runner.start([](const jobs::Progress &) {},
               [&](std::optional<Error> e) {
                 error = std::move(e);
                 done = true;
                 g_main_loop_quit(loop);
               },
               [&] {
                 closed++;
                 if (!playable_while_held && every_rendition_has_a_segment(out, names)) {
                   std::lock_guard<std::mutex> lock(gate.mutex);
                   playable_while_held = !gate.open;
                 }
                 if (playable_while_held)
                   gate.release();
               });
  // The runner has built the pipeline: the gate goes where the decoded pictures reach the renditions.
  GstPtr<GstElement> vt(gst_bin_get_by_name(GST_BIN(runner.pipeline()), "vt"));
  ASSERT_TRUE(vt);
  GstPtr<GstPad> vt_sink(gst_element_get_static_pad(vt.get(), "sink"));
  gst_pad_add_probe(vt_sink.get(), GST_PAD_PROBE_TYPE_BUFFER, &Gate::probe, &gate, nullptr);
  // hlssink2 does not run: the renditions are muxed into appsinks.
  for (const auto &r : plan.render.renditions) {
    GstPtr<GstElement> mux(gst_bin_get_by_name(GST_BIN(runner.pipeline()), ("hls_" + r.name).c_str()));
    ASSERT_TRUE(mux);
    EXPECT_STREQ(GST_OBJECT_NAME(gst_element_get_factory(mux.get())), "mpegtsmux");
  }
  // Held pictures that no segment frees: released after a while, and the test fails.
  struct Guard {
    Gate *gate;
    guint id;
  } guard{&gate, 0};
  guard.id = g_timeout_add_seconds(
      45,
      +[](gpointer data) -> gboolean {
        auto *g = static_cast<Guard *>(data);
        g->gate->release();
        g->id = 0;
        return G_SOURCE_REMOVE;
      },
      &guard);
  g_main_loop_run(loop);
  if (guard.id)
    g_source_remove(guard.id);
  gate.release();
  ASSERT_TRUE(done);
  ASSERT_FALSE(error) << error->what();
  // (It may be listed before any picture of the third GOP even reached the gate: gate.held is then 0.)
  EXPECT_TRUE(playable_while_held) << "a rendition's first segment waited for the pictures after 4 s (" << gate.held
                                   << " held)";
  EXPECT_EQ(closed, 6); // 3 segments per rendition

  // What hlssink2 wrote: NAME_00000.ts..., a playlist of 2 s segments that each begin with the tables and a keyframe.
  for (const auto &r : plan.render.renditions) {
    SCOPED_TRACE(r.name);
    const std::string text = fs::read_file(fs::join(out, r.name + ".m3u8"));
    EXPECT_NE(text.find("#EXT-X-TARGETDURATION:2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("#EXT-X-PLAYLIST-TYPE:EVENT\n"), std::string::npos) << text;
    auto pl = media::parse_media_playlist(text);
    ASSERT_EQ(pl.segments.size(), 3u) << text;
    for (std::size_t i = 0; i < pl.segments.size(); i++) {
      const auto &s = pl.segments[i];
      EXPECT_EQ(s.uri, r.name + "_0000" + std::to_string(i) + ".ts");
      EXPECT_NEAR(s.duration, 2.0, 0.001) << s.uri;
      const std::string bytes = fs::read_file(fs::join(out, s.uri));
      ASSERT_GE(bytes.size(), 2 * media::kTsPacket) << s.uri;
      EXPECT_EQ(bytes[0], 0x47);
      EXPECT_EQ(((bytes[1] & 0x1f) << 8) | static_cast<std::uint8_t>(bytes[2]), 0) << s.uri << " begins without a PAT";
      if (!test::have_program("ffprobe"))
        continue;
      auto first =
          test::run_command({"ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
                             "-read_intervals", "%+#1", "-of", "csv=p=0", fs::join(out, s.uri)});
      ASSERT_EQ(first.exit_code, 0) << first.err;
      EXPECT_EQ(first.out.substr(0, 1), "K") << s.uri << " does not begin with a keyframe: " << first.out;
    }
  }
  // The finished package: VOD playlists and a master, the length checked against the input.
  auto res = jobs::finalize_hls(plan, out);
  ASSERT_EQ(res.renditions.size(), 2u);
  for (const auto &rr : res.renditions) {
    EXPECT_NEAR(rr.stats.duration, 6.0, 0.001) << rr.name;
    EXPECT_NE(rr.codecs.find("avc1."), std::string::npos) << rr.codecs;
    EXPECT_NE(rr.codecs.find("mp4a.40.2"), std::string::npos) << rr.codecs;
    const std::string text = fs::read_file(fs::join(out, rr.playlist));
    EXPECT_NE(text.find("#EXT-X-PLAYLIST-TYPE:VOD\n"), std::string::npos) << text;
    EXPECT_NE(text.find("#EXT-X-ENDLIST"), std::string::npos) << text;
  }
}

// An audio-only input keeps hlssink2 (nothing to cut at), and its package is made as before.
// The first video decoder in `bin` or a bin inside it.
static GstElement *find_video_decoder(GstBin *bin) {
  GstElement *found = nullptr;
  GstIterator *it = gst_bin_iterate_recurse(bin);
  GValue item = G_VALUE_INIT;
  while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto *e = GST_ELEMENT(g_value_get_object(&item));
    GstElementFactory *f = gst_element_get_factory(e);
    const gchar *klass = f ? gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS) : nullptr;
    if (klass && strstr(klass, "Decoder") && strstr(klass, "Video"))
      found = GST_ELEMENT(gst_object_ref(e));
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  return found;
}

// The plan's decoder threads reach the decoder decodebin picks (it exists only once the stream is known).
TEST(Runner, TheVideoDecoderGetsThePlansThreads) {
  TempDir tmp;
  ASSERT_TRUE(test::make_clip(tmp.file("in.mp4"), ClipSpec{640, 360, 30, 1, 3.0, 2, true, "mp4"}));
  auto encoders = pipeline::EncoderTable::load_default();
  jobs::TranscodeRequest req;
  req.input = tmp.file("in.mp4");
  req.encoder = "x264";
  req.params["segment_seconds"] = "1";
  const std::string out = tmp.file("out");
  fs::make_dirs(out);
  auto plan = jobs::plan_transcode(req, out, encoders);
  EXPECT_EQ(plan.decoder_threads, pipeline::decoder_threads(plan.render, encoders));
  EXPECT_GE(plan.decoder_threads, 1);
  for (int threads : {1, 3}) {
    fs::remove_all(out);
    fs::make_dirs(out);
    jobs::Runner runner(plan.launch);
    runner.set_decoder_threads(threads);
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    std::optional<Error> error;
    int seen = -1;
    runner.start([](const jobs::Progress &) {},
                 [&](std::optional<Error> e) {
                   error = std::move(e);
                   g_main_loop_quit(loop);
                 },
                 [&] {
                   if (seen >= 0)
                     return;
                   GstPtr<GstElement> dec(find_video_decoder(GST_BIN(runner.pipeline())));
                   if (dec)
                     g_object_get(dec.get(), "max-threads", &seen, nullptr);
                 });
    g_main_loop_run(loop);
    ASSERT_FALSE(error) << error->what();
    EXPECT_EQ(seen, threads);
  }
}

TEST(HlsCuts, AudioOnlyKeepsHlssink2) {
  TempDir tmp;
  ClipSpec c{320, 240, 30, 1, 3.0, 2, false, "mp4"};
  ASSERT_TRUE(test::make_clip(tmp.file("in.m4a"), c));
  auto encoders = pipeline::EncoderTable::load_default();
  jobs::TranscodeRequest req;
  req.input = tmp.file("in.m4a");
  const std::string out = tmp.file("out");
  fs::make_dirs(out);
  auto plan = jobs::plan_transcode(req, out, encoders);
  GError *gerr = nullptr;
  GstElement *p = gst_parse_launch_full(plan.launch.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &gerr);
  ASSERT_NE(p, nullptr) << (gerr ? gerr->message : "");
  GstPtr<GstElement> pipeline(GST_ELEMENT(gst_object_ref_sink(p)));
  EXPECT_EQ(jobs::cut_hls_sinks(pipeline.get()), 0);
  GstPtr<GstElement> sink(gst_bin_get_by_name(GST_BIN(pipeline.get()), "hls_audio"));
  ASSERT_TRUE(sink);
  EXPECT_STREQ(GST_OBJECT_NAME(gst_element_get_factory(sink.get())), "hlssink2");
}

[[maybe_unused]] ::testing::Environment *const gst_env = ::testing::AddGlobalTestEnvironment(new test::GstEnvironment);
