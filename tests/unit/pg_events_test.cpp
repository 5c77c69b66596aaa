// SPDX-License-Identifier: LGPL-2.1-or-later
// Tests of the event hub shared through PostgreSQL: two hubs on their own connections, as two processes have them.
#include "jobs/pg_bus.h"
#include "store/store.h"

#include "pg_server.h"

#include <glib.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using sluice::jobs::Event;
using sluice::jobs::PgBusOptions;
using sluice::jobs::PgEventHub;
using sluice::test::pg_value;
using sluice::test::PgServer;

namespace {

// Runs the default main context (where the hubs listen) until pred() holds or timeout_ms passed.
bool spin_until(const std::function<bool()> &pred, int timeout_ms = 15000) {
  const gint64 deadline = g_get_monotonic_time() + gint64(timeout_ms) * 1000;
  while (!pred()) {
    if (g_get_monotonic_time() > deadline)
      return false;
    if (!g_main_context_iteration(nullptr, FALSE))
      g_usleep(500);
  }
  return true;
}

// What one subscriber received.
struct Seen {
  std::vector<Event> events;
  std::vector<std::string> data() const {
    std::vector<std::string> out;
    for (const auto &e : events)
      out.push_back(e.data);
    return out;
  }
  // Every id greater than the one before: in order, none twice.
  bool increasing() const {
    for (std::size_t i = 1; i < events.size(); i++)
      if (events[i].id <= events[i - 1].id)
        return false;
    return true;
  }
};

class PgEvents : public ::testing::Test {
protected:
  void SetUp() override {
    PgServer &pg = PgServer::get();
    if (!pg.ok())
      GTEST_SKIP() << "no PostgreSQL server for the test: " << pg.why();
    url_ = pg.new_database();
    ASSERT_FALSE(url_.empty()) << pg.why();
    store_ = sluice::store::open_postgres(url_); // migrates: the events table and its function
  }
  std::unique_ptr<PgEventHub> hub(PgBusOptions o = {}) { return std::make_unique<PgEventHub>(url_, o); }
  static std::uint64_t watch(PgEventHub &h, Seen &seen) {
    return h.subscribe([&seen](const Event &e) { seen.events.push_back(e); });
  }
  std::size_t rows() { return std::stoul(pg_value(url_, "SELECT count(*) FROM events")); }

  std::string url_;
  std::unique_ptr<sluice::store::Store> store_;
};

} // namespace

TEST_F(PgEvents, AnEventPublishedOnOneReachesTheOther) {
  auto a = hub(), b = hub();
  Seen on_a, on_b;
  watch(*a, on_a);
  watch(*b, on_b);
  // Each written before the next is published (two processes' threads would otherwise race: ids follow commits).
  EXPECT_EQ(a->publish("job", "j1", "v1", R"({"state":"queued"})"), 0u); // numbered when written
  ASSERT_TRUE(a->flush(5'000'000));
  b->publish("progress", "j1", "v1", R"({"percent":10})");
  ASSERT_TRUE(b->flush(5'000'000));
  b->publish("progress", "j1", "v1", R"({"percent":20})");
  ASSERT_TRUE(spin_until([&] { return on_a.events.size() >= 3 && on_b.events.size() >= 3; }));
  spin_until([] { return false; }, 200); // nothing more comes
  // Both processes get every event once, their own included, in the same (id) order.
  ASSERT_EQ(on_a.events.size(), 3u);
  ASSERT_EQ(on_b.events.size(), 3u);
  EXPECT_EQ(on_a.data(), (std::vector<std::string>{R"({"state":"queued"})", R"({"percent":10})", R"({"percent":20})"}));
  EXPECT_EQ(on_b.data(), on_a.data());
  EXPECT_TRUE(on_a.increasing());
  for (std::size_t i = 0; i < 3; i++) {
    EXPECT_EQ(on_a.events[i].id, on_b.events[i].id);
    EXPECT_EQ(on_b.events[i].job_id, "j1");
    EXPECT_EQ(on_b.events[i].video_id, "v1");
  }
  EXPECT_EQ(on_a.events[0].name, "job");
  EXPECT_EQ(on_b.events[2].name, "progress");
  EXPECT_EQ(a->last_id(), on_a.events.back().id);
  EXPECT_EQ(b->last_id(), on_a.events.back().id);
  EXPECT_TRUE(a->listening());
}

TEST_F(PgEvents, SinceOnAnotherProcessReturnsTheMissedOnes) {
  auto a = hub();
  Seen seen;
  watch(*a, seen);
  for (int i = 0; i < 5; i++)
    a->publish("progress", "j", "v", std::to_string(i));
  ASSERT_TRUE(spin_until([&] { return seen.events.size() == 5; }));
  // A process started later (a second api node) that never saw them: the client's last id is enough.
  auto other = hub();
  EXPECT_EQ(other->last_id(), seen.events.back().id); // it starts at the newest event
  std::vector<Event> missed;
  ASSERT_TRUE(other->since(seen.events[1].id, missed));
  ASSERT_EQ(missed.size(), 3u);
  EXPECT_EQ(missed[0].data, "2");
  EXPECT_EQ(missed[2].data, "4");
  EXPECT_EQ(missed[2].id, seen.events[4].id);
  EXPECT_EQ(missed[0].name, "progress");
  EXPECT_EQ(missed[0].job_id, "j");
  ASSERT_TRUE(other->since(seen.events[4].id, missed)); // up to date
  EXPECT_TRUE(missed.empty());
  EXPECT_FALSE(other->since(seen.events[4].id + 1000, missed)); // from the future, or another catalog
  EXPECT_FALSE(other->since(0, missed));
  EXPECT_FALSE(other->since(~0ull, missed));
  // One no longer kept (deleted, as pruning does): the client must be sent the current state instead.
  pg_value(url_, "DELETE FROM events WHERE id = " + std::to_string(seen.events[0].id));
  EXPECT_FALSE(other->since(seen.events[0].id, missed));
}

TEST_F(PgEvents, SinceLaterAnswersOnTheLoopAndNeverAfterTheHub) {
  auto a = hub();
  Seen seen;
  watch(*a, seen);
  for (int i = 0; i < 3; i++)
    a->publish("progress", "j", "v", std::to_string(i));
  ASSERT_TRUE(spin_until([&] { return seen.events.size() == 3; }));
  auto other = hub();
  std::optional<std::pair<bool, std::vector<Event>>> got;
  other->since_later(seen.events[0].id,
                     [&](bool ok, std::vector<Event> missed) { got.emplace(ok, std::move(missed)); });
  EXPECT_FALSE(got.has_value()); // read on the hub's thread: answered later, on the main loop
  ASSERT_TRUE(spin_until([&] { return got.has_value(); }));
  EXPECT_TRUE(got->first);
  ASSERT_EQ(got->second.size(), 2u);
  EXPECT_EQ(got->second[0].data, "1");
  EXPECT_EQ(got->second[1].id, seen.events[2].id);
  // Several at once, in the order asked: one no longer kept is told so.
  std::vector<bool> answers;
  other->since_later(seen.events[2].id,
                     [&](bool ok, std::vector<Event> missed) { answers.push_back(ok && missed.empty()); });
  other->since_later(seen.events[2].id + 1000, [&](bool ok, std::vector<Event>) { answers.push_back(ok); });
  ASSERT_TRUE(spin_until([&] { return answers.size() == 2; }));
  EXPECT_EQ(answers, (std::vector<bool>{true, false}));
  // A hub gone before its answer is back: the answer is never called.
  bool called = false;
  {
    auto gone = hub();
    gone->since_later(seen.events[0].id, [&](bool, std::vector<Event>) { called = true; });
  }
  spin_until([] { return false; }, 300);
  EXPECT_FALSE(called);
}

TEST_F(PgEvents, AnEventTooBigForANotificationIsReadFromTheTableInOrder) {
  auto a = hub(), b = hub();
  Seen seen;
  watch(*b, seen);
  const std::string big = "\"" + std::string(9000, 'x') + "\"";
  a->publish("video", "", "v", "1");
  a->publish("video", "", "v", big);
  a->publish("video", "", "v", "3");
  ASSERT_TRUE(spin_until([&] { return seen.events.size() == 3; }));
  EXPECT_EQ(seen.data(), (std::vector<std::string>{"1", big, "3"}));
  EXPECT_TRUE(seen.increasing());
  EXPECT_EQ(seen.events[1].video_id, "v");
}

TEST_F(PgEvents, AServerRestartLosesNothing) {
  auto a = hub(), b = hub();
  Seen on_a, on_b;
  watch(*a, on_a);
  watch(*b, on_b);
  for (int i = 0; i < 3; i++)
    a->publish("progress", "j", "v", std::to_string(i));
  ASSERT_TRUE(spin_until([&] { return on_b.events.size() == 3; }));
  ASSERT_TRUE(PgServer::get().restart()) << PgServer::get().why();
  // Written by another process while both hubs are still connecting again: it comes from the table.
  EXPECT_NE(pg_value(url_, "SELECT sluice_publish_event('progress', 'j', 'v', '3')"), "");
  // Published while the publishing connection is broken: written once it is made again.
  for (int i = 4; i < 6; i++)
    a->publish("progress", "j", "v", std::to_string(i));
  b->publish("progress", "j", "v", "6");
  ASSERT_TRUE(spin_until([&] { return on_a.events.size() >= 7 && on_b.events.size() >= 7; }))
      << on_a.events.size() << " " << on_b.events.size();
  spin_until([] { return false; }, 300);
  // "6" was published on another hub (a connection of its own): its place among 4 and 5 is when it was written.
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(on_a.data()), (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6"}));
  EXPECT_EQ(on_b.data(), on_a.data());
  const auto got = on_a.data();
  EXPECT_LT(std::find(got.begin(), got.end(), "4"), std::find(got.begin(), got.end(), "5")); // one hub's, in order
  EXPECT_TRUE(on_a.increasing());
  EXPECT_TRUE(on_b.increasing());
  EXPECT_TRUE(a->listening());
  EXPECT_TRUE(b->listening());
  EXPECT_EQ(rows(), 7u);
}

TEST_F(PgEvents, OldEventsArePruned) {
  PgBusOptions o;
  o.keep_rows = 3;
  o.prune_every_us = 100'000;
  auto a = hub(o);
  Seen seen;
  watch(*a, seen);
  for (int i = 0; i < 10; i++)
    a->publish("job", "j", "v", std::to_string(i));
  ASSERT_TRUE(spin_until([&] { return seen.events.size() == 10; }));
  ASSERT_TRUE(spin_until([&] { return rows() == 3; }, 5000)) << rows();
  std::vector<Event> missed;
  EXPECT_FALSE(a->since(seen.events[2].id, missed)); // pruned: the current state instead
  ASSERT_TRUE(a->since(seen.events[7].id, missed));
  EXPECT_EQ(missed.size(), 2u);
}

TEST_F(PgEvents, PublishingIsCheapForTheLoop) {
  auto a = hub(), b = hub();
  Seen seen;
  watch(*b, seen);
  constexpr int kEvents = 2000;
  const std::string data = R"({"job":"0123456789abcdef","video":"0123456789abcdef","percent":42.5,"position":26.2,)"
                           R"("duration":62.5,"fps":95.1,"speed":3.2,"eta":11.4})";
  const gint64 start = g_get_monotonic_time();
  gint64 in_publish = 0;
  for (int i = 0; i < kEvents; i++) {
    const gint64 t = g_get_monotonic_time();
    a->publish("progress", "0123456789abcdef", "0123456789abcdef", data);
    in_publish += g_get_monotonic_time() - t;
  }
  ASSERT_TRUE(a->flush(60'000'000));
  const gint64 written = g_get_monotonic_time();
  ASSERT_TRUE(spin_until([&] { return seen.events.size() == kEvents; }, 30000)) << seen.events.size();
  const gint64 delivered = g_get_monotonic_time();
  EXPECT_TRUE(seen.increasing());
  std::printf("publish() on the loop: %.1f us per event; written by the thread: %.0f us per event "
              "(%.0f events/s); delivered to another hub: %.0f events/s\n",
              double(in_publish) / kEvents, double(written - start) / kEvents, kEvents * 1e6 / double(written - start),
              kEvents * 1e6 / double(delivered - start));
  // The loop only queues: far below one round trip to the server.
  EXPECT_LT(double(in_publish) / kEvents, 200.0);
}
