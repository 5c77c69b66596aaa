// SPDX-License-Identifier: LGPL-2.1-or-later
// Rate limits: token buckets per caller (an API key or a client address), one per budget, bounded in number.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

namespace sluice::auth {

// A budget: `rate` tokens come back per second, up to `burst`. Off when either is 0.
struct Budget {
  double rate = 0;
  double burst = 0;
  bool on() const { return rate > 0 && burst > 0; }
};

// What a take() decided, with what the RateLimit-* headers say.
struct Decision {
  bool allowed = true;
  double limit = 0;         // the burst
  double remaining = 0;     // tokens left after this take
  double reset_s = 0;       // seconds until the bucket is full again
  double retry_after_s = 0; // when refused: seconds until it holds what was asked
};

// One token bucket. Times are in microseconds of a monotonic clock.
class TokenBucket {
public:
  TokenBucket() = default;
  TokenBucket(const Budget &b, std::int64_t now_us) : tokens_(b.burst), last_us_(now_us) {}

  // Refills up to now, then takes n tokens when there are that many (a refusal takes nothing).
  Decision take(const Budget &b, double n, std::int64_t now_us);
  // The tokens it would hold at now_us.
  double level(const Budget &b, std::int64_t now_us) const;

private:
  double tokens_ = 0;
  std::int64_t last_us_ = 0;
};

enum class Kind { Api, UploadStarts, UploadBytes, Media };
inline constexpr std::size_t kKinds = 4;
const char *kind_name(Kind k); // "api", "upload-starts", ...

struct Limits {
  Budget budgets[kKinds];
  std::size_t max_callers = 100000; // buckets of this many callers at most; the least recently seen go first
  const Budget &operator[](Kind k) const { return budgets[static_cast<std::size_t>(k)]; }
  Budget &operator[](Kind k) { return budgets[static_cast<std::size_t>(k)]; }
};

// The buckets of every caller. A caller idle long enough for all its buckets to be full again is forgotten
// (a fresh bucket is full: nothing is lost), and at max_callers the least recently seen one makes room.
// Not thread-safe: used on the main loop.
class RateLimiter {
public:
  explicit RateLimiter(const Limits &limits);

  // Takes n tokens of the caller's budget k. An off budget always allows (limit 0).
  Decision take(Kind k, const std::string &caller, double n, std::int64_t now_us);
  bool on(Kind k) const { return limits_[k].on(); }
  std::size_t callers() const { return index_.size(); }
  std::uint64_t evicted() const { return evicted_; }

private:
  struct Caller {
    std::string name;
    std::int64_t seen_us = 0;
    TokenBucket buckets[kKinds];
  };
  void expire(std::int64_t now_us);

  Limits limits_;
  std::int64_t idle_us_ = 0; // after this long unseen, every bucket of a caller is full
  std::list<Caller> recent_; // most recently seen first
  std::unordered_map<std::string, std::list<Caller>::iterator> index_;
  std::uint64_t evicted_ = 0;
};

} // namespace sluice::auth
