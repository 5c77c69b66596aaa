// SPDX-License-Identifier: LGPL-2.1-or-later
// Delivering webhooks: the outbox claimed on the executor, each delivery built, checked, signed and POSTed with
// libsoup's client on the main loop, its outcome written back.
#include "http/webhooks_send.h"

#include "app/webhooks.h"
#include "core/json.h"
#include "http/log.h"
#include "http/views.h"
#include "jobs/scheduler.h"
#include "store/executor.h"

#include <gio/gio.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::http {

namespace {

constexpr int kBatch = 16;       // deliveries claimed at once
constexpr int kMaxInFlight = 64; // attempts at once (no claim beyond)

// What a delivery's data is made of, read on the executor.
struct Subject {
  std::optional<store::Video> video;
  std::vector<store::Job> jobs;
  std::optional<store::Job> job;
  std::optional<store::Stream> stream;
};

bool starts_with(const std::string &s, const char *prefix) {
  return g_str_has_prefix(s.c_str(), prefix);
}

} // namespace

struct WebhookSender::Attempt {
  WebhookSender *sender = nullptr; // null once the sender is gone: the chain only ends
  store::ClaimedDelivery c;
  std::string body;
  GCancellable *cancel = g_cancellable_new();
  SoupMessage *msg = nullptr;
  GInputStream *in = nullptr;
  guint deadline = 0;
  bool timed_out = false;
  std::string refused; // why the address was refused, "" if it was not
  int status = 0;

  ~Attempt() {
    if (deadline)
      g_source_remove(deadline);
    g_clear_object(&in);
    g_clear_object(&msg);
    g_clear_object(&cancel);
  }
  void refuse(const std::string &why) {
    refused = why;
    g_cancellable_cancel(cancel);
  }
};

WebhookSender::WebhookSender(const ServerConfig &config, app::Service &service) : config_(config), service_(service) {
  session_ = soup_session_new_with_options("timeout", static_cast<guint>(config.webhooks_timeout_s), "idle-timeout",
                                           60u, "user-agent", "sluice-webhooks", nullptr);
  // No proxy from the environment: the address checked is the one connected to.
  soup_session_set_proxy_resolver(session_, nullptr);
}

WebhookSender::~WebhookSender() {
  stop();
  *alive_ = false;
  soup_session_abort(session_);
  g_object_unref(session_);
}

void WebhookSender::start() {
  stopped_ = false;
  const guint ms = static_cast<guint>(std::max(50.0, config_.webhooks_poll_s * 1000));
  timer_ = g_timeout_add(ms, on_poll, this);
  poll();
}

void WebhookSender::stop() {
  stopped_ = true;
  if (timer_)
    g_source_remove(timer_);
  if (idle_)
    g_source_remove(idle_);
  timer_ = idle_ = 0;
  for (Attempt *a : attempts_) {
    a->sender = nullptr;
    g_cancellable_cancel(a->cancel);
  }
  attempts_.clear();
}

gboolean WebhookSender::on_poll(gpointer self) {
  static_cast<WebhookSender *>(self)->poll();
  return G_SOURCE_CONTINUE;
}

void WebhookSender::poll() {
  if (stopped_)
    return;
  if (claiming_) {
    again_ = true;
    return;
  }
  const int room = kMaxInFlight - static_cast<int>(attempts_.size());
  if (room <= 0)
    return;
  claiming_ = true;
  again_ = false;
  // An attempt's lease covers its build (a catalog read), its whole request and the write of its outcome.
  const std::int64_t lease =
      static_cast<std::int64_t>(config_.webhooks_timeout_s + 2 * config_.store_timeout_s + 30) * G_USEC_PER_SEC;
  service_.executor().run([now = g_get_real_time(), lease,
                           n = std::min(room, kBatch)](store::Store &s) { return s.claim_deliveries(now, lease, n); },
                          [this, alive = alive_](store::Outcome<std::vector<store::ClaimedDelivery>> &o) {
                            if (!*alive)
                              return;
                            claiming_ = false;
                            if (!o.ok()) {
                              SLUICE_LOG(http_log(), Warning, "webhooks: cannot claim deliveries: %s", o.error->what());
                              return;
                            }
                            for (auto &c : *o.value)
                              begin(std::move(c));
                            if (again_ || o.value->size() == static_cast<std::size_t>(kBatch))
                              poll();
                          });
}

void WebhookSender::begin(store::ClaimedDelivery c) {
  auto *a = new Attempt;
  a->sender = this;
  a->c = std::move(c);
  a->body = a->c.delivery.body;
  attempts_.insert(a);
  if (stopped_) {
    attempts_.erase(a);
    delete a;
    return;
  }
  if (a->body.empty())
    build(a);
  else
    resolve(a);
}

void WebhookSender::build(Attempt *a) {
  const std::string type = a->c.delivery.type, id = a->c.delivery.subject;
  service_.executor().run(
      [type, id](store::Store &s) {
        Subject sub;
        if (starts_with(type, "job.")) {
          sub.job = s.job(id);
        } else if (starts_with(type, "stream.")) {
          sub.stream = s.stream(id);
        } else if ((sub.video = s.video(id))) {
          store::JobFilter f;
          f.video_id = id;
          sub.jobs = s.jobs(f);
        }
        return sub;
      },
      [this, alive = alive_, a](store::Outcome<Subject> &o) {
        if (!*alive || !a->sender) {
          delete a;
          return;
        }
        if (!o.ok())
          return finish(a, 0, std::string("cannot read what the event is about: ") + o.error->what(), true);
        const store::Delivery &d = a->c.delivery;
        Subject &sub = *o.value;
        // The data: the video or job as the API shows it now; a stream's row with the state the event reports; only
        // the id of what is gone.
        JsonNode *data = nullptr;
        if (sub.video) {
          data = video_json(service_, service_.view(*sub.video, sub.jobs));
        } else if (sub.job) {
          data = job_json(service_, *sub.job);
        } else {
          JsonObject *so = json_object_new();
          json_object_set_string_member(so, "id", d.subject.c_str());
          if (sub.stream) {
            json_object_set_string_member(so, "title", sub.stream->title.c_str());
            json_object_set_string_member(so, "pipeline", sub.stream->pipeline.c_str());
            json_object_set_boolean_member(so, "record", sub.stream->record);
            json_object_set_string_member(so, "created", jobs::iso_time(sub.stream->created).c_str());
            json_object_set_string_member(so, "state", d.type == "stream.live" ? "live" : "ended");
          }
          data = json::object_node(so);
        }
        JsonObject *e = json_object_new();
        json_object_set_string_member(e, "id", d.event_id.c_str());
        json_object_set_string_member(e, "type", d.type.c_str());
        json_object_set_string_member(e, "created", jobs::iso_time(d.created).c_str());
        json_object_set_member(e, "data", data);
        json::Node root(json::object_node(e));
        a->body = json::to_string(root.get(), false);
        resolve(a);
      });
}

void WebhookSender::resolve(Attempt *a) {
  a->deadline = g_timeout_add_seconds(
      static_cast<guint>(config_.webhooks_timeout_s),
      [](gpointer p) {
        auto *at = static_cast<Attempt *>(p);
        at->deadline = 0;
        at->timed_out = true;
        g_cancellable_cancel(at->cancel);
        return G_SOURCE_REMOVE;
      },
      a);
  GUri *uri = g_uri_parse(a->c.webhook.url.c_str(), G_URI_FLAGS_NONE, nullptr);
  std::string host = uri && g_uri_get_host(uri) ? g_uri_get_host(uri) : "";
  if (uri)
    g_uri_unref(uri);
  if (host.empty())
    return finish(a, 0, "the url has no host", false);
  if (config_.webhooks_allow_private)
    return post(a);
  if (g_hostname_is_ip_address(host.c_str())) {
    GInetAddress *ia = g_inet_address_new_from_string(host.c_str());
    const bool ok = ia && app::is_public_address(ia);
    g_clear_object(&ia);
    if (!ok)
      return finish(
          a, 0, "refused: " + host + " is a loopback, private or link-local address ([webhooks] allow-private)", false);
    return post(a);
  }
  // Every address the name has must be public: one private among them could be the one connected to.
  g_autoptr(GResolver) resolver = g_resolver_get_default();
  g_resolver_lookup_by_name_async(
      resolver, host.c_str(), a->cancel,
      [](GObject *src, GAsyncResult *res, gpointer p) {
        auto *at = static_cast<Attempt *>(p);
        GError *err = nullptr;
        GList *addrs = g_resolver_lookup_by_name_finish(G_RESOLVER(src), res, &err);
        if (!at->sender) {
          g_clear_error(&err);
          g_resolver_free_addresses(addrs);
          delete at;
          return;
        }
        if (err) {
          std::string why =
              at->timed_out ? "timed out resolving the host" : std::string("cannot resolve the host: ") + err->message;
          g_error_free(err);
          return at->sender->finish(at, 0, why, true);
        }
        std::string bad;
        for (GList *l = addrs; l && bad.empty(); l = l->next)
          if (!app::is_public_address(G_INET_ADDRESS(l->data))) {
            g_autofree gchar *s = g_inet_address_to_string(G_INET_ADDRESS(l->data));
            bad = s;
          }
        g_resolver_free_addresses(addrs);
        if (!bad.empty())
          return at->sender->finish(
              at, 0, "refused: the host resolves to " + bad + ", a loopback, private or link-local address", false);
        at->sender->post(at);
      },
      a);
}

void WebhookSender::post(Attempt *a) {
  a->msg = soup_message_new("POST", a->c.webhook.url.c_str());
  if (!a->msg)
    return finish(a, 0, "the url is not one libsoup can send to", false);
  soup_message_add_flags(a->msg, SOUP_MESSAGE_NO_REDIRECT);
  const store::Delivery &d = a->c.delivery;
  const std::int64_t now = g_get_real_time();
  SoupMessageHeaders *h = soup_message_get_request_headers(a->msg);
  const std::string signature =
      app::webhook_signature(now / G_USEC_PER_SEC, a->body, app::signing_secrets(a->c.webhook, now));
  soup_message_headers_replace(h, "Sluice-Signature", signature.c_str());
  soup_message_headers_replace(h, "Sluice-Delivery", d.id.c_str());
  soup_message_headers_replace(h, "Sluice-Event", d.type.c_str());
  GBytes *bytes = g_bytes_new(a->body.data(), a->body.size());
  soup_message_set_request_body_from_bytes(a->msg, "application/json", bytes);
  g_bytes_unref(bytes);
  if (!config_.webhooks_allow_private) {
    // The address actually connected to, checked before a byte is sent: a name that resolved to a public address
    // above and to a private one now (DNS rebinding) is refused here.
    g_signal_connect(
        a->msg, "network-event", G_CALLBACK(+[](SoupMessage *, GSocketClientEvent event, GIOStream *conn, gpointer p) {
          if (event != G_SOCKET_CLIENT_CONNECTED || !G_IS_SOCKET_CONNECTION(conn))
            return;
          auto *at = static_cast<Attempt *>(p);
          GSocketAddress *remote = g_socket_connection_get_remote_address(G_SOCKET_CONNECTION(conn), nullptr);
          if (!remote || !G_IS_INET_SOCKET_ADDRESS(remote)) {
            g_clear_object(&remote);
            return at->refuse("refused: the connection's address is unknown");
          }
          GInetAddress *ia = g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(remote));
          if (!app::is_public_address(ia)) {
            g_autofree gchar *s = g_inet_address_to_string(ia);
            at->refuse(std::string("refused: connected to ") + s + ", a loopback, private or link-local address");
          }
          g_object_unref(remote);
        }),
        a);
  }
  soup_session_send_async(
      session_, a->msg, G_PRIORITY_DEFAULT, a->cancel,
      [](GObject *src, GAsyncResult *res, gpointer p) {
        auto *at = static_cast<Attempt *>(p);
        GError *err = nullptr;
        GInputStream *in = soup_session_send_finish(SOUP_SESSION(src), res, &err);
        if (!at->sender) {
          g_clear_error(&err);
          g_clear_object(&in);
          delete at;
          return;
        }
        at->sender->sent(at, in, err);
      },
      a);
}

void WebhookSender::sent(Attempt *a, GInputStream *in, GError *err) {
  if (err) {
    std::string why = !a->refused.empty() ? a->refused
                      : a->timed_out      ? "no answer within " + std::to_string(config_.webhooks_timeout_s) + " s"
                                          : std::string("cannot send: ") + err->message;
    g_error_free(err);
    return finish(a, 0, why, a->refused.empty());
  }
  a->in = in;
  a->status = static_cast<int>(soup_message_get_status(a->msg));
  // The answer's body is not wanted: it is read and dropped without blocking (bounded by the attempt's deadline), so
  // that the connection may serve the next delivery.
  g_input_stream_close_async(
      in, G_PRIORITY_DEFAULT, a->cancel,
      [](GObject *src, GAsyncResult *res, gpointer p) {
        auto *at = static_cast<Attempt *>(p);
        g_input_stream_close_finish(G_INPUT_STREAM(src), res, nullptr);
        if (!at->sender) {
          delete at;
          return;
        }
        const int s = at->status;
        if (s >= 200 && s < 300)
          return at->sender->finish(at, s, "", false);
        at->sender->finish(at, s, "answered " + std::to_string(s), app::webhook_status_retried(s));
      },
      a);
}

void WebhookSender::finish(Attempt *a, int status, const std::string &error, bool retry) {
  if (a->deadline)
    g_source_remove(a->deadline);
  a->deadline = 0;
  store::Delivery d = a->c.delivery;
  const std::int64_t now = g_get_real_time();
  d.last_attempt = now;
  d.last_status = status;
  d.last_error = error;
  d.body = a->body;
  if (status >= 200 && status < 300) {
    d.state = "succeeded";
  } else if (retry) {
    const std::int64_t next =
        now + app::webhook_backoff_us(d.attempts, config_.webhooks_backoff_base_s, config_.webhooks_backoff_max_s);
    if (next > d.created + static_cast<std::int64_t>(config_.webhooks_give_up_s) * G_USEC_PER_SEC) {
      d.state = "failed";
      d.last_error += " (given up: [webhooks] give-up-after)";
    } else {
      d.state = "pending";
      d.next_attempt = next;
    }
  } else {
    d.state = "failed";
  }
  SLUICE_LOG(http_log(), Info, "webhook %s: delivery %s (%s), attempt %d: %s%s", d.webhook_id.c_str(), d.id.c_str(),
             d.type.c_str(), d.attempts, d.state.c_str(), error.empty() ? "" : (": " + error).c_str());
  service_.executor().run([d](store::Store &s) { return s.finish_delivery(d); },
                          [this, alive = alive_, a, id = d.id](store::Outcome<bool> &o) {
                            if (!*alive || !a->sender) {
                              delete a;
                              return;
                            }
                            if (!o.ok())
                              SLUICE_LOG(http_log(), Warning,
                                         "webhooks: cannot write the outcome of delivery %s (it is attempted again "
                                         "once its lease runs out): %s",
                                         id.c_str(), o.error->what());
                            done(a);
                          });
}

void WebhookSender::done(Attempt *a) {
  attempts_.erase(a);
  delete a;
  // The endpoint's next delivery may be due now: a claim from the loop (not from here, which an inline executor may
  // have reached from a claim).
  if (!idle_ && !stopped_)
    idle_ = g_idle_add(
        [](gpointer p) {
          auto *self = static_cast<WebhookSender *>(p);
          self->idle_ = 0;
          self->poll();
          return G_SOURCE_REMOVE;
        },
        this);
}

} // namespace sluice::http
