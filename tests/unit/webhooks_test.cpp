// SPDX-License-Identifier: LGPL-2.1-or-later
// Unit tests of webhooks' rules: the signature (against HMAC-SHA256 computed by Python's hmac), the secrets that sign
// during a rotation, which addresses are public, the checks of an endpoint, and the backoff's bounds.

#include "app/webhooks.h"

#include <gio/gio.h>
#include <gtest/gtest.h>

#include <string>

namespace {

using namespace sluice;

bool is_public(const char *text) {
  GInetAddress *a = g_inet_address_new_from_string(text);
  EXPECT_NE(a, nullptr) << text;
  const bool ok = a && app::is_public_address(a);
  if (a)
    g_object_unref(a);
  return ok;
}

TEST(Webhooks, SignatureIsHmacSha256OfTimeDotBody) {
  // python3 -c 'import hmac, hashlib; print(hmac.new(b"whsec_test", b"1767225600.{\"id\":\"x\"}",
  // hashlib.sha256).hexdigest())'
  EXPECT_EQ(app::webhook_signature(1767225600, R"({"id":"x"})", {"whsec_test"}),
            "t=1767225600,v1=f2a0e9cc79f6a8d5063bc6718561e872509983827740ea4ee5622da1c7e8d2b4");
  EXPECT_EQ(app::webhook_signature(1767225600, R"({"id":"x"})", {"whsec_test", "old"}),
            "t=1767225600,v1=f2a0e9cc79f6a8d5063bc6718561e872509983827740ea4ee5622da1c7e8d2b4,"
            "v1=224e9e025646be44fcd97b3993f7d4e158f197c6808b6facf01484b5570e7842");
}

TEST(Webhooks, ThePreviousSecretSignsUntilTheGraceEnds) {
  store::Webhook w;
  w.secret = "new";
  EXPECT_EQ(app::signing_secrets(w, 100), std::vector<std::string>{"new"});
  w.previous_secret = "old";
  w.previous_until = 200;
  EXPECT_EQ(app::signing_secrets(w, 100), (std::vector<std::string>{"new", "old"}));
  EXPECT_EQ(app::signing_secrets(w, 200), std::vector<std::string>{"new"});
  const std::string s = app::new_webhook_secret();
  EXPECT_EQ(s.size(), 6u + 64u);
  EXPECT_EQ(s.rfind("whsec_", 0), 0u);
  EXPECT_NE(s, app::new_webhook_secret());
}

TEST(Webhooks, OnlyPublicAddressesArePublic) {
  for (const char *a : {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                        "169.254.169.254", "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::1",
                        "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "ff02::1"})
    EXPECT_FALSE(is_public(a)) << a;
  for (const char *a : {"8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"})
    EXPECT_TRUE(is_public(a)) << a;
}

TEST(Webhooks, AnEndpointsFieldsAreChecked) {
  app::WebhookRequest ok{"https://hooks.example.com/in", {"video.ready", "job.failed"}, "CMS"};
  EXPECT_FALSE(app::check_webhook(ok, false));
  auto field = [](app::WebhookRequest r, bool allow_private = false) {
    auto f = app::check_webhook(r, allow_private);
    return f ? f->field : std::string("accepted");
  };
  app::WebhookRequest r = ok;
  for (const char *url : {"", "ftp://x.example/", "https://", "https://u:p@x.example/", "x", "http://127.0.0.1:8080/",
                          "http://localhost/", "http://a.localhost/", "http://[::1]/", "http://192.168.0.10/"}) {
    r.url = url;
    EXPECT_EQ(field(r), "url") << url;
  }
  r.url = "http://127.0.0.1:8080/";
  EXPECT_EQ(field(r, true), "accepted");
  r = ok;
  r.events = {};
  EXPECT_EQ(field(r), "events");
  r.events = {"video.ready", "video.ready"};
  EXPECT_EQ(field(r), "events");
  r.events = {"video.deleted"};
  EXPECT_EQ(field(r), "events");
  r = ok;
  r.description = std::string(1001, 'x');
  EXPECT_EQ(field(r), "description");
}

TEST(Webhooks, BackoffDoublesUpToTheCapWithJitter) {
  for (int i = 0; i < 200; i++) {
    const std::int64_t first = app::webhook_backoff_us(1, 10, 3600);
    EXPECT_GE(first, 5'000'000);
    EXPECT_LE(first, 10'000'000);
    const std::int64_t third = app::webhook_backoff_us(3, 10, 3600);
    EXPECT_GE(third, 20'000'000);
    EXPECT_LE(third, 40'000'000);
    const std::int64_t late = app::webhook_backoff_us(40, 10, 3600);
    EXPECT_GE(late, 1800'000'000);
    EXPECT_LE(late, 3600'000'000);
  }
  EXPECT_TRUE(app::webhook_status_retried(500));
  EXPECT_TRUE(app::webhook_status_retried(503));
  EXPECT_TRUE(app::webhook_status_retried(408));
  EXPECT_TRUE(app::webhook_status_retried(429));
  EXPECT_FALSE(app::webhook_status_retried(400));
  EXPECT_FALSE(app::webhook_status_retried(404));
  EXPECT_FALSE(app::webhook_status_retried(301));
}

} // namespace
