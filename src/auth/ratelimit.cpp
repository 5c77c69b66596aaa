// SPDX-License-Identifier: LGPL-2.1-or-later
// Token buckets per caller: refill arithmetic, idle expiry and the bound on their number.
#include "auth/ratelimit.h"

#include <algorithm>
#include <cmath>

namespace sluice::auth {

namespace {

constexpr double kUs = 1e6;

} // namespace

double TokenBucket::level(const Budget &b, std::int64_t now_us) const {
  const double elapsed = static_cast<double>(std::max<std::int64_t>(0, now_us - last_us_)) / kUs;
  return std::min(b.burst, tokens_ + elapsed * b.rate);
}

Decision TokenBucket::take(const Budget &b, double n, std::int64_t now_us) {
  Decision d;
  d.limit = b.burst;
  tokens_ = level(b, now_us);
  last_us_ = std::max(last_us_, now_us);
  if (tokens_ >= n) {
    tokens_ -= n;
  } else {
    d.allowed = false;
    // What was asked never fits when it is more than the burst: wait for a full bucket then.
    d.retry_after_s = (std::min(n, b.burst) - tokens_) / b.rate;
  }
  d.remaining = tokens_;
  d.reset_s = (b.burst - tokens_) / b.rate;
  return d;
}

const char *kind_name(Kind k) {
  switch (k) {
  case Kind::Api: return "api";
  case Kind::UploadStarts: return "upload-starts";
  case Kind::UploadBytes: return "upload-bytes";
  case Kind::Media: return "media";
  }
  return "?";
}

RateLimiter::RateLimiter(const Limits &limits) : limits_(limits) {
  limits_.max_callers = std::max<std::size_t>(1, limits_.max_callers);
  double idle_s = 0;
  for (const auto &b : limits_.budgets)
    if (b.on())
      idle_s = std::max(idle_s, b.burst / b.rate);
  idle_us_ = static_cast<std::int64_t>(std::ceil(idle_s * kUs));
}

void RateLimiter::expire(std::int64_t now_us) {
  while (!recent_.empty() && now_us - recent_.back().seen_us >= idle_us_) {
    index_.erase(recent_.back().name);
    recent_.pop_back();
  }
}

Decision RateLimiter::take(Kind k, const std::string &caller, double n, std::int64_t now_us) {
  const Budget &b = limits_[k];
  if (!b.on())
    return Decision{};
  expire(now_us);
  auto it = index_.find(caller);
  if (it == index_.end()) {
    if (index_.size() >= limits_.max_callers) {
      index_.erase(recent_.back().name);
      recent_.pop_back();
      ++evicted_;
    }
    Caller c;
    c.name = caller;
    for (std::size_t i = 0; i < kKinds; ++i)
      c.buckets[i] = TokenBucket(limits_.budgets[i], now_us);
    recent_.push_front(std::move(c));
    it = index_.emplace(caller, recent_.begin()).first;
  } else if (it->second != recent_.begin()) {
    recent_.splice(recent_.begin(), recent_, it->second);
  }
  Caller &c = *it->second;
  c.seen_us = std::max(c.seen_us, now_us);
  return c.buckets[static_cast<std::size_t>(k)].take(b, n, now_us);
}

} // namespace sluice::auth
