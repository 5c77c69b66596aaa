// SPDX-License-Identifier: LGPL-2.1-or-later
// The worker side of `tools/bench queue`: fills a catalog with queued jobs, claims and finishes them as one worker
// process would (a no-op pipeline run to its end between the claim and the finish; each job's end written with the
// next claim, in one call, as the scheduler does when a slot frees), and checks what the catalog says.
//
//   sluice-bench-queue seed URL COUNT          COUNT queued jobs of one video
//   sluice-bench-queue work URL NAME START_US  claims until the queue is empty (from START_US, wall clock); prints JSON
//   sluice-bench-queue check URL               prints JSON: jobs, succeeded, attempts other than 1

#include "core/error.h"
#include "store/store.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <gst/gst.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace sluice;

constexpr std::int64_t kLeaseUs = 30'000'000;
constexpr const char *kNoop = "fakesrc num-buffers=1 ! fakesink";

int seed(store::Store &s, long count) {
  store::Video v;
  v.id = store::new_id();
  v.title = "queue benchmark";
  v.created = g_get_real_time();
  s.add_video(v);
  for (long i = 0; i < count; i++) {
    store::Job j;
    j.id = store::new_id();
    j.video_id = v.id;
    j.pipeline = "noop";
    j.encoder = "auto";
    j.params_json = "{}";
    j.max_attempts = 1;
    j.created = v.created + i;
    s.add_job(j);
  }
  return 0;
}

// Runs the no-op pipeline to its end; false when it failed.
bool run_noop() {
  GError *err = nullptr;
  GstElement *p = gst_parse_launch(kNoop, &err);
  if (!p) {
    std::fprintf(stderr, "pipeline: %s\n", err ? err->message : "?");
    g_clear_error(&err);
    return false;
  }
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool ok = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m)
    gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return ok;
}

std::int64_t percentile(std::vector<std::int64_t> v, double q) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int work(store::Store &s, const std::string &name, std::int64_t start_us) {
  while (g_get_real_time() < start_us)
    g_usleep(static_cast<gulong>(std::min<std::int64_t>(start_us - g_get_real_time(), 10'000)));
  std::vector<std::int64_t> claims;
  std::string ids;
  long failed = 0, lost = 0;
  const std::int64_t began = g_get_real_time();
  std::int64_t ended = began;
  // The first claim alone; then each job's end and the next claim in one call (one round trip, one commit), its
  // latency counted as the claim's.
  std::int64_t t0 = g_get_monotonic_time();
  auto job = s.claim_job(name, g_get_real_time(), kLeaseUs, {});
  while (job) {
    claims.push_back(g_get_monotonic_time() - t0);
    const bool ok = run_noop();
    job->state = ok ? store::JobState::Succeeded : store::JobState::Failed;
    job->finished = g_get_real_time();
    if (!ok) {
      job->error_code = "internal";
      job->error = "the no-op pipeline failed";
      failed++;
    }
    ids += (ids.empty() ? "\"" : ",\"") + job->id + "\"";
    t0 = g_get_monotonic_time();
    auto next = s.finish_and_claim(*job, name, g_get_real_time(), kLeaseUs, {});
    if (!next.ended)
      lost++;
    ended = g_get_real_time();
    job = std::move(next.claimed); // none: the queue is empty, and the call that found it so is not a claim
  }
  std::printf("{\"worker\":\"%s\",\"jobs\":%zu,\"failed\":%ld,\"lost\":%ld,\"began_us\":%lld,\"ended_us\":%lld,"
              "\"claim_p50_us\":%lld,\"claim_p99_us\":%lld,\"ids\":[%s]}\n",
              name.c_str(), claims.size(), failed, lost, static_cast<long long>(began), static_cast<long long>(ended),
              static_cast<long long>(percentile(claims, 0.5)), static_cast<long long>(percentile(claims, 0.99)),
              ids.c_str());
  return 0;
}

int check(store::Store &s) {
  store::JobFilter f;
  f.limit = 1'000'000;
  long jobs = 0, succeeded = 0, other_attempts = 0;
  for (const auto &j : s.jobs(f)) {
    jobs++;
    succeeded += j.state == store::JobState::Succeeded;
    other_attempts += j.attempts != 1;
  }
  std::printf("{\"jobs\":%ld,\"succeeded\":%ld,\"attempts_not_1\":%ld}\n", jobs, succeeded, other_attempts);
  return 0;
}

int usage() {
  std::fprintf(stderr, "usage: sluice-bench-queue seed URL COUNT | work URL NAME START_US | check URL\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3)
    return usage();
  const std::string cmd = argv[1], url = argv[2];
  gst_init(nullptr, nullptr);
  try {
    g_autofree char *dir = g_dir_make_tmp("sluice-bench-queue-XXXXXX", nullptr);
    auto s = store::open(url, dir ? dir : ".");
    int rc = usage();
    if (cmd == "seed" && argc == 4)
      rc = seed(*s, std::atol(argv[3]));
    else if (cmd == "work" && argc == 5)
      rc = work(*s, argv[3], std::atoll(argv[4]));
    else if (cmd == "check" && argc == 3)
      rc = check(*s);
    s.reset();
    if (dir)
      g_rmdir(dir); // a relative sqlite:// URL would have made its file in there: the bench passes absolute ones
    return rc;
  } catch (const Error &e) {
    std::fprintf(stderr, "sluice-bench-queue: %s\n", e.what());
    return 1;
  }
}
