// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of the catalog: job states, ids, and every store test against both backends: SQLite on real files in a
// temp dir, PostgreSQL on a throwaway server (initdb + pg_ctl, a Unix socket in a temp dir) that the tests start.

#include "core/config.h"
#include "core/error.h"
#include "store/store.h"

#include <fcntl.h>
#include <glib.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <linux/fs.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "media.h"

#include "store_backends.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using sluice::Error;
using sluice::ErrorCode;
using sluice::test::contains;
using sluice::test::expect_error;
using sluice::test::TempDir;
using namespace sluice::store;

Video make_video(const std::string &title, std::int64_t created) {
  Video v;
  v.id = new_id();
  v.title = title;
  v.description = "about " + title;
  v.filename = title + ".mp4";
  v.source = "uploads/" + v.id + "/source.mp4";
  v.size = 1234567;
  v.probe_json = R"({"duration":2.0})";
  v.created = created;
  return v;
}

Job make_job(const std::string &video_id, std::int64_t created, int priority = 0) {
  Job j;
  j.id = new_id();
  j.video_id = video_id;
  j.pipeline = "hls";
  j.encoder = "auto";
  j.created = created;
  j.priority = priority;
  return j;
}

std::int64_t user_version(const std::string &path) {
  sqlite3 *db = nullptr;
  std::int64_t v = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt *s = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
      v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return v;
}

void write_bytes(const std::string &path, const std::string &data) {
  ASSERT_TRUE(g_file_set_contents(path.c_str(), data.data(), static_cast<gssize>(data.size()), nullptr));
}

// The same tests on both backends.
class StoreTest : public sluice::test::BackendTest {
protected:
  std::string path() const { return dir.file("catalog.db"); }
  // Closes and opens the catalog again.
  void reopen() {
    store.reset();
    store = open(url, dir.path());
  }
  // The schema version the catalog records.
  std::int64_t schema_version() const {
    return postgres() ? std::stoll(sluice::test::pg_value(url, "SELECT version FROM sluice_schema"))
                      : user_version(path());
  }
};

// The tests of SQLite's file alone (WAL, immutable files).
class SqliteStoreTest : public ::testing::Test {
protected:
  void SetUp() override { store = open_sqlite(path()); }
  std::string path() const { return dir.file("catalog.db"); }
  void reopen() {
    store.reset();
    store = open_sqlite(path());
  }

  TempDir dir;
  std::unique_ptr<Store> store;
};

SLUICE_ON_BOTH_BACKENDS(StoreTest);

// ---------------------------------------------------------------------------------------------
// States and ids

TEST(JobStateTest, NamesRoundTrip) {
  for (JobState s : {JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Canceled}) {
    auto parsed = parse_job_state(job_state_name(s));
    ASSERT_TRUE(parsed.has_value()) << job_state_name(s);
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_STREQ(job_state_name(JobState::Queued), "queued");
  EXPECT_STREQ(job_state_name(JobState::Canceled), "canceled");
  EXPECT_FALSE(parse_job_state("").has_value());
  EXPECT_FALSE(parse_job_state("Queued").has_value());
  EXPECT_FALSE(parse_job_state("cancelled").has_value());
}

TEST(JobStateTest, Terminal) {
  EXPECT_FALSE(is_terminal(JobState::Queued));
  EXPECT_FALSE(is_terminal(JobState::Running));
  EXPECT_TRUE(is_terminal(JobState::Succeeded));
  EXPECT_TRUE(is_terminal(JobState::Failed));
  EXPECT_TRUE(is_terminal(JobState::Canceled));
}

TEST(IdTest, FormatAndUniqueness) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; i++) {
    std::string id = new_id();
    ASSERT_EQ(id.size(), 16u) << id;
    ASSERT_TRUE(is_id(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(IdTest, RejectsOthers) {
  EXPECT_TRUE(is_id("0123456789abcdef"));
  EXPECT_FALSE(is_id(""));
  EXPECT_FALSE(is_id("../x"));
  EXPECT_FALSE(is_id("../x456789abcdef"));
  EXPECT_FALSE(is_id("../x456789abcdef0"));
  EXPECT_FALSE(is_id("0123456789ABCDEF"));
  EXPECT_FALSE(is_id("0123456789abcdeF"));
  EXPECT_FALSE(is_id("0123456789abcde"));
  EXPECT_FALSE(is_id("0123456789abcdef0"));
  EXPECT_FALSE(is_id("0123456789abcdeg"));
  EXPECT_FALSE(is_id(std::string("0123456789abcde\0", 16)));
}

// ---------------------------------------------------------------------------------------------
// Videos

TEST_P(StoreTest, VideoRoundTrip) {
  Video v = make_video("clip", 1700000000000000);
  v.title = "Ünïcode ' \" ; -- title";
  v.description = std::string("line 1\nline 2\0with nul", 22);
  v.size = 5'000'000'000; // over 32 bits
  if (postgres()) {
    // PostgreSQL's text holds no NUL byte: refused whole, never cut short (the API removes control characters).
    Error e = expect_error([&] { store->add_video(v); });
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_TRUE(contains(e.what(), "NUL")) << e.what();
    EXPECT_FALSE(store->video(v.id).has_value());
    EXPECT_TRUE(store->writable()) << "a value refused says nothing of the catalog";
    v.description = "line 1\nline 2 without nul";
    // Nor bytes that are not UTF-8.
    Video latin = make_video("caf\xe9", 1);
    e = expect_error([&] { store->add_video(latin); });
    EXPECT_EQ(e.code(), ErrorCode::Io);
    EXPECT_TRUE(contains(e.what(), "UTF8")) << e.what();
    EXPECT_TRUE(store->writable());
  }
  store->add_video(v);
  auto got = store->video(v.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, v.id);
  EXPECT_EQ(got->title, v.title);
  EXPECT_EQ(got->description, v.description);
  EXPECT_EQ(got->filename, v.filename);
  EXPECT_EQ(got->source, v.source);
  EXPECT_EQ(got->size, v.size);
  EXPECT_EQ(got->probe_json, v.probe_json);
  EXPECT_EQ(got->created, v.created);
  EXPECT_FALSE(store->video(new_id()).has_value());
  EXPECT_FALSE(store->video("").has_value());
}

TEST_P(StoreTest, PlaybackPolicy) {
  Video v = make_video("clip", 1700000000000000);
  store->add_video(v);
  EXPECT_EQ(store->video(v.id)->playback_policy, "public");
  EXPECT_TRUE(store->set_playback_policy(v.id, "signed"));
  EXPECT_EQ(store->video(v.id)->playback_policy, "signed");
  EXPECT_EQ(store->videos().front().playback_policy, "signed");
  EXPECT_FALSE(store->set_playback_policy(new_id(), "signed"));
  // The catalog itself refuses a policy that is neither.
  EXPECT_THROW(store->set_playback_policy(v.id, "secret"), sluice::Error);
  EXPECT_EQ(store->video(v.id)->playback_policy, "signed");
  Video w = make_video("signed at once", 1700000000000001);
  w.playback_policy = "signed";
  store->add_video(w);
  EXPECT_EQ(store->video(w.id)->playback_policy, "signed");
}

TEST_P(StoreTest, EmptyFieldsRoundTrip) {
  Video v;
  v.id = new_id();
  store->add_video(v);
  auto got = store->video(v.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->title, "");
  EXPECT_EQ(got->size, 0);
  EXPECT_EQ(got->created, 0);
}

TEST_P(StoreTest, DuplicateVideoIsAnIoError) {
  Video v = make_video("a", 1);
  store->add_video(v);
  Error e = expect_error([&] { store->add_video(v); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), v.id)) << e.what();
  EXPECT_TRUE(contains(e.what(), "UNIQUE")) << e.what();
}

TEST_P(StoreTest, VideosNewestFirst) {
  Video a = make_video("a", 100), b = make_video("b", 300), c = make_video("c", 200), d = make_video("d", 300);
  for (const Video &v : {a, b, c, d})
    store->add_video(v);
  auto all = store->videos();
  ASSERT_EQ(all.size(), 4u);
  // Same created time: the later insert first.
  EXPECT_EQ(all[0].id, d.id);
  EXPECT_EQ(all[1].id, b.id);
  EXPECT_EQ(all[2].id, c.id);
  EXPECT_EQ(all[3].id, a.id);
  auto two = store->videos(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].id, d.id);
  EXPECT_EQ(two[1].id, b.id);
}

TEST_P(StoreTest, DeleteVideoCascadesToJobs) {
  Video keep = make_video("keep", 1), gone = make_video("gone", 2);
  store->add_video(keep);
  store->add_video(gone);
  Job kj = make_job(keep.id, 10);
  Job g1 = make_job(gone.id, 11), g2 = make_job(gone.id, 12);
  store->add_job(kj);
  store->add_job(g1);
  store->add_job(g2);

  EXPECT_TRUE(store->delete_video(gone.id));
  EXPECT_FALSE(store->video(gone.id).has_value());
  EXPECT_FALSE(store->job(g1.id).has_value());
  EXPECT_FALSE(store->job(g2.id).has_value());
  EXPECT_TRUE(store->job(kj.id).has_value());
  EXPECT_EQ(store->count_jobs(JobState::Queued), 1);

  EXPECT_FALSE(store->delete_video(gone.id));
  EXPECT_FALSE(store->delete_video(new_id()));
  EXPECT_TRUE(store->video(keep.id).has_value());
}

// ---------------------------------------------------------------------------------------------
// Jobs

TEST_P(StoreTest, JobRoundTrip) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j;
  j.id = new_id();
  j.video_id = v.id;
  j.pipeline = "hls-abr";
  j.encoder = "x264enc";
  j.ladder = "360p,720p:3000";
  j.params_json = R"({"preset":"fast"})";
  j.state = JobState::Failed;
  j.priority = -7;
  j.attempts = 2;
  j.max_attempts = 5;
  j.created = 1700000000000001;
  j.started = 1700000000000002;
  j.finished = 1700000000000003;
  j.not_before = 1700000000000004;
  j.error_code = "pipeline_error";
  j.error = "x264enc: could not encode";
  j.result_json = R"({"renditions":[]})";
  std::int64_t seq = store->add_job(j);
  EXPECT_GT(seq, 0);

  auto got = store->job(j.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, j.id);
  EXPECT_EQ(got->video_id, j.video_id);
  EXPECT_EQ(got->pipeline, j.pipeline);
  EXPECT_EQ(got->encoder, j.encoder);
  EXPECT_EQ(got->ladder, j.ladder);
  EXPECT_EQ(got->params_json, j.params_json);
  EXPECT_EQ(got->state, j.state);
  EXPECT_EQ(got->priority, j.priority);
  EXPECT_EQ(got->attempts, j.attempts);
  EXPECT_EQ(got->max_attempts, j.max_attempts);
  EXPECT_EQ(got->created, j.created);
  EXPECT_EQ(got->started, j.started);
  EXPECT_EQ(got->finished, j.finished);
  EXPECT_EQ(got->not_before, j.not_before);
  EXPECT_EQ(got->error_code, j.error_code);
  EXPECT_EQ(got->error, j.error);
  EXPECT_EQ(got->result_json, j.result_json);
  EXPECT_EQ(got->seq, seq);
  EXPECT_FALSE(store->job(new_id()).has_value());
}

TEST_P(StoreTest, SeqIncreasesAndJobsAreNewestFirst) {
  Video a = make_video("a", 1), b = make_video("b", 2);
  store->add_video(a);
  store->add_video(b);
  std::vector<Job> added;
  for (int i = 0; i < 5; i++) {
    Job j = make_job(i % 2 ? b.id : a.id, 1000 - i); // created goes backwards: order must follow seq
    j.state = i == 3 ? JobState::Running : JobState::Queued;
    j.seq = store->add_job(j);
    if (!added.empty()) {
      EXPECT_GT(j.seq, added.back().seq);
    }
    added.push_back(j);
  }

  auto all = store->jobs({});
  ASSERT_EQ(all.size(), 5u);
  for (std::size_t i = 0; i < 5; i++)
    EXPECT_EQ(all[i].id, added[4 - i].id);

  auto of_b = store->jobs({.state = std::nullopt, .video_id = b.id, .limit = 1000});
  ASSERT_EQ(of_b.size(), 2u);
  EXPECT_EQ(of_b[0].id, added[3].id);
  EXPECT_EQ(of_b[1].id, added[1].id);

  auto queued = store->jobs({.state = JobState::Queued, .video_id = "", .limit = 1000});
  ASSERT_EQ(queued.size(), 4u);
  EXPECT_EQ(queued[0].id, added[4].id);

  auto running_b = store->jobs({.state = JobState::Running, .video_id = b.id, .limit = 1000});
  ASSERT_EQ(running_b.size(), 1u);
  EXPECT_EQ(running_b[0].id, added[3].id);
  EXPECT_TRUE(store->jobs({.state = JobState::Running, .video_id = a.id, .limit = 1000}).empty());
  EXPECT_TRUE(store->jobs({.state = std::nullopt, .video_id = new_id(), .limit = 1000}).empty());

  auto limited = store->jobs({.state = std::nullopt, .video_id = "", .limit = 2});
  ASSERT_EQ(limited.size(), 2u);
  EXPECT_EQ(limited[0].id, added[4].id);
  EXPECT_EQ(limited[1].id, added[3].id);
}

TEST_P(StoreTest, JobOfUnknownVideoIsRefused) {
  Job j = make_job(new_id(), 1);
  Error e = expect_error([&] { store->add_job(j); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "FOREIGN KEY")) << e.what();
  EXPECT_EQ(store->count_jobs(JobState::Queued), 0);
}

TEST_P(StoreTest, NextQueuedByPriorityThenFifo) {
  Video v = make_video("v", 1);
  store->add_video(v);
  EXPECT_FALSE(store->next_queued(1000).has_value());

  Job low1 = make_job(v.id, 10, 0), high1 = make_job(v.id, 20, 5), low2 = make_job(v.id, 30, 0);
  Job high2 = make_job(v.id, 20, 5); // same created as high1: the earlier insert wins
  Job running = make_job(v.id, 1, 9);
  running.state = JobState::Running;
  Job done = make_job(v.id, 1, 9);
  done.state = JobState::Succeeded;
  for (const Job &j : {low1, high1, low2, high2, running, done})
    store->add_job(j);

  std::vector<std::string> order;
  while (auto next = store->next_queued(1000)) {
    EXPECT_EQ(next->state, JobState::Queued);
    order.push_back(next->id);
    next->state = JobState::Running;
    store->update_job(*next);
  }
  EXPECT_EQ(order, (std::vector<std::string>{high1.id, high2.id, low1.id, low2.id}));
}

TEST_P(StoreTest, NextQueuedIsReadOnly) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j = make_job(v.id, 1);
  store->add_job(j);
  EXPECT_EQ(store->next_queued(10)->id, j.id);
  EXPECT_EQ(store->next_queued(10)->id, j.id);
  EXPECT_EQ(store->job(j.id)->state, JobState::Queued);
}

TEST_P(StoreTest, NextQueuedWaitsForNotBefore) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job later = make_job(v.id, 10, 5);
  later.not_before = 5000;
  Job now = make_job(v.id, 20, 0);
  store->add_job(later);
  store->add_job(now);

  EXPECT_EQ(store->next_queued(4999)->id, now.id); // the higher priority is not due yet
  EXPECT_EQ(store->next_queued(5000)->id, later.id);
  EXPECT_EQ(store->next_queued(6000)->id, later.id);

  Job n = *store->job(now.id);
  n.not_before = 9000;
  store->update_job(n);
  Job l = *store->job(later.id);
  l.not_before = 9000;
  store->update_job(l);
  EXPECT_FALSE(store->next_queued(8999).has_value());
  EXPECT_EQ(store->next_queued(9000)->id, later.id);
}

TEST_P(StoreTest, UpdateJobPersistsMutableFields) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j = make_job(v.id, 100);
  j.params_json = R"({"a":"1"})";
  j.seq = store->add_job(j);

  j.state = JobState::Failed;
  j.priority = 3;
  j.attempts = 3;
  j.max_attempts = 4;
  j.started = 200;
  j.finished = 300;
  j.not_before = 400;
  j.error_code = "pipeline_error";
  j.error = "it broke";
  j.result_json = R"({"x":1})";
  store->update_job(j);
  reopen();

  auto got = store->job(j.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state, JobState::Failed);
  EXPECT_EQ(got->priority, 3);
  EXPECT_EQ(got->attempts, 3);
  EXPECT_EQ(got->max_attempts, 4);
  EXPECT_EQ(got->started, 200);
  EXPECT_EQ(got->finished, 300);
  EXPECT_EQ(got->not_before, 400);
  EXPECT_EQ(got->error_code, "pipeline_error");
  EXPECT_EQ(got->error, "it broke");
  EXPECT_EQ(got->result_json, R"({"x":1})");
  // Not mutable: unchanged.
  EXPECT_EQ(got->video_id, v.id);
  EXPECT_EQ(got->pipeline, "hls");
  EXPECT_EQ(got->params_json, R"({"a":"1"})");
  EXPECT_EQ(got->created, 100);
  EXPECT_EQ(got->seq, j.seq);

  // Cleared again.
  j.state = JobState::Succeeded;
  j.error_code.clear();
  j.error.clear();
  store->update_job(j);
  got = store->job(j.id);
  EXPECT_EQ(got->state, JobState::Succeeded);
  EXPECT_EQ(got->error_code, "");
  EXPECT_EQ(got->error, "");
}

TEST_P(StoreTest, UpdateUnknownJobIsNotFound) {
  Job j = make_job(new_id(), 1);
  EXPECT_EQ(expect_error([&] { store->update_job(j); }).code(), ErrorCode::NotFound);
}

TEST_P(StoreTest, CountJobs) {
  Video v = make_video("v", 1);
  store->add_video(v);
  const std::vector<JobState> states = {JobState::Queued, JobState::Queued, JobState::Running, JobState::Succeeded,
                                        JobState::Failed, JobState::Failed, JobState::Failed};
  for (JobState s : states) {
    Job j = make_job(v.id, 1);
    j.state = s;
    store->add_job(j);
  }
  EXPECT_EQ(store->count_jobs(JobState::Queued), 2);
  EXPECT_EQ(store->count_jobs(JobState::Running), 1);
  EXPECT_EQ(store->count_jobs(JobState::Succeeded), 1);
  EXPECT_EQ(store->count_jobs(JobState::Failed), 3);
  EXPECT_EQ(store->count_jobs(JobState::Canceled), 0);
}

TEST_P(StoreTest, RequeueRunning) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job r1 = make_job(v.id, 1), r2 = make_job(v.id, 2), q = make_job(v.id, 3), s = make_job(v.id, 4);
  r1.state = r2.state = JobState::Running;
  r1.attempts = 2;
  r1.started = 50;
  s.state = JobState::Succeeded;
  for (const Job &j : {r1, q, r2, s})
    store->add_job(j);

  auto requeued = store->requeue_running();
  ASSERT_EQ(requeued.size(), 2u);
  std::set<std::string> ids = {requeued[0].id, requeued[1].id};
  EXPECT_EQ(ids, (std::set<std::string>{r1.id, r2.id}));
  for (const Job &j : requeued)
    EXPECT_EQ(j.state, JobState::Queued);

  EXPECT_EQ(store->count_jobs(JobState::Running), 0);
  EXPECT_EQ(store->count_jobs(JobState::Queued), 3);
  EXPECT_EQ(store->count_jobs(JobState::Succeeded), 1);
  auto got = store->job(r1.id);
  EXPECT_EQ(got->state, JobState::Queued);
  EXPECT_EQ(got->attempts, 2); // kept

  EXPECT_TRUE(store->requeue_running().empty());
}

// ---------------------------------------------------------------------------------------------
// The file

TEST_P(StoreTest, AnswersAreKeptOnceAndForgottenWhenOld) {
  StoredAnswer a;
  a.scope = "POST /api/v1/videos";
  a.key = "k1";
  a.fingerprint = "f";
  a.status = 201;
  a.body = "{\"video\":{}}";
  a.location = "/api/v1/videos/x";
  a.created = 1000;
  store->store_answer(a, 0);
  auto got = store->stored_answer(a.scope, "k1", 0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, 201);
  EXPECT_EQ(got->body, a.body);
  EXPECT_EQ(got->location, a.location);
  EXPECT_EQ(got->fingerprint, "f");
  // Keys are per scope; an answer older than `since` is not found.
  EXPECT_FALSE(store->stored_answer("POST /api/v1/videos/y/jobs", "k1", 0));
  EXPECT_FALSE(store->stored_answer(a.scope, "k1", 1001));
  // A second answer under the same key does not replace the first...
  StoredAnswer b = a;
  b.status = 202;
  b.created = 1500;
  store->store_answer(b, 0);
  EXPECT_EQ(store->stored_answer(a.scope, "k1", 0)->status, 201);
  // ...unless the first is past forgetting, and storing forgets every old answer.
  StoredAnswer other = a;
  other.key = "k2";
  other.created = 500;
  store->store_answer(other, 0);
  store->store_answer(b, 1200);
  EXPECT_EQ(store->stored_answer(a.scope, "k1", 0)->status, 202);
  EXPECT_FALSE(store->stored_answer(a.scope, "k2", 0));
  reopen();
  EXPECT_EQ(store->stored_answer(a.scope, "k1", 0)->status, 202);
}

TEST_P(StoreTest, ReopenKeepsDataAndSchemaVersion) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j = make_job(v.id, 2);
  j.seq = store->add_job(j);
  EXPECT_TRUE(store->ping());
  reopen();
  EXPECT_TRUE(store->ping());
  ASSERT_TRUE(store->video(v.id).has_value());
  EXPECT_EQ(store->video(v.id)->title, "v");
  ASSERT_TRUE(store->job(j.id).has_value());
  EXPECT_EQ(store->job(j.id)->seq, j.seq);
  // Later jobs continue the sequence.
  Job k = make_job(v.id, 3);
  EXPECT_GT(store->add_job(k), j.seq);
  // 7: job leases and workers; 8 (PostgreSQL): the events of every process; then the jobs' weights.
  EXPECT_EQ(schema_version(), postgres() ? 12 : 11);
  store.reset();
  // A second store on the same catalog sees the same data.
  auto a = open(url, dir.path()), b = open(url, dir.path());
  Video w = make_video("w", 5);
  a->add_video(w);
  EXPECT_TRUE(b->video(w.id).has_value());
  EXPECT_EQ(b->videos().size(), 2u);
}

TEST_F(SqliteStoreTest, UsesWal) {
  store->add_video(make_video("v", 1));
  EXPECT_TRUE(g_file_test((path() + "-wal").c_str(), G_FILE_TEST_EXISTS));
}

TEST_P(StoreTest, VideoSurvivesKill) {
  store.reset();
  Video v = make_video("survivor", 1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      auto s = open(url, dir.path());
      s->add_video(v);
    } catch (...) {
      _exit(2);
    }
    raise(SIGKILL);
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  store = open(url, dir.path());
  auto got = store->video(v.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->title, "survivor");
}

// Sets or clears the immutable attribute of a file (chattr +i / -i); false where that cannot be done (not root, or a
// file system without it).
bool set_immutable(const std::string &path, bool on) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  int flags = 0;
  bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  close(fd);
  return ok;
}

TEST_F(SqliteStoreTest, WritesToAnImmutableCatalogFailAndLandLater) {
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j = make_job(v.id, 1);
  store->add_job(j);
  EXPECT_TRUE(store->writable(0));
  // Reads do not notice: the write-ahead log is where every write goes first. (Not the -shm file: SQLite maps it,
  // and a write to a mapped immutable file is SIGBUS.)
  std::string wal = path() + "-wal";
  if (!set_immutable(wal, true))
    GTEST_SKIP() << "cannot make a file immutable here (needs root and a file system with chattr +i)";
  j.state = JobState::Succeeded;
  Error e = expect_error([&] { store->update_job(j); });
  bool still_immutable = set_immutable(wal, true); // keeps it so for the checks below
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), j.id)) << e.what();
  EXPECT_TRUE(still_immutable);
  EXPECT_TRUE(store->ping()); // reads go on
  EXPECT_EQ(store->job(j.id)->state, JobState::Queued);
  // The failed write is what writable() reports, without a write of its own; and a real write probe says the same.
  EXPECT_FALSE(store->writable());
  EXPECT_FALSE(store->writable(0));
  ASSERT_TRUE(set_immutable(wal, false));
  EXPECT_FALSE(store->writable()) << "the outcome of the latest write is kept for a few seconds";
  EXPECT_TRUE(store->writable(0));
  store->update_job(j);
  EXPECT_EQ(store->job(j.id)->state, JobState::Succeeded);
  reopen();
  EXPECT_EQ(store->job(j.id)->state, JobState::Succeeded);
}

TEST_F(SqliteStoreTest, WritableProbesAtMostOnceInItsWindow) {
  std::int64_t version = user_version(path());
  store->add_video(make_video("v", 1));
  std::string wal = path() + "-wal";
  struct stat before {};
  ASSERT_EQ(stat(wal.c_str(), &before), 0);
  // A write just landed: no probe.
  for (int i = 0; i < 100; i++)
    EXPECT_TRUE(store->writable());
  struct stat after {};
  ASSERT_EQ(stat(wal.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, before.st_size);
  // Forced: one real write (a WAL frame) each time; the schema version is unchanged.
  EXPECT_TRUE(store->writable(0));
  ASSERT_EQ(stat(wal.c_str(), &after), 0);
  EXPECT_GT(after.st_size, before.st_size);
  store.reset();
  EXPECT_EQ(user_version(path()), version);
}

TEST(StoreFileTest, MissingDirectoryIsAnIoError) {
  TempDir dir;
  std::string path = dir.file("no/such/dir/catalog.db");
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), path)) << e.what();
  EXPECT_TRUE(contains(e.what(), "cannot open")) << e.what();
  EXPECT_TRUE(contains(e.what(), "does not exist")) << e.what();
}

TEST(StoreFileTest, UnwritableDirectoryIsAnIoError) {
  if (geteuid() == 0)
    GTEST_SKIP() << "root writes anywhere";
  TempDir dir;
  std::string sub = dir.file("ro");
  ASSERT_EQ(mkdir(sub.c_str(), 0500), 0);
  std::string path = sub + "/catalog.db";
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), path)) << e.what();
  EXPECT_TRUE(contains(e.what(), "not writable")) << e.what();
  chmod(sub.c_str(), 0700);
}

TEST(StoreFileTest, ReadOnlyFileIsAnIoError) {
  if (geteuid() == 0)
    GTEST_SKIP() << "root writes anywhere";
  TempDir dir;
  std::string path = dir.file("catalog.db");
  open_sqlite(path).reset();
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "read-only")) << e.what();
}

TEST(StoreFileTest, FileAsDirectoryIsAnIoError) {
  TempDir dir;
  write_bytes(dir.file("plain"), "x");
  std::string path = dir.file("plain/catalog.db");
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), path)) << e.what();
  EXPECT_TRUE(contains(e.what(), "is not a folder")) << e.what();
}

TEST(StoreFileTest, DirectoryPathIsAnIoError) {
  TempDir dir;
  EXPECT_EQ(expect_error([&] { open_sqlite(dir.path()); }).code(), ErrorCode::Io);
}

TEST(StoreFileTest, RandomBytesAreAnError) {
  TempDir dir;
  std::string path = dir.file("catalog.db");
  std::string junk(8192, '\0');
  for (char &c : junk)
    c = static_cast<char>(g_random_int_range(0, 256));
  write_bytes(path, junk);
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), path)) << e.what();
  EXPECT_TRUE(contains(e.what(), "not a database")) << e.what();
}

TEST(StoreFileTest, DamagedPagesAreAnErrorNotACrash) {
  TempDir dir;
  std::string path = dir.file("catalog.db");
  {
    auto s = open_sqlite(path);
    Video v = make_video("v", 1);
    s->add_video(v);
    for (int i = 0; i < 50; i++)
      s->add_job(make_job(v.id, i));
  } // the last close checkpoints the WAL into the main file
  gchar *data = nullptr;
  gsize len = 0;
  ASSERT_TRUE(g_file_get_contents(path.c_str(), &data, &len, nullptr));
  std::string bytes(data, len);
  g_free(data);
  ASSERT_GT(bytes.size(), 4096u);
  // Keep the 100-byte header, scramble the rest.
  for (std::size_t i = 100; i < bytes.size(); i++)
    bytes[i] = static_cast<char>(g_random_int_range(0, 256));
  write_bytes(path, bytes);
  try {
    auto s = open_sqlite(path);
    s->videos();
    s->jobs({});
    s->next_queued(100);
    s->requeue_running();
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
  }
}

TEST(StoreFileTest, NewerSchemaIsRefused) {
  TempDir dir;
  std::string path = dir.file("catalog.db");
  open_sqlite(path).reset();
  sqlite3 *db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  Error e = expect_error([&] { open_sqlite(path); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "schema version 99")) << e.what();
}

// ---------------------------------------------------------------------------------------------
// Resumable and direct uploads

ResumableUpload make_upload(std::int64_t length) {
  ResumableUpload u;
  u.id = new_id();
  u.length = length;
  u.metadata = "filename Y2xpcC5tcDQ=";
  u.state = "receiving";
  u.created = 1000;
  u.expires = 2000;
  return u;
}

TEST_P(StoreTest, UploadsRoundTripAndSurviveReopening) {
  ResumableUpload a = make_upload(100), b = make_upload(-1);
  b.concat = "partial";
  b.direct_id = "d1";
  store->add_upload(a);
  store->add_upload(b);
  a.offset = 60;
  store->update_upload(a);
  reopen();
  auto got = store->upload(a.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->offset, 60);
  EXPECT_EQ(got->length, 100);
  EXPECT_EQ(got->metadata, a.metadata);
  EXPECT_EQ(got->state, "receiving");
  auto gb = store->upload(b.id);
  ASSERT_TRUE(gb);
  EXPECT_EQ(gb->length, -1);
  EXPECT_EQ(gb->concat, "partial");
  EXPECT_EQ(gb->direct_id, "d1");
  // Completion: the length given late, the state, the video, the error.
  b.length = 5;
  b.offset = 5;
  b.state = "failed";
  b.error_code = "not_media";
  b.error = "not media";
  store->update_upload(b);
  gb = store->upload(b.id);
  EXPECT_EQ(gb->length, 5);
  EXPECT_EQ(gb->state, "failed");
  EXPECT_EQ(gb->error_code, "not_media");
  auto all = store->uploads();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_TRUE(store->delete_upload(a.id));
  EXPECT_FALSE(store->delete_upload(a.id));
  EXPECT_FALSE(store->upload(a.id));
  EXPECT_EQ(store->uploads().size(), 1u);
}

TEST_P(StoreTest, UploadStateIsChecked) {
  ResumableUpload a = make_upload(10);
  a.state = "half-done";
  EXPECT_THROW(store->add_upload(a), Error);
  EXPECT_FALSE(store->upload(a.id));
}

TEST_P(StoreTest, DirectUploadIsClaimedOnce) {
  DirectUpload d;
  d.id = new_id();
  d.token_hash = std::string(64, 'a');
  d.max_size = 1000;
  d.origin = "https://app.example";
  d.metadata_json = "{\"title\":\"t\"}";
  d.created = 10;
  d.expires = 20;
  store->add_direct_upload(d);
  auto got = store->direct_upload_by_hash(d.token_hash);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->origin, d.origin);
  EXPECT_EQ(got->max_size, 1000);
  EXPECT_EQ(got->upload_id, "");
  EXPECT_TRUE(store->claim_direct_upload(d.id, "u1"));
  EXPECT_FALSE(store->claim_direct_upload(d.id, "u2")); // once
  EXPECT_EQ(store->direct_upload_by_hash(d.token_hash)->upload_id, "u1");
  EXPECT_FALSE(store->direct_upload_by_hash(std::string(64, 'b')));
  store->forget_direct_uploads(20); // expires at 20: kept until after
  EXPECT_TRUE(store->direct_upload_by_hash(d.token_hash));
  store->forget_direct_uploads(21);
  EXPECT_FALSE(store->direct_upload_by_hash(d.token_hash));
}

TEST_P(StoreTest, StreamsRoundTripAndAreFoundByKeyHash) {
  Stream s;
  s.id = new_id();
  s.title = "show";
  s.key_hash = std::string(64, 'c');
  s.pipeline = "live-hls";
  s.ladder = "720p,360p";
  s.record = true;
  s.source = "rtsp://cam/x";
  s.created = 5;
  store->add_stream(s);
  reopen();
  auto got = store->stream(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->title, "show");
  EXPECT_TRUE(got->record);
  EXPECT_EQ(got->source, "rtsp://cam/x");
  EXPECT_EQ(store->stream_by_key_hash(s.key_hash)->id, s.id);
  EXPECT_FALSE(store->stream_by_key_hash(std::string(64, 'd')));
  Stream dup = s;
  dup.id = new_id(); // the same key hash: refused
  EXPECT_THROW(store->add_stream(dup), Error);
  EXPECT_EQ(store->streams().size(), 1u);
  EXPECT_TRUE(store->delete_stream(s.id));
  EXPECT_FALSE(store->delete_stream(s.id));
  EXPECT_TRUE(store->streams().empty());
}

// ---------------------------------------------------------------------------------------------
// [store] url

TEST(StoreUrlTest, BackendsByUrl) {
  EXPECT_EQ(check_url(""), Backend::Sqlite);
  EXPECT_EQ(check_url("sqlite:///var/lib/sluice/sluice.db"), Backend::Sqlite);
  EXPECT_EQ(check_url("postgresql://sluice@db.example/sluice"), Backend::Postgres);
  EXPECT_EQ(check_url("postgres://db.example:5433/sluice?sslmode=require"), Backend::Postgres);
  EXPECT_EQ(check_url("host=/run/postgresql dbname=sluice"), Backend::Postgres);
  for (const char *bad : {"mysql://u:hunter2@db/x", "sluice.db", "sqlite://", "host=db password=hunter2 nokeyword=1",
                          "host='unterminated password=hunter2"}) {
    Error e = expect_error([&] { check_url(bad); });
    EXPECT_EQ(e.code(), ErrorCode::Invalid) << bad;
    EXPECT_TRUE(contains(e.what(), "[store] url")) << e.what();
    EXPECT_FALSE(contains(e.what(), "hunter2")) << e.what();
  }
}

TEST(StoreUrlTest, PasswordsAreNeverShown) {
  for (const char *url : {"postgresql://sluice:hunter2@db.example:5433/catalog", "postgres://sluice:hunter2@db/catalog",
                          "postgresql://sluice@db/catalog?password=hunter2",
                          "host=db.example port=5433 user=sluice password=hunter2 dbname=catalog",
                          "host=db user=sluice password='hunter2 with spaces' dbname=catalog"}) {
    std::string shown = redact_url(url);
    EXPECT_FALSE(contains(shown, "hunter2")) << shown;
    EXPECT_TRUE(contains(shown, "password=***")) << shown;
    EXPECT_TRUE(contains(shown, "user=sluice")) << shown;
    EXPECT_TRUE(contains(shown, "db")) << shown;
  }
  EXPECT_EQ(redact_url("sqlite:///a/b.db"), "sqlite:///a/b.db");
  EXPECT_EQ(redact_url(""), "");
  // Nothing to connect to there: the error says where, without the password.
  TempDir dir;
  Error e = expect_error([&] { open("postgresql://sluice:hunter2@/catalog?host=" + dir.file("none"), dir.path()); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "cannot connect")) << e.what();
  EXPECT_TRUE(contains(e.what(), "password=***")) << e.what();
  EXPECT_FALSE(contains(e.what(), "hunter2")) << e.what();
}

TEST(StoreUrlTest, SqliteUrlsAndTheDefault) {
  TempDir dir;
  Video v = make_video("v", 1);
  open("", dir.path())->add_video(v);
  EXPECT_TRUE(open_sqlite(dir.file("sluice.db"))->video(v.id)); // the default: the data folder's sluice.db
  ASSERT_EQ(mkdir(dir.file("elsewhere").c_str(), 0700), 0);
  Video w = make_video("w", 2);
  open("sqlite://" + dir.file("elsewhere/c.db"), dir.path())->add_video(w);
  EXPECT_TRUE(open_sqlite(dir.file("elsewhere/c.db"))->video(w.id));
  Video x = make_video("x", 3);
  open("sqlite://relative.db", dir.path())->add_video(x); // relative: in the data folder
  EXPECT_TRUE(open_sqlite(dir.file("relative.db"))->video(x.id));
}

TEST(StoreUrlTest, ReadFromTheConfiguration) {
  TempDir dir;
  sluice::ServerConfig config;
  EXPECT_EQ(config.store_url, ""); // the default: the data folder's sluice.db
  write_bytes(dir.file("a.conf"), "[store]\nurl = postgresql://sluice:hunter2@db.example/catalog\n");
  config.load_file(dir.file("a.conf"));
  EXPECT_EQ(config.store_url, "postgresql://sluice:hunter2@db.example/catalog");
  write_bytes(dir.file("b.conf"), "[store]\nurl = mysql://sluice:hunter2@db.example/catalog\n");
  Error e = expect_error([&] { sluice::ServerConfig().load_file(dir.file("b.conf")); });
  EXPECT_EQ(e.code(), ErrorCode::Invalid);
  EXPECT_TRUE(contains(e.what(), "[store] url")) << e.what();
  EXPECT_FALSE(contains(e.what(), "hunter2")) << e.what();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL alone

class PgStoreTest : public ::testing::Test {
protected:
  void SetUp() override {
    sluice::test::PgServer &server = sluice::test::PgServer::get();
    if (!server.ok())
      GTEST_SKIP() << "no PostgreSQL server for the tests: " << server.why();
    url = server.new_database();
    ASSERT_FALSE(url.empty()) << server.why();
  }
  std::string value(const std::string &sql) const { return sluice::test::pg_value(url, sql); }

  std::string url;
};

TEST_F(PgStoreTest, ProcessesStartingAtOnceMigrateOnce) {
  // Eight stores open a new database at the same moment: each waits for the first one's migration, none fails.
  constexpr int kStores = 8;
  std::atomic<int> ready{0};
  std::vector<std::unique_ptr<Store>> stores(kStores);
  std::vector<std::string> errors(kStores);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; i++)
    threads.emplace_back([&, i] {
      ready++;
      while (ready.load() < kStores)
        std::this_thread::yield();
      try {
        stores[i] = open_postgres(url);
      } catch (const Error &e) {
        errors[i] = e.what();
      }
    });
  for (std::thread &t : threads)
    t.join();
  for (int i = 0; i < kStores; i++) {
    EXPECT_EQ(errors[i], "") << "store " << i;
    ASSERT_TRUE(stores[i]) << "store " << i;
  }
  EXPECT_EQ(value("SELECT count(*) FROM sluice_schema"), "1");
  EXPECT_EQ(value("SELECT version FROM sluice_schema"), "12");
  Video v = make_video("shared", 1);
  stores[0]->add_video(v);
  for (auto &s : stores)
    EXPECT_TRUE(s->video(v.id).has_value());
  // And processes, forked at once on another new database: each migrates or waits, then adds a video.
  const std::string other = sluice::test::PgServer::get().new_database();
  ASSERT_FALSE(other.empty());
  std::vector<Video> added;
  for (int i = 0; i < 4; i++)
    added.push_back(make_video("child " + std::to_string(i), i)); // ids made here: a child's generator is a copy
  std::vector<pid_t> pids;
  for (const Video &child : added) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        open_postgres(other)->add_video(child);
      } catch (const Error &e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        _exit(2);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(sluice::test::pg_value(other, "SELECT count(*) FROM sluice_schema"), "1");
  EXPECT_EQ(open_postgres(other)->videos().size(), 4u);
}

TEST_F(PgStoreTest, NewerSchemaIsRefused) {
  open_postgres(url).reset();
  value("UPDATE sluice_schema SET version = 99");
  Error e = expect_error([&] { open_postgres(url); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), "schema version 99")) << e.what();
}

TEST_F(PgStoreTest, WritesRefusedByTheServerFailAndLandLater) {
  auto store = open_postgres(url);
  Video v = make_video("v", 1);
  store->add_video(v);
  Job j = make_job(v.id, 1);
  store->add_job(j);
  EXPECT_TRUE(store->writable(0));
  // The server's disk is full: every update fails (a trigger raises disk_full), reads go on.
  value("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$");
  value("CREATE TRIGGER refuse_writes BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION full_disk()");
  value("CREATE TRIGGER refuse_writes BEFORE UPDATE ON sluice_schema FOR EACH ROW EXECUTE FUNCTION full_disk()");
  j.state = JobState::Succeeded;
  Error e = expect_error([&] { store->update_job(j); });
  EXPECT_EQ(e.code(), ErrorCode::Io);
  EXPECT_TRUE(contains(e.what(), j.id)) << e.what();
  EXPECT_TRUE(contains(e.what(), "could not extend file")) << e.what();
  EXPECT_TRUE(store->ping());
  EXPECT_EQ(store->job(j.id)->state, JobState::Queued);
  EXPECT_FALSE(store->writable());
  EXPECT_FALSE(store->writable(0)); // a real write probe, refused too
  value("DROP TRIGGER refuse_writes ON jobs");
  value("DROP TRIGGER refuse_writes ON sluice_schema");
  EXPECT_FALSE(store->writable()) << "the outcome of the latest write is kept for a few seconds";
  EXPECT_TRUE(store->writable(0));
  store->update_job(j);
  EXPECT_EQ(store->job(j.id)->state, JobState::Succeeded);
}

TEST_F(PgStoreTest, WritableDoesNotWaitForALock) {
  auto store = open_postgres(url);
  // Another session holds the row the probe writes: the probe gives up at once, and says what it knew.
  PGconn *other = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(other), CONNECTION_OK);
  PQclear(PQexec(other, "BEGIN"));
  PQclear(PQexec(other, "UPDATE sluice_schema SET version = version"));
  std::int64_t t0 = g_get_monotonic_time();
  EXPECT_TRUE(store->writable(0));
  EXPECT_LT(g_get_monotonic_time() - t0, 2'000'000);
  PQclear(PQexec(other, "ROLLBACK"));
  PQfinish(other);
  EXPECT_TRUE(store->writable(0));
}

TEST_F(PgStoreTest, ConnectionLostIsMadeAgain) {
  auto store = open_postgres(url);
  Video v = make_video("v", 1);
  store->add_video(v);
  // The server ends the store's session (as a restart would).
  value("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice' AND "
        "datname = current_database()");
  try {
    store->videos(); // may fail: the connection was found broken
  } catch (const Error &e) {
    EXPECT_EQ(e.code(), ErrorCode::Io);
  }
  ASSERT_TRUE(store->video(v.id).has_value());
  EXPECT_TRUE(store->ping());
}

} // namespace
