// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the job queue across processes, on both backends: atomic claims, leases, fencing tokens, expiry,
// encoders, workers; and claims from two connections at once that never take one job twice.

#include "core/error.h"
#include "store/store.h"

#include <glib.h>
#include <gtest/gtest.h>

#include "check.h"
#include "media.h"

#include "store_backends.h"

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using sluice::test::contains;
using sluice::test::TempDir;
using namespace sluice::store;

constexpr std::int64_t kLease = 30'000'000;

Video queue_video() {
  Video v;
  v.id = new_id();
  v.title = "v";
  v.created = 1;
  return v;
}

Job queue_job(const std::string &video_id, std::int64_t created, int priority = 0,
              const std::string &encoder = "auto") {
  Job j;
  j.id = new_id();
  j.video_id = video_id;
  j.pipeline = "hls";
  j.encoder = encoder;
  j.created = created;
  j.priority = priority;
  return j;
}

class QueueTest : public sluice::test::BackendTest {
protected:
  void SetUp() override {
    if (open_backend())
      store->add_video(video);
  }
  void claim_concurrently(bool together);

  Video video = queue_video();
};

TEST_P(QueueTest, ClaimTakesByPriorityThenFifoAndLeases) {
  EXPECT_FALSE(store->claim_job("w1", 1000, kLease, {}).has_value());
  Job low1 = queue_job(video.id, 10, 0), high1 = queue_job(video.id, 20, 5), low2 = queue_job(video.id, 30, 0);
  Job high2 = queue_job(video.id, 20, 5); // same created as high1: the earlier insert wins
  Job later = queue_job(video.id, 1, 9);
  later.not_before = 5000; // the highest priority, not due yet
  Job done = queue_job(video.id, 1, 9);
  done.state = JobState::Succeeded;
  for (const Job &j : {low1, high1, low2, high2, later, done})
    store->add_job(j);

  std::vector<std::string> order;
  std::int64_t last_token = 0;
  while (auto c = store->claim_job("w1", 1000, kLease, {})) {
    EXPECT_EQ(c->state, JobState::Running);
    EXPECT_EQ(c->attempts, 1);
    EXPECT_EQ(c->worker, "w1");
    EXPECT_EQ(c->started, 1000);
    EXPECT_EQ(c->leased_until, 1000 + kLease);
    // Tokens are unique across jobs (a package's version prefix is its claim's token) and grow.
    EXPECT_GT(c->token, last_token);
    last_token = c->token;
    order.push_back(c->id);
    // What the catalog holds is what the claim answered.
    Job stored = *store->job(c->id);
    EXPECT_EQ(stored.state, JobState::Running);
    EXPECT_EQ(stored.worker, "w1");
    EXPECT_EQ(stored.token, c->token);
    EXPECT_EQ(stored.attempts, 1);
  }
  EXPECT_EQ(order, (std::vector<std::string>{high1.id, high2.id, low1.id, low2.id}));
  auto due = store->claim_job("w2", 5000, kLease, {});
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(due->id, later.id);
  EXPECT_EQ(due->worker, "w2");
  EXPECT_EQ(store->count_jobs(JobState::Running), 5);
  EXPECT_EQ(store->job(done.id)->state, JobState::Succeeded);
}

TEST_P(QueueTest, AJobThatNamesAnEncoderGoesToAWorkerThatHasIt) {
  Job nvenc = queue_job(video.id, 1, 5, "nvenc");
  Job any = queue_job(video.id, 2, 0);
  store->add_job(nvenc);
  store->add_job(any);
  // The nvenc job comes first by priority, but this worker cannot run it: it takes the next one.
  auto c = store->claim_job("cpu", 100, kLease, {"x264", "openh264"});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->id, any.id);
  EXPECT_FALSE(store->claim_job("cpu", 100, kLease, {"x264", "nvencx"}).has_value()) << "names match whole";
  EXPECT_FALSE(store->claim_job("none", 100, kLease, {}).has_value());
  c = store->claim_job("gpu", 100, kLease, {"x264", "nvenc"});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->id, nvenc.id);
  EXPECT_EQ(c->worker, "gpu");
}

TEST_P(QueueTest, ALostLeaseChangesNothing) {
  Job j = queue_job(video.id, 1);
  j.max_attempts = 3;
  store->add_job(j);
  Job first = *store->claim_job("w1", 1000, kLease, {});
  EXPECT_TRUE(store->renew_lease(j.id, first.token, 2000 + kLease));
  EXPECT_EQ(store->job(j.id)->leased_until, 2000 + kLease);
  // Not expired yet: nothing is taken back.
  EXPECT_TRUE(store->requeue_expired(2000 + kLease - 1).empty());

  // w1 goes silent; its lease runs out and the job is queued again (its attempt counted).
  auto taken = store->requeue_expired(2000 + kLease + 1);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, j.id);
  EXPECT_EQ(taken[0].state, JobState::Queued);
  EXPECT_EQ(taken[0].attempts, 1);
  EXPECT_TRUE(store->requeue_expired(2000 + kLease + 2).empty()) << "taken back once";
  // w1's token no longer holds it: no renewal, no end written.
  EXPECT_FALSE(store->renew_lease(j.id, first.token, 5000 + kLease));
  Job late = first;
  late.state = JobState::Succeeded;
  late.finished = 6000;
  late.result_json = R"({"from":"w1"})";
  EXPECT_FALSE(store->finish_job(late));
  EXPECT_EQ(store->job(j.id)->state, JobState::Queued);

  // w2 claims it again: a fresh token, attempt 2.
  auto w2 = another();
  Job second = *w2->claim_job("w2", 7000, kLease, {});
  EXPECT_EQ(second.id, j.id);
  EXPECT_GT(second.token, first.token);
  EXPECT_EQ(second.attempts, 2);
  EXPECT_EQ(second.worker, "w2");
  // w1 wakes up: its old token still changes nothing, though the job is running again.
  EXPECT_FALSE(store->renew_lease(j.id, first.token, 8000 + kLease));
  EXPECT_FALSE(store->finish_job(late));
  EXPECT_EQ(store->job(j.id)->leased_until, 7000 + kLease);
  // w2's end lands, and the lease ends with it.
  second.state = JobState::Succeeded;
  second.finished = 9000;
  second.result_json = R"({"from":"w2"})";
  EXPECT_TRUE(w2->finish_job(second));
  Job got = *store->job(j.id);
  EXPECT_EQ(got.state, JobState::Succeeded);
  EXPECT_EQ(got.result_json, R"({"from":"w2"})");
  EXPECT_EQ(got.worker, "w2");
  EXPECT_EQ(got.leased_until, 0);
  EXPECT_EQ(got.attempts, 2);
  EXPECT_FALSE(w2->finish_job(second)) << "a job's end is written once";
  EXPECT_FALSE(w2->renew_lease(j.id, second.token, 10000 + kLease));
}

TEST_P(QueueTest, AnEndAndTheNextClaimGoTogether) {
  Job a = queue_job(video.id, 1), b = queue_job(video.id, 2), r = queue_job(video.id, 3);
  r.max_attempts = 3;
  store->add_job(a);
  store->add_job(b);
  store->add_job(r);
  Job first = *store->claim_job("w1", 1000, kLease, {});
  ASSERT_EQ(first.id, a.id);
  first.state = JobState::Succeeded;
  first.finished = 2000;
  first.result_json = R"({"n":1})";
  auto got = store->finish_and_claim(first, "w1", 2000, kLease, {});
  EXPECT_TRUE(got.ended);
  ASSERT_TRUE(got.claimed.has_value());
  EXPECT_EQ(got.claimed->id, b.id);
  EXPECT_EQ(got.claimed->state, JobState::Running);
  EXPECT_EQ(got.claimed->attempts, 1);
  EXPECT_EQ(got.claimed->worker, "w1");
  EXPECT_EQ(got.claimed->started, 2000);
  EXPECT_EQ(got.claimed->leased_until, 2000 + kLease);
  EXPECT_GT(got.claimed->token, first.token);
  Job ended = *another()->job(a.id);
  EXPECT_EQ(ended.state, JobState::Succeeded);
  EXPECT_EQ(ended.result_json, R"({"n":1})");
  EXPECT_EQ(ended.leased_until, 0);
  EXPECT_EQ(another()->job(b.id)->token, got.claimed->token);

  // b fails and is queued for a retry due at once: the call that ends it does not take it again, it claims r.
  Job second = *got.claimed;
  second.state = JobState::Queued;
  second.started = 0;
  second.not_before = 3000;
  second.error_code = "pipeline";
  got = store->finish_and_claim(second, "w1", 3000, kLease, {});
  EXPECT_TRUE(got.ended);
  ASSERT_TRUE(got.claimed.has_value());
  EXPECT_EQ(got.claimed->id, r.id);
  EXPECT_EQ(store->job(b.id)->state, JobState::Queued);
  EXPECT_EQ(store->job(b.id)->error_code, "pipeline");
  // r ends; b, due, is the next claim (its second attempt).
  Job third = *got.claimed;
  third.state = JobState::Succeeded;
  third.finished = 4000;
  got = store->finish_and_claim(third, "w1", 4000, kLease, {});
  EXPECT_TRUE(got.ended);
  ASSERT_TRUE(got.claimed.has_value());
  EXPECT_EQ(got.claimed->id, b.id);
  EXPECT_EQ(got.claimed->attempts, 2);
  // The queue is empty: the end is written, nothing is claimed.
  Job last = *got.claimed;
  last.state = JobState::Succeeded;
  last.finished = 5000;
  got = store->finish_and_claim(last, "w1", 5000, kLease, {});
  EXPECT_TRUE(got.ended);
  EXPECT_FALSE(got.claimed.has_value());
  EXPECT_EQ(store->job(b.id)->state, JobState::Succeeded);
  EXPECT_EQ(store->count_jobs(JobState::Running), 0);
}

TEST_P(QueueTest, AnEndFencedOutChangesNothingAndTheClaimStillHappens) {
  Job a = queue_job(video.id, 1), b = queue_job(video.id, 2, 0, "nvenc");
  store->add_job(a);
  store->add_job(b);
  Job first = *store->claim_job("w1", 1000, kLease, {});
  ASSERT_EQ(first.id, a.id);
  // w1 goes silent; its job is taken back and claimed by w2.
  ASSERT_EQ(store->requeue_expired(1000 + kLease + 1).size(), 1u);
  auto w2 = another();
  Job second = *w2->claim_job("w2", 2000 + kLease, kLease, {});
  ASSERT_EQ(second.id, a.id);
  // w1 wakes up and writes its end with its old token: refused, and it claims b (it runs nvenc).
  first.state = JobState::Succeeded;
  first.finished = 3000 + kLease;
  first.result_json = R"({"from":"w1"})";
  auto got = store->finish_and_claim(first, "w1", 3000 + kLease, kLease, {"nvenc"});
  EXPECT_FALSE(got.ended);
  ASSERT_TRUE(got.claimed.has_value());
  EXPECT_EQ(got.claimed->id, b.id);
  EXPECT_GT(got.claimed->token, second.token);
  Job still = *store->job(a.id);
  EXPECT_EQ(still.state, JobState::Running);
  EXPECT_EQ(still.worker, "w2");
  EXPECT_EQ(still.token, second.token);
  EXPECT_EQ(still.result_json, "");
  // w2's end holds; nothing is left to claim (b is w1's).
  second.state = JobState::Succeeded;
  second.finished = 4000 + kLease;
  got = w2->finish_and_claim(second, "w2", 4000 + kLease, kLease, {});
  EXPECT_TRUE(got.ended);
  EXPECT_FALSE(got.claimed.has_value());
  EXPECT_EQ(store->job(a.id)->result_json, "");
  EXPECT_EQ(store->job(a.id)->state, JobState::Succeeded);
}

TEST_P(QueueTest, ACanceledJobStopsItsWorker) {
  Job j = queue_job(video.id, 1);
  store->add_job(j);
  Job c = *store->claim_job("w1", 1000, kLease, {});
  // Another process cancels it (as DELETE /api/v1/jobs/ID on an api process does).
  auto api = another();
  Job canceled = *api->job(j.id);
  canceled.state = JobState::Canceled;
  canceled.finished = 1500;
  api->update_job(canceled);
  EXPECT_FALSE(store->renew_lease(j.id, c.token, 2000 + kLease));
  c.state = JobState::Queued; // a retry the worker would write
  EXPECT_FALSE(store->finish_job(c));
  EXPECT_EQ(store->job(j.id)->state, JobState::Canceled);
  EXPECT_TRUE(store->requeue_expired(1000 + 2 * kLease).empty());
  EXPECT_FALSE(store->claim_job("w2", 3000, kLease, {}).has_value());
}

TEST_P(QueueTest, ExpiredLeaseWithAttemptsSpentFails) {
  Job j = queue_job(video.id, 1);
  j.max_attempts = 2;
  store->add_job(j);
  for (int attempt = 1; attempt <= 2; attempt++) {
    Job c = *store->claim_job("w" + std::to_string(attempt), attempt * 1000, kLease, {});
    EXPECT_EQ(c.attempts, attempt);
    auto taken = store->requeue_expired(attempt * 1000 + kLease + 1);
    ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(taken[0].state, attempt < 2 ? JobState::Queued : JobState::Failed);
  }
  Job got = *store->job(j.id);
  EXPECT_EQ(got.state, JobState::Failed);
  EXPECT_EQ(got.attempts, 2);
  EXPECT_EQ(got.finished, 2000 + kLease + 1);
  EXPECT_EQ(got.error_code, "internal");
  EXPECT_TRUE(contains(got.error, "interrupted 2 times")) << got.error;
  EXPECT_FALSE(store->claim_job("w3", 100000000, kLease, {}).has_value());
}

TEST_P(QueueTest, WorkersRegisterBeatAndAreForgotten) {
  EXPECT_TRUE(store->workers().empty());
  Worker a{"alpha", "worker", 100, 200, {"x264", "nvenc"}, 2};
  Worker b{"beta", "all", 150, 250, {}, 1};
  store->beat_worker(b, 0);
  store->beat_worker(a, 0);
  auto ws = another()->workers();
  ASSERT_EQ(ws.size(), 2u);
  EXPECT_EQ(ws[0].name, "alpha");
  EXPECT_EQ(ws[0].role, "worker");
  EXPECT_EQ(ws[0].started, 100);
  EXPECT_EQ(ws[0].heartbeat, 200);
  EXPECT_EQ(ws[0].encoders, (std::vector<std::string>{"x264", "nvenc"}));
  EXPECT_EQ(ws[0].concurrent, 2);
  EXPECT_EQ(ws[1].name, "beta");
  EXPECT_TRUE(ws[1].encoders.empty());
  // alpha beats again; beta, silent since 250, is forgotten.
  a.heartbeat = 900;
  store->beat_worker(a, 300);
  ws = store->workers();
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0].name, "alpha");
  EXPECT_EQ(ws[0].heartbeat, 900);
  store->remove_worker("alpha");
  EXPECT_TRUE(store->workers().empty());
}

TEST_P(QueueTest, ConcurrentClaimsNeverTakeAJobTwice) {
  claim_concurrently(false);
}

TEST_P(QueueTest, ConcurrentEndsWithClaimsNeverTakeAJobTwice) {
  claim_concurrently(true);
}

// Two connections claim and finish at once until the queue is empty: every job is claimed exactly once. Each end
// is written with finish_job and the next claim made apart, or both in one call (finish_and_claim), as a worker does.
void QueueTest::claim_concurrently(bool together) {
  const int jobs = GetParam() == "postgresql" ? 3000 : 600;
  for (int i = 0; i < jobs; i++)
    store->add_job(queue_job(video.id, i, i % 3));
  constexpr int kClaimers = 2;
  std::vector<std::vector<Job>> claimed(kClaimers);
  std::vector<std::string> errors(kClaimers);
  std::atomic<int> ready{0};
  // Every claimer's first claim is made before any goes on: one connection could otherwise empty the queue before
  // the other's first claim (SQLite's lock favours the connection that just released it), and the claims would
  // not have been concurrent at all.
  std::atomic<int> first{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClaimers; t++)
    threads.emplace_back([&, t] {
      bool counted = false;
      try {
        auto s = another();
        ready++;
        while (ready.load() < kClaimers)
          std::this_thread::yield();
        const std::string name = "w" + std::to_string(t);
        auto c = s->claim_job(name, g_get_real_time(), kLease, {});
        first++;
        counted = true;
        while (first.load() < kClaimers)
          std::this_thread::yield();
        while (c) {
          claimed[t].push_back(*c);
          c->state = JobState::Succeeded;
          c->finished = g_get_real_time();
          if (together) {
            auto next = s->finish_and_claim(*c, name, g_get_real_time(), kLease, {});
            if (!next.ended)
              throw sluice::Error("finish_and_claim refused the end of job " + c->id);
            c = std::move(next.claimed);
          } else {
            if (!s->finish_job(*c))
              throw sluice::Error("finish_job refused job " + c->id);
            c = s->claim_job(name, g_get_real_time(), kLease, {});
          }
        }
      } catch (const std::exception &e) {
        errors[t] = e.what();
        if (!counted)
          first++;
      }
    });
  for (auto &t : threads)
    t.join();
  std::map<std::string, int> times;
  std::set<std::int64_t> tokens;
  for (int t = 0; t < kClaimers; t++) {
    EXPECT_EQ(errors[t], "") << "claimer " << t;
    EXPECT_GT(claimed[t].size(), 0u) << "claimer " << t << " got no job";
    for (const Job &j : claimed[t]) {
      times[j.id]++;
      EXPECT_EQ(j.attempts, 1);
      EXPECT_TRUE(tokens.insert(j.token).second) << "token " << j.token << " given twice";
    }
  }
  EXPECT_EQ(static_cast<int>(times.size()), jobs);
  for (const auto &[id, n] : times)
    EXPECT_EQ(n, 1) << "job " << id << " claimed " << n << " times";
  EXPECT_EQ(store->count_jobs(JobState::Succeeded), jobs);
  EXPECT_EQ(store->count_jobs(JobState::Running), 0);
}

// An upload's video and its job profile go in together, or not at all.
TEST_P(QueueTest, AVideoAndItsJobsAreAddedTogether) {
  auto by_video = [](const std::string &id) {
    JobFilter f;
    f.video_id = id;
    return f;
  };
  Video v = queue_video();
  v.id = new_id();
  std::vector<Job> jobs = {queue_job(v.id, 10, 0), queue_job(v.id, 11, 0)};
  store->add_video_with_jobs(v, jobs);
  ASSERT_TRUE(store->video(v.id).has_value());
  EXPECT_GT(jobs[0].seq, 0);
  EXPECT_GT(jobs[1].seq, jobs[0].seq);
  EXPECT_EQ(store->jobs(by_video(v.id)).size(), 2u);

  // The second job refused (its id taken): the video's row goes back with it.
  Video w = queue_video();
  w.id = new_id();
  std::vector<Job> bad = {queue_job(w.id, 12, 0), queue_job(w.id, 13, 0)};
  bad[1].id = jobs[0].id;
  EXPECT_THROW(store->add_video_with_jobs(w, bad), sluice::Error);
  EXPECT_FALSE(store->video(w.id).has_value());
  EXPECT_TRUE(store->jobs(by_video(w.id)).empty());
  // The store still works after the rollback.
  Video x = queue_video();
  x.id = new_id();
  std::vector<Job> ok = {queue_job(x.id, 14, 0)};
  store->add_video_with_jobs(x, ok);
  EXPECT_TRUE(store->video(x.id).has_value());
}

SLUICE_ON_BOTH_BACKENDS(QueueTest);

} // namespace
