// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of claims by weight, on both backends: a claim takes the first due job that fits the worker's free
// capacity, a job heavier than the capacity runs alone, and room is held for a job that has waited too long.

#include "store/store.h"

#include <gtest/gtest.h>

#include "check.h"
#include "media.h"

#include "store_backends.h"

#include <string>
#include <vector>

namespace {

using sluice::test::TempDir;
using namespace sluice::store;

constexpr std::int64_t kLease = 30'000'000;

Job weighed_job(const std::string &video_id, std::int64_t created, int weight, const std::string &pipeline,
                const std::string &encoder = "auto") {
  Job j;
  j.id = new_id();
  j.video_id = video_id;
  j.pipeline = pipeline;
  j.encoder = encoder;
  j.created = created;
  j.weight = weight;
  return j;
}

// A worker's room: `cores` is what weight 0 ("cores") weighs there.
Room room(int free, int capacity, std::int64_t hold_due_before = 0, int cores = 4) {
  Room r;
  r.free = free;
  r.capacity = capacity;
  r.hold_due_before = hold_due_before;
  r.cores = cores;
  return r;
}

class WeightTest : public sluice::test::BackendTest {
protected:
  void SetUp() override {
    if (!open_backend())
      return;
    video.id = new_id();
    video.created = 1;
    store->add_video(video);
  }
  Job add(std::int64_t created, int weight, const std::string &pipeline, const std::string &encoder = "auto") {
    Job j = weighed_job(video.id, created, weight, pipeline, encoder);
    store->add_job(j);
    return j;
  }
  std::string claim(const Room &r, std::int64_t now = 1000, const std::vector<std::string> &encoders = {}) {
    auto c = store->claim_job("w1", now, kLease, encoders, r);
    return c ? c->id : "";
  }

  Video video;
};

TEST_P(WeightTest, TheWeightIsKeptWithTheJob) {
  Job ladder = add(1, 0, "hls"), poster = add(2, 1, "poster"), heavy = add(3, 3, "cmaf");
  EXPECT_EQ(store->job(ladder.id)->weight, 0);
  EXPECT_EQ(store->job(poster.id)->weight, 1);
  EXPECT_EQ(store->job(heavy.id)->weight, 3);
  auto c = store->claim_job("w1", 1000, kLease, {}, room(4, 4));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->weight, 0) << "a claim answers the weight with the row";
}

TEST_P(WeightTest, AClaimTakesTheFirstJobThatFits) {
  // Queue order: the ladder (3 of a capacity of 4), two posters, a preview of 2.
  Job ladder = add(1, 3, "hls"), poster1 = add(2, 1, "poster"), poster2 = add(3, 1, "poster"),
      preview = add(4, 2, "preview");
  // Two cores free: the ladder does not fit, the posters that follow it do, one after the other.
  EXPECT_EQ(claim(room(2, 4)), poster1.id);
  EXPECT_EQ(claim(room(1, 4)), poster2.id);
  // One core free: the preview (2) does not fit either; nothing is claimed.
  EXPECT_EQ(claim(room(1, 4)), "");
  EXPECT_EQ(claim(room(0, 4)), "");
  EXPECT_EQ(store->job(ladder.id)->state, JobState::Queued);
  EXPECT_EQ(store->job(preview.id)->state, JobState::Queued);
  // Room for the ladder: it comes first again.
  EXPECT_EQ(claim(room(3, 4)), ladder.id);
  EXPECT_EQ(claim(room(2, 4)), preview.id);
  EXPECT_EQ(store->count_jobs(JobState::Queued), 0);
}

TEST_P(WeightTest, AJobHeavierThanTheCapacityRunsAlone) {
  // "cores" (0) on 4 cores and 8 on a capacity of 4 both take it all: claimed only when nothing else runs there.
  Job all = add(1, 0, "hls"), huge = add(2, 8, "cmaf"), poster = add(3, 1, "poster");
  EXPECT_EQ(claim(room(3, 4)), poster.id) << "with one core taken, neither heavy job fits";
  EXPECT_EQ(claim(room(3, 4)), "");
  EXPECT_EQ(claim(room(4, 4)), all.id);
  EXPECT_EQ(claim(room(4, 4)), huge.id);
  // A worker with 8 cores gives "cores" all 8 of its own.
  Job more = add(4, 0, "hls");
  EXPECT_EQ(claim(room(7, 8, 0, 8)), "");
  EXPECT_EQ(claim(room(8, 8, 0, 8)), more.id);
}

TEST_P(WeightTest, ACapacityAboveTheCoresRunsLaddersSideBySide) {
  // 2 cores with a capacity of 4 (an operator who oversubscribes on purpose): "cores" weighs 2, two ladders fit.
  Job first = add(1, 0, "hls"), second = add(2, 0, "hls"), third = add(3, 0, "hls");
  EXPECT_EQ(claim(room(4, 4, 0, 2)), first.id);
  EXPECT_EQ(claim(room(2, 4, 0, 2)), second.id);
  EXPECT_EQ(claim(room(1, 4, 0, 2)), "");
  EXPECT_EQ(store->job(third.id)->state, JobState::Queued);
}

TEST_P(WeightTest, RoomIsHeldForAHeadThatWaitedTooLong) {
  // The ladder heads the queue since 100; the posters behind it fit in the free room.
  Job ladder = add(100, 4, "hls"), poster1 = add(200, 1, "poster"), poster2 = add(300, 1, "poster");
  // It has not waited past the point (due since 100, the point at 50): a poster passes it.
  EXPECT_EQ(claim(room(2, 4, 50)), poster1.id);
  // Now it has (the point at 150): its room is held, no lighter job starts though one fits.
  EXPECT_EQ(claim(room(2, 4, 150)), "");
  Job done = *store->job(poster1.id);
  done.state = JobState::Succeeded;
  done.finished = 1000;
  auto held = store->finish_and_claim(done, "w1", 1000, kLease, {}, room(3, 4, 150));
  EXPECT_TRUE(held.ended);
  EXPECT_FALSE(held.claimed.has_value()) << "an end's claim holds the room as well";
  // Once the room is there, the ladder runs; then the poster.
  EXPECT_EQ(claim(room(4, 4, 150)), ladder.id);
  EXPECT_EQ(claim(room(0, 4, 150)), "");
  EXPECT_EQ(store->job(poster2.id)->state, JobState::Queued);
}

TEST_P(WeightTest, AHeldHeadCountsFromWhenItWasDue) {
  // A retry due at 5000 heads the queue (priority) from then on, not from its creation.
  Job retry = weighed_job(video.id, 10, 4, "hls");
  retry.priority = 5;
  retry.not_before = 5000;
  store->add_job(retry);
  Job poster = add(20, 1, "poster");
  EXPECT_EQ(claim(room(2, 4, 4000), 6000), poster.id) << "due since 5000: not past the point (4000) yet";
  Job poster2 = add(30, 1, "poster");
  EXPECT_EQ(claim(room(2, 4, 5500), 6000), "") << "due since 5000: past the point (5500)";
  EXPECT_EQ(store->job(poster2.id)->state, JobState::Queued);
}

TEST_P(WeightTest, AHeadThisWorkerCannotRunHoldsNothing) {
  // The oldest job needs an encoder this worker lacks: it is not this worker's head, so nothing is held for it here.
  Job gpu = add(1, 4, "hls", "nvenc"), poster = add(2, 1, "poster");
  EXPECT_EQ(claim(room(2, 4, 1000), 5000, {"x264"}), poster.id);
  EXPECT_EQ(store->job(gpu.id)->state, JobState::Queued);
}

TEST_P(WeightTest, AnEndFreesItsRoomForTheNextClaim) {
  Job poster = add(1, 1, "poster"), ladder = add(2, 4, "hls");
  Job first = *store->claim_job("w1", 1000, kLease, {}, room(4, 4));
  ASSERT_EQ(first.id, poster.id);
  first.state = JobState::Succeeded;
  first.finished = 2000;
  // The scheduler gives the end's claim the room the ended job held back: all 4.
  auto got = store->finish_and_claim(first, "w1", 2000, kLease, {}, room(4, 4));
  EXPECT_TRUE(got.ended);
  ASSERT_TRUE(got.claimed.has_value());
  EXPECT_EQ(got.claimed->id, ladder.id);
  EXPECT_EQ(got.claimed->weight, 4);
}

TEST_P(WeightTest, WorkersKeepTheirCapacityAndUsedWeight) {
  Worker w;
  w.name = "w1";
  w.role = "worker";
  w.started = 1;
  w.heartbeat = 2;
  w.concurrent = 3;
  w.capacity = 16;
  w.used = 5;
  store->beat_worker(w, 0);
  auto rows = store->workers();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].concurrent, 3);
  EXPECT_EQ(rows[0].capacity, 16);
  EXPECT_EQ(rows[0].used, 5);
  w.used = 0;
  w.heartbeat = 3;
  store->beat_worker(w, 0);
  EXPECT_EQ(store->workers()[0].used, 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, WeightTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto &p) { return p.param; });

} // namespace
