// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the webhooks' outbox, on both backends: fan-out to the subscribed endpoints, events written with a
// job's end (and not when it is fenced out), claims in order per endpoint with leases and fencing, retries, and two
// catalogs claiming at once without delivering anything twice.

#include "store/store.h"

#include <glib.h>
#include <gtest/gtest.h>

#include "check.h"
#include "media.h"

#include "store_backends.h"

#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using sluice::test::TempDir;
using namespace sluice::store;

constexpr std::int64_t kLease = 30'000'000;

class WebhooksTest : public sluice::test::BackendTest {
protected:
  Webhook hook(const std::vector<std::string> &events, std::int64_t created) {
    Webhook w;
    w.id = new_id();
    w.url = "https://example.com/hook";
    w.events = events;
    w.description = "test";
    w.secret = "whsec_" + w.id;
    w.created = created;
    store->add_webhook(w);
    return w;
  }
  Video video() {
    Video v;
    v.id = new_id();
    v.created = 1;
    store->add_video(v);
    return v;
  }
  // The deliveries claimed at `now`, in claim order.
  std::vector<ClaimedDelivery> claim(std::int64_t now, int limit = 10) {
    return store->claim_deliveries(now, kLease, limit);
  }
  void outcome(Delivery d, const std::string &state, std::int64_t now, std::int64_t next = 0, int status = 200) {
    d.state = state;
    d.last_status = status;
    d.last_attempt = now;
    d.next_attempt = next;
    d.body = "{\"id\":\"" + d.event_id + "\"}";
    ASSERT_TRUE(store->finish_delivery(d));
  }
};

TEST_P(WebhooksTest, EndpointsAreKeptAndDeletedWithTheirDeliveries) {
  Webhook a = hook({"video.ready", "job.failed"}, 10);
  Webhook b = hook({"job.failed"}, 20);
  auto got = store->webhook(a.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->url, a.url);
  EXPECT_EQ(got->events, a.events);
  EXPECT_EQ(got->secret, a.secret);
  EXPECT_TRUE(got->previous_secret.empty());
  auto all = store->webhooks();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, a.id);
  EXPECT_EQ(all[1].id, b.id);
  // A rotation keeps the secret it replaces, until the grace ends.
  ASSERT_TRUE(store->rotate_webhook_secret(a.id, "whsec_new", 5000));
  got = store->webhook(a.id);
  EXPECT_EQ(got->secret, "whsec_new");
  EXPECT_EQ(got->previous_secret, a.secret);
  EXPECT_EQ(got->previous_until, 5000);
  EXPECT_FALSE(store->rotate_webhook_secret(new_id(), "whsec_x", 1));

  EXPECT_EQ(store->add_events({{"job.failed", "j1"}}, 100), 2);
  EXPECT_TRUE(store->delete_webhook(a.id));
  EXPECT_FALSE(store->delete_webhook(a.id));
  EXPECT_FALSE(store->webhook(a.id));
  EXPECT_TRUE(store->deliveries(a.id).empty());
  EXPECT_EQ(store->deliveries(b.id).size(), 1u);
}

TEST_P(WebhooksTest, OnlySubscribedEndpointsGetADelivery) {
  Webhook a = hook({"job.succeeded", "video.ready"}, 10);
  Webhook b = hook({"job.failed"}, 20);
  Webhook c = hook({"stream.live", "stream.ended"}, 30);
  EXPECT_EQ(store->add_events({{"job.succeeded", "j1"}, {"video.ready", "v1"}, {"stream.live", "s1"}}, 100), 3);
  auto da = store->deliveries(a.id);
  ASSERT_EQ(da.size(), 2u);
  EXPECT_EQ(da[0].type, "video.ready"); // newest first
  EXPECT_EQ(da[1].type, "job.succeeded");
  EXPECT_EQ(da[1].subject, "j1");
  EXPECT_EQ(da[1].state, "pending");
  EXPECT_EQ(da[1].attempts, 0);
  EXPECT_EQ(da[1].id, da[1].event_id + a.id);
  EXPECT_TRUE(store->deliveries(b.id).empty());
  ASSERT_EQ(store->deliveries(c.id).size(), 1u);
  // One event to two endpoints: one event id, two delivery ids.
  Webhook d = hook({"stream.live"}, 40);
  store->add_events({{"stream.live", "s2"}}, 200);
  auto dc = store->deliveries(c.id), dd = store->deliveries(d.id);
  EXPECT_EQ(dc[0].event_id, dd[0].event_id);
  EXPECT_NE(dc[0].id, dd[0].id);
  // An event type nobody asked for writes nothing.
  EXPECT_EQ(store->add_events({{"upload.completed", "v9"}}, 300), 0);
}

TEST_P(WebhooksTest, AJobsEndWritesItsEventsUnlessFencedOut) {
  Webhook a = hook({"job.succeeded", "job.failed", "video.ready", "video.failed", "upload.completed"}, 10);
  Video v;
  v.id = new_id();
  v.created = 5;
  Job j;
  j.id = new_id();
  j.video_id = v.id;
  j.pipeline = "hls";
  j.encoder = "auto";
  j.created = 5;
  std::vector<Job> jobs{j};
  store->add_video_with_jobs(v, jobs, {{"upload.completed", v.id}});
  auto claimed = store->claim_job("w1", 10, kLease, {});
  ASSERT_TRUE(claimed);
  // A poster's end (not streaming): the job's event only.
  Job end = *claimed;
  end.state = JobState::Succeeded;
  end.finished = 20;
  Job stale = end;
  stale.token -= 1;
  EXPECT_FALSE(store->finish_job(stale)); // fenced out: no event either
  ASSERT_EQ(store->deliveries(a.id).size(), 1u);
  end.streaming = true;
  ASSERT_TRUE(store->finish_job(end));
  auto d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[2].type, "upload.completed");
  EXPECT_EQ(d[2].subject, v.id);
  EXPECT_EQ(d[1].type, "job.succeeded");
  EXPECT_EQ(d[1].subject, j.id);
  EXPECT_EQ(d[1].created, 20);
  EXPECT_EQ(d[0].type, "video.ready");
  EXPECT_EQ(d[0].subject, v.id);

  // finish_and_claim: a failure's events with the next claim.
  Job k = j;
  k.id = new_id();
  k.created = 30;
  store->add_job(k);
  auto c2 = store->claim_job("w1", 40, kLease, {});
  ASSERT_TRUE(c2);
  Job failed = *c2;
  failed.state = JobState::Failed;
  failed.finished = 50;
  failed.streaming = true;
  auto e = store->finish_and_claim(failed, "w1", 60, kLease, {});
  EXPECT_TRUE(e.ended);
  d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 5u);
  EXPECT_EQ(d[1].type, "job.failed");
  EXPECT_EQ(d[0].type, "video.failed");

  // A job queued again for a retry writes none; one that fails when its lease ran out writes job.failed.
  Job r = j;
  r.id = new_id();
  r.created = 70;
  r.max_attempts = 1;
  store->add_job(r);
  ASSERT_TRUE(store->claim_job("w1", 80, 10, {}));
  auto taken = store->requeue_expired(1000, {"poster", "storyboard"});
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].state, JobState::Failed);
  // An hls job's failure is its video's too (as finish_job writes for a streaming job).
  d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 7u);
  EXPECT_EQ(d[1].type, "job.failed");
  EXPECT_EQ(d[1].subject, r.id);
  EXPECT_EQ(d[0].type, "video.failed");
  EXPECT_EQ(d[0].subject, v.id);
  EXPECT_NE(d[0].event_id, d[1].event_id);

  // A poster's: the job's event only.
  Job p = r;
  p.id = new_id();
  p.pipeline = "poster";
  p.created = 1100;
  store->add_job(p);
  ASSERT_TRUE(store->claim_job("w1", 1200, 10, {}));
  taken = store->requeue_expired(2000, {"poster", "storyboard"});
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].state, JobState::Failed);
  d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 8u);
  EXPECT_EQ(d[0].type, "job.failed");
  EXPECT_EQ(d[0].subject, p.id);
}

TEST_P(WebhooksTest, AnEndpointsDeliveriesGoOutInOrderWithRetries) {
  Webhook a = hook({"job.succeeded"}, 10);
  Webhook b = hook({"job.succeeded"}, 20);
  store->add_events({{"job.succeeded", "j1"}}, 100);
  store->add_events({{"job.succeeded", "j2"}}, 101);
  store->add_events({{"job.succeeded", "j3"}}, 102);
  // Nothing due before it was written.
  EXPECT_TRUE(claim(99).empty());
  // One per endpoint: its oldest.
  auto c = claim(200);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].delivery.subject, "j1");
  EXPECT_EQ(c[1].delivery.subject, "j1");
  EXPECT_EQ(c[0].delivery.attempts, 1);
  EXPECT_EQ(c[0].webhook.id, a.id);
  EXPECT_EQ(c[0].webhook.secret, a.secret);
  EXPECT_EQ(c[1].webhook.id, b.id);
  // In flight: the endpoints' next ones wait for them.
  EXPECT_TRUE(claim(300).empty());
  // a's fails and is retried at 10000: until then a sends nothing more; b's succeeds and b goes on.
  outcome(c[0].delivery, "pending", 400, 10000, 503);
  outcome(c[1].delivery, "succeeded", 400);
  auto c2 = claim(500);
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].webhook.id, b.id);
  EXPECT_EQ(c2[0].delivery.subject, "j2");
  outcome(c2[0].delivery, "succeeded", 600);
  auto c3 = claim(10000);
  ASSERT_EQ(c3.size(), 2u);
  EXPECT_EQ(c3[0].delivery.subject, "j1");
  EXPECT_EQ(c3[0].delivery.attempts, 2);
  EXPECT_EQ(c3[0].delivery.last_status, 503);
  EXPECT_FALSE(c3[0].delivery.body.empty()); // the body of the first attempt, sent again
  EXPECT_EQ(c3[1].delivery.subject, "j3");
  // A delivery given up lets the next one go.
  outcome(c3[0].delivery, "failed", 10001, 0, 400);
  outcome(c3[1].delivery, "succeeded", 10001);
  auto c4 = claim(10002);
  ASSERT_EQ(c4.size(), 1u);
  EXPECT_EQ(c4[0].delivery.subject, "j2");
  auto d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[2].state, "failed");
  EXPECT_EQ(d[2].attempts, 2);
  EXPECT_EQ(d[2].last_status, 400);
}

TEST_P(WebhooksTest, AnAttemptWhoseLeaseRanOutIsClaimedAgainAndFencedOut) {
  Webhook a = hook({"stream.live"}, 10);
  store->add_events({{"stream.live", "s1"}}, 100);
  auto c = claim(200);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(claim(200 + kLease - 1).empty());
  auto again = claim(200 + kLease + 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery.attempts, 2);
  // The first claim's outcome comes late: it changes nothing.
  Delivery late = c[0].delivery;
  late.state = "succeeded";
  EXPECT_FALSE(store->finish_delivery(late));
  outcome(again[0].delivery, "succeeded", 300 + kLease);
  auto d = store->deliveries(a.id);
  EXPECT_EQ(d[0].state, "succeeded");
  EXPECT_EQ(d[0].attempts, 2);
}

TEST_P(WebhooksTest, DeliveriesThatEndedAreForgottenAfter30Days) {
  Webhook a = hook({"job.failed"}, 10);
  store->add_events({{"job.failed", "old"}}, 100);
  store->add_events({{"job.failed", "pending"}}, 101);
  auto c = claim(200);
  ASSERT_EQ(c.size(), 1u);
  outcome(c[0].delivery, "succeeded", 300);
  const std::int64_t month = 30LL * 86400 * 1000000;
  auto pending = claim(400);
  ASSERT_EQ(pending.size(), 1u);
  outcome(pending[0].delivery, "pending", 400, 300 + month + 1'000'000'000, 503);
  // One claim in 600 forgets what ended more than 30 days before it; a pending delivery stays, however old.
  for (int i = 0; i < 600; i++)
    EXPECT_TRUE(claim(300 + month + 1).empty());
  auto d = store->deliveries(a.id);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].subject, "pending");
}

TEST_P(WebhooksTest, TwoCatalogsClaimingAtOnceDeliverEachOnceInOrder) {
  std::vector<Webhook> hooks;
  for (int i = 0; i < 4; i++)
    hooks.push_back(hook({"job.failed"}, 10 + i));
  constexpr int kEvents = 15;
  for (int i = 0; i < kEvents; i++)
    store->add_events({{"job.failed", "j" + std::to_string(100 + i)}}, 100 + i);
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> sent; // endpoint -> subjects in the order delivered
  std::map<std::string, int> times;                     // delivery id -> successes
  auto worker = [&] {
    auto mine = open(url, dir.path());
    const std::int64_t until = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (g_get_monotonic_time() < until) {
      auto c = mine->claim_deliveries(1000, kLease, 3);
      if (c.empty()) {
        std::lock_guard lock(mu);
        if (static_cast<int>(times.size()) == kEvents * 4)
          return;
        continue;
      }
      for (auto &cd : c) {
        {
          std::lock_guard lock(mu);
          sent[cd.webhook.id].push_back(cd.delivery.subject);
          times[cd.delivery.id]++;
        }
        Delivery d = cd.delivery;
        d.state = "succeeded";
        d.last_status = 200;
        EXPECT_TRUE(mine->finish_delivery(d));
      }
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  ASSERT_EQ(times.size(), static_cast<std::size_t>(kEvents * 4));
  for (const auto &[id, n] : times)
    EXPECT_EQ(n, 1) << id;
  for (const auto &w : hooks) {
    ASSERT_EQ(sent[w.id].size(), static_cast<std::size_t>(kEvents));
    for (int i = 0; i < kEvents; i++)
      EXPECT_EQ(sent[w.id][i], "j" + std::to_string(100 + i));
  }
}

SLUICE_ON_BOTH_BACKENDS(WebhooksTest);

} // namespace
