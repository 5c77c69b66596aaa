// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the sluiceprogress element (plugins/progress), driven through GstHarness.
// The plugin is found through GST_PLUGIN_PATH, which the test environment points at the build dir.

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include "media.h"

#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr const char *kMessageName = "sluice-progress";

[[maybe_unused]] ::testing::Environment *const gst_environment =
    ::testing::AddGlobalTestEnvironment(new sluice::test::GstEnvironment);

struct StructureFree {
  void operator()(GstStructure *s) const { gst_structure_free(s); }
};
using Structure = std::unique_ptr<GstStructure, StructureFree>;

// Upstream duration answered by the harness source pad in the query tests.
GstPadQueryFunction original_src_query = nullptr;
bool upstream_answers = false;
int upstream_duration_queries = 0;
constexpr gint64 kUpstreamDuration = 20 * GST_SECOND;

gboolean duration_answering_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_DURATION) {
    GstFormat format = GST_FORMAT_UNDEFINED;
    gst_query_parse_duration(query, &format, nullptr);
    ++upstream_duration_queries;
    if (!upstream_answers || format != GST_FORMAT_TIME)
      return FALSE;
    gst_query_set_duration(query, GST_FORMAT_TIME, kUpstreamDuration);
    return TRUE;
  }
  return original_src_query(pad, parent, query);
}

guint64 get_u64(const GstStructure *s, const char *field) {
  guint64 v = 0;
  EXPECT_TRUE(gst_structure_get_uint64(s, field, &v)) << field;
  return v;
}

gint64 get_i64(const GstStructure *s, const char *field) {
  gint64 v = 0;
  EXPECT_TRUE(gst_structure_get_int64(s, field, &v)) << field;
  return v;
}

int get_int(const GstStructure *s, const char *field) {
  int v = 0;
  EXPECT_TRUE(gst_structure_get_int(s, field, &v)) << field;
  return v;
}

double get_double(const GstStructure *s, const char *field) {
  double v = 0;
  EXPECT_TRUE(gst_structure_get_double(s, field, &v)) << field;
  return v;
}

bool get_bool(const GstStructure *s, const char *field) {
  gboolean v = FALSE;
  EXPECT_TRUE(gst_structure_get_boolean(s, field, &v)) << field;
  return v != FALSE;
}

class ProgressTest : public ::testing::Test {
protected:
  void SetUp() override {
    original_src_query = nullptr;
    upstream_answers = false;
    upstream_duration_queries = 0;

    h_ = gst_harness_new("sluiceprogress");
    ASSERT_NE(h_, nullptr);
    ASSERT_NE(h_->element, nullptr);
    bus_ = gst_bus_new();
    gst_element_set_bus(h_->element, bus_);
    // Sends stream-start, caps and a TIME segment starting at 0.
    gst_harness_set_src_caps_str(h_, "application/x-sluice-test");
  }

  void TearDown() override {
    if (h_ != nullptr)
      gst_harness_teardown(h_);
    if (bus_ != nullptr) {
      gst_bus_set_flushing(bus_, TRUE);
      gst_object_unref(bus_);
    }
  }

  // Answers duration queries arriving at the harness source pad (upstream of the element).
  void install_upstream_duration(bool answers) {
    upstream_answers = answers;
    original_src_query = GST_PAD_QUERYFUNC(h_->srcpad);
    gst_pad_set_query_function(h_->srcpad, duration_answering_query);
  }

  static GstBuffer *make_buffer(GstClockTime pts) {
    static const guint8 payload[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    GstBuffer *buf = gst_buffer_new_memdup(payload, sizeof payload);
    GST_BUFFER_PTS(buf) = pts;
    GST_BUFFER_DURATION(buf) = GST_SECOND;
    return buf;
  }

  // Pushes one buffer and checks it comes out untouched (same object).
  void push(GstClockTime pts) {
    GstBuffer *in = make_buffer(pts);
    ASSERT_EQ(gst_harness_push(h_, in), GST_FLOW_OK);
    GstBuffer *out = gst_harness_pull(h_);
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out, in);
    gst_buffer_unref(out);
  }

  void push_eos() { ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_eos())); }

  // Pops every progress message posted so far.
  std::vector<Structure> reports() {
    std::vector<Structure> out;
    while (GstMessage *msg = gst_bus_pop_filtered(bus_, GST_MESSAGE_ELEMENT)) {
      const GstStructure *s = gst_message_get_structure(msg);
      EXPECT_EQ(GST_MESSAGE_SRC(msg), GST_OBJECT(h_->element));
      if (s != nullptr && gst_structure_has_name(s, kMessageName))
        out.emplace_back(gst_structure_copy(s));
      gst_message_unref(msg);
    }
    return out;
  }

  GstHarness *h_ = nullptr;
  GstBus *bus_ = nullptr;
};

void expect_shape(const GstStructure *s) {
  EXPECT_TRUE(gst_structure_has_name(s, kMessageName));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "position", G_TYPE_UINT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "duration", G_TYPE_INT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "percent", G_TYPE_INT));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "percent-double", G_TYPE_DOUBLE));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "current", G_TYPE_INT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "total", G_TYPE_INT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "frames", G_TYPE_UINT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "fps", G_TYPE_DOUBLE));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "speed", G_TYPE_DOUBLE));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "eta", G_TYPE_INT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "elapsed", G_TYPE_UINT64));
  EXPECT_TRUE(gst_structure_has_field_typed(s, "final", G_TYPE_BOOLEAN));
}

TEST_F(ProgressTest, ElementMetadataAndDefaults) {
  GstElementFactory *factory = gst_element_get_factory(h_->element);
  ASSERT_NE(factory, nullptr);
  EXPECT_STREQ(gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_LONGNAME),
               "Sluice progress reporter");
  EXPECT_STREQ(gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS), "Utility");

  guint interval = 0;
  guint64 duration = 0;
  gboolean silent = TRUE;
  int percent = 0;
  g_object_get(h_->element, "interval", &interval, "duration", &duration, "silent", &silent,
               "percent", &percent, nullptr);
  EXPECT_EQ(interval, 500u);
  EXPECT_EQ(duration, GST_CLOCK_TIME_NONE);
  EXPECT_FALSE(silent);
  EXPECT_EQ(percent, -1);
}

TEST_F(ProgressTest, PassthroughKeepsBuffersAndCaps) {
  GstPad *sinkpad = gst_element_get_static_pad(h_->element, "sink");
  GstPad *srcpad = gst_element_get_static_pad(h_->element, "src");
  GstCaps *templ = gst_pad_get_pad_template_caps(sinkpad);
  EXPECT_TRUE(gst_caps_is_any(templ));
  gst_caps_unref(templ);
  templ = gst_pad_get_pad_template_caps(srcpad);
  EXPECT_TRUE(gst_caps_is_any(templ));
  gst_caps_unref(templ);

  for (int i = 0; i < 5; ++i) {
    GstBuffer *in = make_buffer(i * GST_SECOND);
    ASSERT_EQ(gst_harness_push(h_, in), GST_FLOW_OK);
    GstBuffer *out = gst_harness_pull(h_);
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out, in);  // zero copy: the very same buffer
    EXPECT_EQ(GST_MINI_OBJECT_REFCOUNT_VALUE(out), 1);
    EXPECT_EQ(GST_BUFFER_PTS(out), static_cast<GstClockTime>(i * GST_SECOND));
    EXPECT_EQ(GST_BUFFER_DURATION(out), GST_SECOND);
    const guint8 expected[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    EXPECT_EQ(gst_buffer_memcmp(out, 0, expected, sizeof expected), 0);
    gst_buffer_unref(out);
  }

  // Caps go through untouched, both ways.
  GstCaps *caps = gst_pad_get_current_caps(srcpad);
  ASSERT_NE(caps, nullptr);
  GstCaps *want = gst_caps_from_string("application/x-sluice-test");
  EXPECT_TRUE(gst_caps_is_equal(caps, want));
  gst_caps_unref(want);
  gst_caps_unref(caps);

  gst_object_unref(sinkpad);
  gst_object_unref(srcpad);
}

TEST_F(ProgressTest, ReportsPositionDurationAndPercent) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);

  for (int i = 0; i <= 5; ++i)
    push(i * GST_SECOND);
  // A late buffer with a lower timestamp must not move anything backwards.
  push(3 * GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 7u);
  int last_percent = -1;
  double last_percent_double = -1.0;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const GstStructure *s = msgs[i].get();
    expect_shape(s);
    const guint64 expected_pos = (i <= 5 ? i : 5) * GST_SECOND;
    EXPECT_EQ(get_u64(s, "position"), expected_pos) << i;
    EXPECT_EQ(get_i64(s, "duration"), static_cast<gint64>(10 * GST_SECOND));
    EXPECT_EQ(get_int(s, "percent"), static_cast<int>(expected_pos * 100 / (10 * GST_SECOND)));
    EXPECT_DOUBLE_EQ(get_double(s, "percent-double"), expected_pos * 100.0 / (10.0 * GST_SECOND));
    EXPECT_EQ(get_i64(s, "current"), static_cast<gint64>(expected_pos / GST_SECOND));
    EXPECT_EQ(get_i64(s, "total"), 10);
    EXPECT_EQ(get_u64(s, "frames"), i + 1);
    EXPECT_FALSE(get_bool(s, "final"));

    const int percent = get_int(s, "percent");
    const double percent_double = get_double(s, "percent-double");
    EXPECT_GE(percent, last_percent);
    EXPECT_GE(percent_double, last_percent_double);
    last_percent = percent;
    last_percent_double = percent_double;
  }
  EXPECT_EQ(get_int(msgs[5].get(), "percent"), 50);
  EXPECT_EQ(get_int(msgs[6].get(), "percent"), 50);

  int percent = 0;
  g_object_get(h_->element, "percent", &percent, nullptr);
  EXPECT_EQ(percent, 50);
}

TEST_F(ProgressTest, PercentStaysBelowHundredUntilEos) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(10 * GST_SECOND);
  push(12 * GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 2u);
  for (const auto &s : msgs) {
    EXPECT_EQ(get_int(s.get(), "percent"), 99);
    EXPECT_LE(get_double(s.get(), "percent-double"), 100.0);
    EXPECT_EQ(get_i64(s.get(), "eta"), 0);
    EXPECT_FALSE(get_bool(s.get(), "final"));
  }
}

TEST_F(ProgressTest, PositionIsStreamTime) {
  g_object_set(h_->element, "interval", 0u, nullptr);

  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  segment.start = 10 * GST_SECOND;
  segment.time = 100 * GST_SECOND;
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_segment(&segment)));

  push(12 * GST_SECOND);
  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(get_u64(msgs[0].get(), "position"), 102 * GST_SECOND);
  EXPECT_EQ(get_i64(msgs[0].get(), "current"), 102);
}

TEST_F(ProgressTest, IntervalLimitsMessageRate) {
  g_object_set(h_->element, "interval", 100000u, nullptr);  // 100 s
  for (int i = 0; i < 50; ++i)
    push(i * GST_SECOND / 25);
  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);  // only the first buffer reports
  EXPECT_EQ(get_u64(msgs[0].get(), "frames"), 1u);

  push_eos();  // the final message is not rate limited
  msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(get_bool(msgs[0].get(), "final"));
  EXPECT_EQ(get_u64(msgs[0].get(), "frames"), 50u);
}

TEST_F(ProgressTest, IntervalAllowsMessagesAfterWallTimePasses) {
  g_object_set(h_->element, "interval", 50u, nullptr);
  int pushes = 0;
  push(0);
  ++pushes;
  for (int round = 1; round <= 2; ++round) {
    g_usleep(120 * 1000);  // longer than the interval
    for (int i = 0; i < 5; ++i) {
      push((round * 5 + i) * GST_SECOND / 25);
      ++pushes;
    }
  }
  auto msgs = reports();
  EXPECT_GE(msgs.size(), 3u);  // the first buffer, then one after each sleep
  EXPECT_LE(msgs.size(), static_cast<size_t>(pushes));
  guint64 last_frames = 0;
  for (const auto &s : msgs) {
    const guint64 frames = get_u64(s.get(), "frames");
    EXPECT_GT(frames, last_frames);
    last_frames = frames;
  }
}

TEST_F(ProgressTest, EosPostsFinalMessage) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(0);
  push(GST_SECOND);
  push(2 * GST_SECOND);
  push_eos();

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 4u);
  for (size_t i = 0; i + 1 < msgs.size(); ++i)
    EXPECT_FALSE(get_bool(msgs[i].get(), "final"));
  const GstStructure *last = msgs.back().get();
  expect_shape(last);
  EXPECT_TRUE(get_bool(last, "final"));
  EXPECT_EQ(get_int(last, "percent"), 100);
  EXPECT_DOUBLE_EQ(get_double(last, "percent-double"), 100.0);
  EXPECT_EQ(get_i64(last, "eta"), 0);
  EXPECT_EQ(get_u64(last, "position"), 10 * GST_SECOND);
  EXPECT_EQ(get_i64(last, "duration"), static_cast<gint64>(10 * GST_SECOND));
  EXPECT_EQ(get_u64(last, "frames"), 3u);

  // EOS itself still goes downstream.
  EXPECT_GE(gst_harness_events_received(h_), 1u);
  bool saw_eos = false;
  while (GstEvent *ev = gst_harness_try_pull_event(h_)) {
    saw_eos = saw_eos || GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
  }
  EXPECT_TRUE(saw_eos);

  int percent = 0;
  g_object_get(h_->element, "percent", &percent, nullptr);
  EXPECT_EQ(percent, 100);
}

TEST_F(ProgressTest, UnknownDuration) {
  g_object_set(h_->element, "interval", 0u, nullptr);
  push(0);
  g_usleep(20 * 1000);
  push(GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 2u);
  for (const auto &m : msgs) {
    const GstStructure *s = m.get();
    expect_shape(s);
    EXPECT_EQ(get_i64(s, "duration"), -1);
    EXPECT_EQ(get_i64(s, "total"), -1);
    EXPECT_EQ(get_int(s, "percent"), -1);
    EXPECT_DOUBLE_EQ(get_double(s, "percent-double"), -1.0);
    EXPECT_EQ(get_i64(s, "eta"), -1);
  }
  EXPECT_EQ(get_u64(msgs[1].get(), "position"), GST_SECOND);
  EXPECT_GT(get_double(msgs[1].get(), "speed"), 0.0);

  push_eos();
  msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);
  const GstStructure *last = msgs[0].get();
  EXPECT_TRUE(get_bool(last, "final"));
  EXPECT_EQ(get_int(last, "percent"), 100);
  EXPECT_EQ(get_i64(last, "eta"), 0);
  EXPECT_EQ(get_i64(last, "duration"), -1);
  EXPECT_EQ(get_u64(last, "position"), GST_SECOND);
}

TEST_F(ProgressTest, UsesUpstreamDuration) {
  install_upstream_duration(true);
  g_object_set(h_->element, "interval", 0u, nullptr);
  push(0);
  push(5 * GST_SECOND);
  push(10 * GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 3u);
  for (const auto &s : msgs) {
    EXPECT_EQ(get_i64(s.get(), "duration"), kUpstreamDuration);
    EXPECT_EQ(get_i64(s.get(), "total"), 20);
  }
  EXPECT_EQ(get_int(msgs[1].get(), "percent"), 25);
  EXPECT_EQ(get_int(msgs[2].get(), "percent"), 50);
  // A valid answer is cached.
  EXPECT_EQ(upstream_duration_queries, 1);
}

TEST_F(ProgressTest, UpstreamDurationWinsOverProperty) {
  install_upstream_duration(true);
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(5 * GST_SECOND),
               nullptr);
  push(GST_SECOND);
  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(get_i64(msgs[0].get(), "duration"), kUpstreamDuration);
  EXPECT_EQ(get_int(msgs[0].get(), "percent"), 5);
}

TEST_F(ProgressTest, RetriesUpstreamQueryUntilItSucceeds) {
  install_upstream_duration(false);
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(0);
  push(4 * GST_SECOND);
  upstream_answers = true;
  push(5 * GST_SECOND);
  push(10 * GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 4u);
  // The property stands in while upstream cannot answer.
  EXPECT_EQ(get_i64(msgs[0].get(), "duration"), static_cast<gint64>(10 * GST_SECOND));
  EXPECT_EQ(get_i64(msgs[1].get(), "duration"), static_cast<gint64>(10 * GST_SECOND));
  EXPECT_EQ(get_int(msgs[1].get(), "percent"), 40);
  EXPECT_EQ(get_i64(msgs[2].get(), "duration"), kUpstreamDuration);
  EXPECT_EQ(get_i64(msgs[3].get(), "duration"), kUpstreamDuration);
  // Percent never goes backwards although the total grew: 5 s of 20 s is only 25%.
  EXPECT_EQ(get_int(msgs[2].get(), "percent"), 40);
  EXPECT_DOUBLE_EQ(get_double(msgs[2].get(), "percent-double"), 40.0);
  EXPECT_EQ(get_int(msgs[3].get(), "percent"), 50);
  EXPECT_EQ(upstream_duration_queries, 3);
}

TEST_F(ProgressTest, SpeedFpsAndEta) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(0);
  g_usleep(100 * 1000);
  push(GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 2u);
  // Nothing can be measured on the very first buffer.
  EXPECT_EQ(get_u64(msgs[0].get(), "elapsed"), 0u);
  EXPECT_EQ(get_i64(msgs[0].get(), "eta"), -1);

  const GstStructure *s = msgs[1].get();
  const guint64 elapsed = get_u64(s, "elapsed");
  const double fps = get_double(s, "fps");
  const double speed = get_double(s, "speed");
  const gint64 eta = get_i64(s, "eta");
  EXPECT_GE(elapsed, 100 * GST_MSECOND);
  EXPECT_LT(elapsed, 10 * GST_SECOND);
  EXPECT_GT(fps, 0.0);
  EXPECT_NEAR(fps, 2.0 * GST_SECOND / elapsed, 1e-6 * fps);
  // 1 s of media in ~0.1 s of wall time: about 10x realtime, never more.
  EXPECT_GT(speed, 0.0);
  EXPECT_LE(speed, 10.0);
  EXPECT_NEAR(speed, static_cast<double>(GST_SECOND) / elapsed, 1e-6 * speed);
  ASSERT_GT(eta, 0);
  EXPECT_NEAR(static_cast<double>(eta), 9.0 * GST_SECOND / speed, 2.0);
}

TEST_F(ProgressTest, SilentPostsNothing) {
  g_object_set(h_->element, "interval", 0u, "silent", TRUE, "duration",
               static_cast<guint64>(10 * GST_SECOND), nullptr);
  for (int i = 0; i < 5; ++i)
    push(i * GST_SECOND);
  push_eos();
  EXPECT_TRUE(reports().empty());

  // The percent property keeps working.
  int percent = 0;
  g_object_get(h_->element, "percent", &percent, nullptr);
  EXPECT_EQ(percent, 100);
}

TEST_F(ProgressTest, FlushKeepsProgressMonotonic) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(0);
  push(5 * GST_SECOND);
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_segment(&segment)));
  push(GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(get_u64(msgs[2].get(), "position"), 5 * GST_SECOND);
  EXPECT_EQ(get_int(msgs[2].get(), "percent"), 50);
  EXPECT_EQ(get_u64(msgs[2].get(), "frames"), 3u);
}

TEST_F(ProgressTest, RestartResetsCounters) {
  g_object_set(h_->element, "interval", 0u, "duration", static_cast<guint64>(10 * GST_SECOND),
               nullptr);
  push(0);
  push(5 * GST_SECOND);
  reports();

  ASSERT_EQ(gst_element_set_state(h_->element, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  ASSERT_EQ(gst_element_set_state(h_->element, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
  // The element dropped its sticky events while inactive: send them again.
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_stream_start("restart")));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h_, gst_event_new_segment(&segment)));
  push(GST_SECOND);

  auto msgs = reports();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(get_u64(msgs[0].get(), "frames"), 1u);
  EXPECT_EQ(get_u64(msgs[0].get(), "position"), GST_SECOND);
  EXPECT_EQ(get_int(msgs[0].get(), "percent"), 10);
  EXPECT_EQ(get_u64(msgs[0].get(), "elapsed"), 0u);
}

}  // namespace
