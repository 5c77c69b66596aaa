// SPDX-License-Identifier: LGPL-2.1-or-later
// The server's Prometheus metrics, kept with prometheus-cpp's core library (no exposer: http/ serves the text).
#include "core/metrics.h"

#include <glib.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace sluice::metrics {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

namespace {

const Histogram::BucketBoundaries kRequestBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                     0.5,   1,     2.5,  5,     10,   30};
const Histogram::BucketBoundaries kJobBuckets = {1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200};
const Histogram::BucketBoundaries kWaitBuckets = {0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600};
const Histogram::BucketBoundaries kSpeedBuckets = {0.25, 0.5, 1, 2, 4, 8, 16, 32, 64};

// A method as a label: the ones HTTP defines, anything else "other" (a client chooses the word).
constexpr const char *kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"};
std::size_t method_index(std::string_view m) {
  for (std::size_t i = 0; i + 1 < std::size(kMethods); i++)
    if (m == kMethods[i])
      return i;
  return std::size(kMethods) - 1;
}

struct ViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The HTTP series of one route: its duration and bytes, and its request counts by method and status.
struct RouteSeries {
  Histogram *seconds = nullptr;
  Counter *sent = nullptr;
  struct Count {
    std::size_t method;
    unsigned status;
    Counter *counter;
  };
  std::vector<Count> requests; // few: a route answers with a handful of statuses
};

} // namespace

std::string failing_element(const std::string &error_message) {
  auto colon = error_message.find(": ");
  if (colon == std::string::npos || colon == 0 || colon > 64)
    return "unknown";
  std::string name = error_message.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(),
                   [](char c) { return g_ascii_isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':'; }))
    return "unknown";
  // "hlssink2-0" or "qtdemux3": the name GStreamer gave it, numbered per process.
  std::size_t end = name.size();
  while (end > 0 && g_ascii_isdigit(name[end - 1]))
    --end;
  if (end > 0 && end < name.size()) {
    name.resize(end);
    if (name.back() == '-' || name.back() == '_')
      name.pop_back();
  }
  return name.empty() ? "unknown" : name;
}

struct Metrics::Families {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  Family<Counter> &requests = BuildCounter()
                                  .Name("sluice_http_requests_total")
                                  .Help("HTTP requests answered, by method, route pattern and status")
                                  .Register(*registry);
  Family<Histogram> &request_seconds = BuildHistogram()
                                           .Name("sluice_http_request_duration_seconds")
                                           .Help("Time from a request's headers to the end of its answer, by route")
                                           .Register(*registry);
  Family<Counter> &sent = BuildCounter()
                              .Name("sluice_http_response_bytes_total")
                              .Help("Bytes of response bodies sent, by route")
                              .Register(*registry);
  Family<Counter> &fast_path =
      BuildCounter()
          .Name("sluice_http_fast_path_requests_total")
          .Help("Requests answered on the fast path (counted in sluice_http_requests_total too)")
          .Register(*registry);
  Family<Gauge> &uploads =
      BuildGauge().Name("sluice_uploads_in_progress").Help("Uploads whose body is being received").Register(*registry);
  Family<Counter> &upload_bytes =
      BuildCounter().Name("sluice_upload_bytes_total").Help("Bytes of upload bodies received").Register(*registry);
  Family<Gauge> &jobs_in_state =
      BuildGauge().Name("sluice_jobs_in_state").Help("Jobs in the catalog, by state").Register(*registry);
  Family<Counter> &starts = BuildCounter()
                                .Name("sluice_job_starts_total")
                                .Help("Runs of jobs started (a retry is a run), by pipeline")
                                .Register(*registry);
  Family<Counter> &jobs = BuildCounter()
                              .Name("sluice_jobs_total")
                              .Help("Jobs that reached a terminal state, by pipeline and state")
                              .Register(*registry);
  Family<Counter> &retries = BuildCounter()
                                 .Name("sluice_job_retries_total")
                                 .Help("Runs that failed and were queued again, by pipeline and error code")
                                 .Register(*registry);
  Family<Counter> &failures = BuildCounter()
                                  .Name("sluice_job_failures_total")
                                  .Help("Jobs that failed for good, by pipeline and error code")
                                  .Register(*registry);
  Family<Counter> &pipeline_errors = BuildCounter()
                                         .Name("sluice_pipeline_errors_total")
                                         .Help("Errors GStreamer reported while running jobs, by pipeline and element")
                                         .Register(*registry);
  Family<Histogram> &job_seconds = BuildHistogram()
                                       .Name("sluice_job_duration_seconds")
                                       .Help("Duration of each run of a job, by pipeline")
                                       .Register(*registry);
  Family<Histogram> &wait_seconds = BuildHistogram()
                                        .Name("sluice_job_queue_wait_seconds")
                                        .Help("Time a job waited in the queue before a run started, by pipeline")
                                        .Register(*registry);
  Family<Histogram> &speed = BuildHistogram()
                                 .Name("sluice_transcode_speed_ratio")
                                 .Help("Speed of finished runs in times realtime, by pipeline")
                                 .Register(*registry);
  Family<Gauge> &sse =
      BuildGauge().Name("sluice_sse_clients").Help("Clients connected to the event stream").Register(*registry);
  Family<Gauge> &free = BuildGauge()
                            .Name("sluice_disk_free_bytes")
                            .Help("Bytes free for the data folder (-1 when it cannot be told)")
                            .Register(*registry);
  Family<Gauge> &build = BuildGauge()
                             .Name("sluice_build_info")
                             .Help("The version of sluice that is running (always 1)")
                             .Register(*registry);

  // http_request's series, by route pattern (prometheus-cpp's Add hashes the labels and locks the family each time).
  std::mutex http_mutex;
  std::unordered_map<std::string, RouteSeries, ViewHash, std::equal_to<>> http_routes;

  Counter &fast_path_now = fast_path.Add({});
  Gauge &uploads_now = uploads.Add({});
  Counter &upload_total = upload_bytes.Add({});
  Gauge &sse_now = sse.Add({});
  Gauge &free_now = free.Add({});
};

Metrics::Metrics(const std::string &version) : f_(std::make_unique<Families>()) {
  f_->build.Add({{"version", version}}).Set(1);
  // The series a dashboard expects are there from the start, at zero.
  for (const char *state : {"queued", "running", "succeeded", "failed", "canceled"})
    f_->jobs_in_state.Add({{"state", state}});
  f_->free_now.Set(-1);
}

Metrics::~Metrics() = default;

void Metrics::http_request(std::string_view method, std::string_view route, unsigned status, double duration_s,
                           std::uint64_t bytes_sent) {
  std::lock_guard<std::mutex> lock(f_->http_mutex);
  auto it = f_->http_routes.find(route);
  if (it == f_->http_routes.end()) {
    RouteSeries r;
    const std::string name(route);
    r.seconds = &f_->request_seconds.Add({{"route", name}}, kRequestBuckets);
    r.sent = &f_->sent.Add({{"route", name}});
    it = f_->http_routes.emplace(name, std::move(r)).first;
  }
  RouteSeries &r = it->second;
  const std::size_t m = method_index(method);
  Counter *requests = nullptr;
  for (const auto &c : r.requests)
    if (c.method == m && c.status == status) {
      requests = c.counter;
      break;
    }
  if (!requests) {
    requests =
        &f_->requests.Add({{"method", kMethods[m]}, {"route", std::string(route)}, {"status", std::to_string(status)}});
    r.requests.push_back({m, status, requests});
  }
  requests->Increment();
  r.seconds->Observe(std::max(0.0, duration_s));
  r.sent->Increment(static_cast<double>(bytes_sent));
}

void Metrics::fast_path_request() {
  f_->fast_path_now.Increment();
}

void Metrics::upload_started() {
  f_->uploads_now.Increment();
}

void Metrics::upload_ended() {
  f_->uploads_now.Decrement();
}

void Metrics::upload_bytes(std::uint64_t n) {
  f_->upload_total.Increment(static_cast<double>(n));
}

void Metrics::set_jobs_in_state(const char *state, double n) {
  f_->jobs_in_state.Add({{"state", state}}).Set(n);
}

void Metrics::set_sse_clients(double n) {
  f_->sse_now.Set(n);
}

void Metrics::set_free_bytes(double n) {
  f_->free_now.Set(n);
}

void Metrics::job_started(const std::string &pipeline, double queue_wait_s) {
  f_->starts.Add({{"pipeline", pipeline}}).Increment();
  f_->wait_seconds.Add({{"pipeline", pipeline}}, kWaitBuckets).Observe(std::max(0.0, queue_wait_s));
}

void Metrics::job_ran(const std::string &pipeline, double duration_s) {
  f_->job_seconds.Add({{"pipeline", pipeline}}, kJobBuckets).Observe(std::max(0.0, duration_s));
}

void Metrics::job_ended(const std::string &pipeline, const char *state) {
  f_->jobs.Add({{"pipeline", pipeline}, {"state", state}}).Increment();
}

void Metrics::job_retried(const std::string &pipeline, const std::string &error_code) {
  f_->retries.Add({{"pipeline", pipeline}, {"code", error_code}}).Increment();
}

void Metrics::job_failed(const std::string &pipeline, const std::string &error_code) {
  f_->failures.Add({{"pipeline", pipeline}, {"code", error_code}}).Increment();
}

void Metrics::pipeline_error(const std::string &pipeline, const std::string &element) {
  f_->pipeline_errors.Add({{"pipeline", pipeline}, {"element", element}}).Increment();
}

void Metrics::transcode_speed(const std::string &pipeline, double speed) {
  f_->speed.Add({{"pipeline", pipeline}}, kSpeedBuckets).Observe(std::max(0.0, speed));
}

std::string Metrics::text() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(f_->registry->Collect());
}

} // namespace sluice::metrics
