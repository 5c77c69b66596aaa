// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog's webhooks: endpoints, and the outbox of their deliveries (fan-out, claims, outcomes).
#include "store/sqlite_internal.h"
#include "store/webhooks_internal.h"

namespace sluice::store::sqlite {

namespace {

Webhook read_webhook(const Query &q, int first = 0) {
  Webhook w;
  w.id = q.text(first);
  w.url = q.text(first + 1);
  w.events = split_names(q.text(first + 2));
  w.description = q.text(first + 3);
  w.secret = q.text(first + 4);
  w.previous_secret = q.text(first + 5);
  w.previous_until = q.int64(first + 6);
  w.created = q.int64(first + 7);
  return w;
}

Delivery read_delivery(const Query &q) {
  Delivery d;
  d.seq = q.int64(0);
  d.id = q.text(1);
  d.event_id = q.text(2);
  d.webhook_id = q.text(3);
  d.type = q.text(4);
  d.subject = q.text(5);
  d.created = q.int64(6);
  d.state = q.text(7);
  d.attempts = q.int32(8);
  d.next_attempt = q.int64(9);
  d.leased_until = q.int64(10);
  d.last_status = q.int32(11);
  d.last_error = q.text(12);
  d.last_attempt = q.int64(13);
  d.body = q.text(14);
  return d;
}

} // namespace

void SqliteStore::prepare_webhooks() {
  add_webhook_ = prepare("INSERT INTO webhooks (" SLUICE_WEBHOOK_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  webhook_ = prepare("SELECT " SLUICE_WEBHOOK_COLUMNS " FROM webhooks WHERE id = ?1");
  webhooks_ = prepare("SELECT " SLUICE_WEBHOOK_COLUMNS " FROM webhooks ORDER BY created, rowid");
  delete_deliveries_ = prepare("DELETE FROM webhook_deliveries WHERE webhook_id = ?1");
  delete_webhook_ = prepare("DELETE FROM webhooks WHERE id = ?1");
  rotate_secret_ = prepare("UPDATE webhooks SET previous_secret = secret, previous_until = ?3, secret = ?2 "
                           "WHERE id = ?1");
  deliveries_ = prepare("SELECT " SLUICE_DELIVERY_COLUMNS
                        " FROM webhook_deliveries WHERE webhook_id = ?1 ORDER BY seq DESC LIMIT ?2");
  // One row per endpoint whose list of types has this one; the delivery's id is the event's and the endpoint's.
  fan_out_ = prepare("INSERT INTO webhook_deliveries (id, event_id, webhook_id, type, subject, created, next_attempt) "
                     "SELECT ?1 || id, ?1, id, ?2, ?3, ?4, ?4 FROM webhooks "
                     "WHERE instr(',' || events || ',', ',' || ?2 || ',') > 0 ORDER BY created, rowid");
  // The oldest pending delivery of each endpoint, when it is due and not leased: an endpoint's deliveries in order.
  due_deliveries_ = prepare("SELECT d.seq FROM webhook_deliveries d WHERE d.state = 'pending' AND d.next_attempt <= ?1 "
                            "AND d.leased_until < ?1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e "
                            "WHERE e.webhook_id = d.webhook_id AND e.state = 'pending' AND e.seq < d.seq) "
                            "ORDER BY d.seq LIMIT ?2");
  claim_delivery_ = prepare("UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = ?2 "
                            "WHERE seq = ?1 AND state = 'pending' RETURNING " SLUICE_DELIVERY_COLUMNS);
  prune_deliveries_ = prepare("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND last_attempt < ?1");
  finish_delivery_ = prepare("UPDATE webhook_deliveries SET state = ?3, next_attempt = ?4, last_status = ?5, "
                             "last_error = ?6, last_attempt = ?7, leased_until = 0, "
                             "body = CASE WHEN body = '' THEN ?8 ELSE body END "
                             "WHERE seq = ?1 AND attempts = ?2 AND state = 'pending'");
}

int SqliteStore::fan_out(const OutboxEvent &e, std::int64_t now) {
  Query q = query(fan_out_, "write the " + e.type + " event of " + e.subject);
  q.bind(1, new_id()).bind(2, e.type).bind(3, e.subject).bind(4, now);
  q.run();
  return sqlite3_changes(db_.get());
}

void SqliteStore::job_end_events(const Job &j) {
  const std::int64_t when = j.finished ? j.finished : g_get_real_time();
  if (j.state == JobState::Succeeded) {
    fan_out({"job.succeeded", j.id}, when);
    if (j.streaming)
      fan_out({"video.ready", j.video_id}, when);
  } else if (j.state == JobState::Failed) {
    fan_out({"job.failed", j.id}, when);
    if (j.streaming)
      fan_out({"video.failed", j.video_id}, when);
  }
}

void SqliteStore::add_webhook(const Webhook &w) {
  write([&] {
    Query q = query(add_webhook_, "add webhook " + w.id);
    q.bind(1, w.id).bind(2, w.url).bind(3, join_names(w.events)).bind(4, w.description).bind(5, w.secret);
    q.bind(6, w.previous_secret).bind(7, w.previous_until).bind(8, w.created);
    q.run();
  });
}

std::optional<Webhook> SqliteStore::webhook(const std::string &id) {
  Query q = query(webhook_, "read webhook " + id);
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_webhook(q);
}

std::vector<Webhook> SqliteStore::webhooks() {
  Query q = query(webhooks_, "list the webhooks");
  std::vector<Webhook> out;
  while (q.step())
    out.push_back(read_webhook(q));
  return out;
}

bool SqliteStore::delete_webhook(const std::string &id) {
  return write([&] {
    Transaction tx(*this);
    {
      Query q = query(delete_deliveries_, "delete the deliveries of webhook " + id);
      q.bind(1, id);
      q.run();
    }
    bool gone = false;
    {
      Query q = query(delete_webhook_, "delete webhook " + id);
      q.bind(1, id);
      q.run();
      gone = sqlite3_changes(db_.get()) > 0;
    }
    tx.commit();
    return gone;
  });
}

bool SqliteStore::rotate_webhook_secret(const std::string &id, const std::string &secret, std::int64_t previous_until) {
  return write([&] {
    Query q = query(rotate_secret_, "rotate the secret of webhook " + id);
    q.bind(1, id).bind(2, secret).bind(3, previous_until);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

std::vector<Delivery> SqliteStore::deliveries(const std::string &webhook_id, int limit) {
  Query q = query(deliveries_, "list the deliveries of webhook " + webhook_id);
  q.bind(1, webhook_id).bind(2, limit);
  std::vector<Delivery> out;
  while (q.step())
    out.push_back(read_delivery(q));
  return out;
}

int SqliteStore::add_events(const std::vector<OutboxEvent> &events, std::int64_t now) {
  return write([&] {
    Transaction tx(*this);
    int n = 0;
    for (const auto &e : events)
      n += fan_out(e, now);
    tx.commit();
    return n;
  });
}

std::vector<ClaimedDelivery> SqliteStore::claim_deliveries(std::int64_t now, std::int64_t lease_us, int limit) {
  return write([&] {
    // One writer at a time (BEGIN IMMEDIATE): the heads are chosen and taken together.
    Transaction tx(*this);
    std::vector<std::int64_t> due;
    {
      Query q = query(due_deliveries_, "find due webhook deliveries");
      q.bind(1, now).bind(2, limit);
      while (q.step())
        due.push_back(q.int64(0));
    }
    if (prune_deliveries_due()) {
      Query q = query(prune_deliveries_, "forget old webhook deliveries");
      q.bind(1, now - kKeepDeliveries);
      q.run();
    }
    std::vector<ClaimedDelivery> out;
    for (std::int64_t seq : due) {
      ClaimedDelivery c;
      {
        Query q = query(claim_delivery_, "claim a webhook delivery");
        q.bind(1, seq).bind(2, now + lease_us);
        if (!q.step())
          continue;
        c.delivery = read_delivery(q);
        while (q.step()) {
        }
      }
      Query w = query(webhook_, "read webhook " + c.delivery.webhook_id);
      w.bind(1, c.delivery.webhook_id);
      if (!w.step())
        continue;
      c.webhook = read_webhook(w);
      out.push_back(std::move(c));
    }
    tx.commit();
    return out;
  });
}

bool SqliteStore::finish_delivery(const Delivery &d) {
  return write([&] {
    Query q = query(finish_delivery_, "write the outcome of webhook delivery " + d.id);
    q.bind(1, d.seq).bind(2, d.attempts).bind(3, d.state).bind(4, d.next_attempt).bind(5, d.last_status);
    q.bind(6, d.last_error).bind(7, d.last_attempt).bind(8, d.body);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

} // namespace sluice::store::sqlite
