// SPDX-License-Identifier: LGPL-2.1-or-later
// Tests of the event hub: increasing ids, fan-out, unsubscribing while publishing, Last-Event-ID replay.
#include "jobs/events.h"

#include <glib.h>
#include <gtest/gtest.h>

using sluice::jobs::Event;
using sluice::jobs::EventHub;

TEST(Events, IdsIncreaseAndOutliveARestart) {
  EventHub first;
  auto a = first.publish("job", "j", "v", "{}");
  auto b = first.publish("job", "j", "v", "{}");
  EXPECT_EQ(b, a + 1);
  // A hub created later (a restarted server) starts above what clients of the old one have seen,
  // as long as fewer than 1000 events per second were published.
  g_usleep(5000);
  EventHub second;
  EXPECT_GT(second.publish("job", "j", "v", "{}"), b);
}

TEST(Events, FanOutAndUnsubscribe) {
  EventHub hub;
  std::vector<std::string> got1, got2;
  auto t1 = hub.subscribe([&](const Event &e) { got1.push_back(e.data); });
  std::uint64_t t2 = 0;
  t2 = hub.subscribe([&](const Event &e) {
    got2.push_back(e.data);
    hub.unsubscribe(t2); // unsubscribing from inside the callback is allowed
  });
  hub.publish("progress", "j", "v", "1");
  hub.publish("progress", "j", "v", "2");
  EXPECT_EQ(got1, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(got2, (std::vector<std::string>{"1"}));
  hub.unsubscribe(t1);
  hub.publish("progress", "j", "v", "3");
  EXPECT_EQ(got1.size(), 2u);
  EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(Events, ReplaySinceALastId) {
  EventHub hub(4);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(hub.publish("job", "j", "v", std::to_string(i)));
  std::vector<Event> out;
  ASSERT_TRUE(hub.since(ids[3], out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].data, "4");
  EXPECT_EQ(out[1].data, "5");
  ASSERT_TRUE(hub.since(ids[5], out)); // up to date
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(hub.since(ids[1], out)); // the oldest kept event follows it: complete
  EXPECT_EQ(out.size(), 4u);
  EXPECT_FALSE(hub.since(ids[0], out)); // event 1 was dropped: cannot replay
  EXPECT_FALSE(hub.since(ids[5] + 10, out)); // from another (future) server
}
