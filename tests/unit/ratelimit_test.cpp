// SPDX-License-Identifier: LGPL-2.1-or-later
// Tests of src/auth/ratelimit: the token bucket's arithmetic, separate budgets, idle expiry and the bound on callers.
#include "auth/ratelimit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

using namespace sluice::auth;

namespace {

constexpr std::int64_t kS = 1'000'000; // one second in microseconds

Limits limits(double api_rate, double api_burst, double media_rate = 0, double media_burst = 0) {
  Limits l;
  l[Kind::Api] = {api_rate, api_burst};
  l[Kind::Media] = {media_rate, media_burst};
  return l;
}

} // namespace

TEST(TokenBucket, BurstThenRefusedWithRetryAfter) {
  const Budget b{2, 5}; // 2 tokens a second, 5 at most
  TokenBucket t(b, 0);
  for (int i = 0; i < 5; ++i) {
    Decision d = t.take(b, 1, 0);
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_DOUBLE_EQ(d.limit, 5);
    EXPECT_DOUBLE_EQ(d.remaining, 4 - i);
    EXPECT_DOUBLE_EQ(d.reset_s, (i + 1) / 2.0);
  }
  Decision d = t.take(b, 1, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_DOUBLE_EQ(d.remaining, 0);
  EXPECT_DOUBLE_EQ(d.retry_after_s, 0.5);
  EXPECT_DOUBLE_EQ(d.reset_s, 2.5);
  // A refusal takes nothing: half a second later one token is back.
  EXPECT_FALSE(t.take(b, 1, kS / 4).allowed);
  d = t.take(b, 1, kS / 2);
  EXPECT_TRUE(d.allowed);
  EXPECT_DOUBLE_EQ(d.remaining, 0);
}

TEST(TokenBucket, RefillsUpToTheBurstOnly) {
  const Budget b{10, 3};
  TokenBucket t(b, 0);
  EXPECT_TRUE(t.take(b, 3, 0).allowed);
  EXPECT_DOUBLE_EQ(t.level(b, kS / 10), 1);
  EXPECT_DOUBLE_EQ(t.level(b, 100 * kS), 3); // never more than the burst
  Decision d = t.take(b, 1, 100 * kS);
  EXPECT_DOUBLE_EQ(d.remaining, 2);
  // A clock that goes back refills nothing.
  EXPECT_DOUBLE_EQ(t.level(b, 50 * kS), 2);
}

TEST(TokenBucket, TakesManyAtOnceAndMoreThanTheBurstWaitsForAFullBucket) {
  const Budget b{1000, 4000}; // bytes
  TokenBucket t(b, 0);
  EXPECT_TRUE(t.take(b, 3000, 0).allowed);
  Decision d = t.take(b, 2000, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_DOUBLE_EQ(d.remaining, 1000);
  EXPECT_DOUBLE_EQ(d.retry_after_s, 1.0);
  d = t.take(b, 9000, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_DOUBLE_EQ(d.retry_after_s, 3.0);
}

TEST(RateLimiter, CallersAndBudgetsAreSeparate) {
  RateLimiter r(limits(1, 2, 1, 1));
  EXPECT_TRUE(r.take(Kind::Api, "key a", 1, 0).allowed);
  EXPECT_TRUE(r.take(Kind::Api, "key a", 1, 0).allowed);
  EXPECT_FALSE(r.take(Kind::Api, "key a", 1, 0).allowed);
  // Another caller has its own bucket, and the same caller's media budget is untouched.
  EXPECT_TRUE(r.take(Kind::Api, "key b", 1, 0).allowed);
  EXPECT_TRUE(r.take(Kind::Media, "key a", 1, 0).allowed);
  EXPECT_FALSE(r.take(Kind::Media, "key a", 1, 0).allowed);
  // An off budget always allows and says no limit.
  Decision d = r.take(Kind::UploadStarts, "key a", 1, 0);
  EXPECT_TRUE(d.allowed);
  EXPECT_DOUBLE_EQ(d.limit, 0);
  EXPECT_FALSE(r.on(Kind::UploadStarts));
  EXPECT_TRUE(r.on(Kind::Api));
}

TEST(RateLimiter, IdleCallersAreForgottenOnceTheirBucketsAreFull) {
  RateLimiter r(limits(1, 10, 2, 4)); // the slowest to refill: 10 s
  for (int i = 0; i < 10; ++i)
    r.take(Kind::Api, "address 10.0.0.1", 1, 0);
  r.take(Kind::Api, "address 10.0.0.2", 1, 5 * kS);
  EXPECT_EQ(r.callers(), 2u);
  // 9.9 s later the first is not full yet: still there, with its tokens.
  EXPECT_TRUE(r.take(Kind::Api, "address 10.0.0.3", 1, 9 * kS + kS * 9 / 10).allowed);
  EXPECT_EQ(r.callers(), 3u);
  // At 10 s it is full again and forgotten; forgetting it loses nothing: it starts with a full bucket.
  r.take(Kind::Api, "address 10.0.0.3", 1, 10 * kS);
  EXPECT_EQ(r.callers(), 2u);
  Decision d = r.take(Kind::Api, "address 10.0.0.1", 1, 10 * kS);
  EXPECT_DOUBLE_EQ(d.remaining, 9);
  EXPECT_EQ(r.evicted(), 0u);
}

TEST(RateLimiter, TheNumberOfCallersIsBounded) {
  Limits l = limits(1, 100);
  l.max_callers = 3;
  RateLimiter r(l);
  r.take(Kind::Api, "a", 50, 0);
  r.take(Kind::Api, "b", 1, 1);
  r.take(Kind::Api, "c", 1, 2);
  r.take(Kind::Api, "a", 1, 3); // a is the most recently seen now; b the least
  r.take(Kind::Api, "d", 1, 4);
  EXPECT_EQ(r.callers(), 3u);
  EXPECT_EQ(r.evicted(), 1u);
  // a kept its spent tokens (49 left, then one more taken); b was the one made room for.
  EXPECT_DOUBLE_EQ(std::floor(r.take(Kind::Api, "a", 1, 5).remaining), 48);
  for (int i = 0; i < 1000; ++i)
    r.take(Kind::Api, "flood " + std::to_string(i), 1, 10 + i);
  EXPECT_EQ(r.callers(), 3u);
}
