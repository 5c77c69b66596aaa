// SPDX-License-Identifier: LGPL-2.1-or-later
// The server's Prometheus metrics: one registry, its metric families, and their text exposition.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::metrics {

// What the jobs layer records of its jobs (the scheduler holds one, or none).
class JobRecorder {
public:
  virtual ~JobRecorder() = default;
  // A run of a job starts after waiting queue_wait_s in the queue.
  virtual void job_started(const std::string &pipeline, double queue_wait_s) = 0;
  // A run of a job ended (succeeded, failed, retried or canceled) after duration_s.
  virtual void job_ran(const std::string &pipeline, double duration_s) = 0;
  // A job reached a terminal state: "succeeded", "failed" or "canceled".
  virtual void job_ended(const std::string &pipeline, const char *state) = 0;
  // A run failed with error_code and the job is queued again.
  virtual void job_retried(const std::string &pipeline, const std::string &error_code) = 0;
  // A job failed for good with error_code.
  virtual void job_failed(const std::string &pipeline, const std::string &error_code) = 0;
  // GStreamer reported an error of the element `element` (its name without GStreamer's number).
  virtual void pipeline_error(const std::string &pipeline, const std::string &element) = 0;
  // How fast a job's transcode ran, in times realtime (from its progress).
  virtual void transcode_speed(const std::string &pipeline, double speed) = 0;
};

// The element named by a job's error message ("element: message (debug)", as the runner writes it),
// without the number GStreamer appends to elements it names itself ("qtdemux3" -> "qtdemux"), so that
// the label's values stay few; "unknown" when the message names none.
std::string failing_element(const std::string &error_message);

class Metrics : public JobRecorder {
public:
  explicit Metrics(const std::string &version);
  ~Metrics() override;
  Metrics(const Metrics &) = delete;
  Metrics &operator=(const Metrics &) = delete;

  // HTTP: one finished request. route is the pattern of the route it matched, never its path. The series of a
  // route, method and status are looked up in the registry once, then kept.
  void http_request(std::string_view method, std::string_view route, unsigned status, double duration_s,
                    std::uint64_t bytes_sent);
  // One of them answered on the fast path (http/fast.cpp).
  void fast_path_request();
  void upload_started();
  void upload_ended();
  void upload_bytes(std::uint64_t n);

  // Values read when the metrics are asked for.
  void set_jobs_in_state(const char *state, double n);
  void set_sse_clients(double n);
  void set_free_bytes(double n);

  void job_started(const std::string &pipeline, double queue_wait_s) override;
  void job_ran(const std::string &pipeline, double duration_s) override;
  void job_ended(const std::string &pipeline, const char *state) override;
  void job_retried(const std::string &pipeline, const std::string &error_code) override;
  void job_failed(const std::string &pipeline, const std::string &error_code) override;
  void pipeline_error(const std::string &pipeline, const std::string &element) override;
  void transcode_speed(const std::string &pipeline, double speed) override;

  // The Prometheus text format (version 0.0.4).
  std::string text() const;

private:
  struct Families;
  std::unique_ptr<Families> f_;
};

} // namespace sluice::metrics
