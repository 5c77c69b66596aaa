// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog's webhooks: endpoints, and the outbox of their deliveries, claimed across processes with
// FOR UPDATE SKIP LOCKED and a lease, like jobs.
#include "store/pg_internal.h"
#include "store/webhooks_internal.h"

namespace sluice::store::pg {

namespace {

Webhook read_webhook(const Rows &r, int row, int first = 0) {
  Webhook w;
  w.id = r.text(row, first);
  w.url = r.text(row, first + 1);
  w.events = split_names(r.text(row, first + 2));
  w.description = r.text(row, first + 3);
  w.secret = r.text(row, first + 4);
  w.previous_secret = r.text(row, first + 5);
  w.previous_until = r.int64(row, first + 6);
  w.created = r.int64(row, first + 7);
  return w;
}

Delivery read_delivery(const Rows &r, int row) {
  Delivery d;
  d.seq = r.int64(row, 0);
  d.id = r.text(row, 1);
  d.event_id = r.text(row, 2);
  d.webhook_id = r.text(row, 3);
  d.type = r.text(row, 4);
  d.subject = r.text(row, 5);
  d.created = r.int64(row, 6);
  d.state = r.text(row, 7);
  d.attempts = r.int32(row, 8);
  d.next_attempt = r.int64(row, 9);
  d.leased_until = r.int64(row, 10);
  d.last_status = r.int32(row, 11);
  d.last_error = r.text(row, 12);
  d.last_attempt = r.int64(row, 13);
  d.body = r.text(row, 14);
  return d;
}

} // namespace

int PgStore::fan_out(const OutboxEvent &e, std::int64_t now) {
  // One row per endpoint whose list of types has this one; the delivery's id is the event's and the endpoint's.
  return static_cast<int>(
      write("INSERT INTO webhook_deliveries (id, event_id, webhook_id, type, subject, created, next_attempt) "
            "SELECT $1::text || id, $1::text, id, $2::text, $3::text, $4::bigint, $4::bigint FROM webhooks "
            "WHERE position(',' || $2::text || ',' in ',' || events || ',') > 0 ORDER BY created, id",
            {new_id(), e.type, e.subject, now}, "write the " + e.type + " event of " + e.subject)
          .changed());
}

void PgStore::add_webhook(const Webhook &w) {
  write("INSERT INTO webhooks (" SLUICE_WEBHOOK_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {w.id, w.url, join_names(w.events), w.description, w.secret, w.previous_secret, w.previous_until, w.created},
        "add webhook " + w.id);
}

std::optional<Webhook> PgStore::webhook(const std::string &id) {
  Rows r = query("SELECT " SLUICE_WEBHOOK_COLUMNS " FROM webhooks WHERE id = $1", {id}, "read webhook " + id);
  if (r.size() == 0)
    return std::nullopt;
  return read_webhook(r, 0);
}

std::vector<Webhook> PgStore::webhooks() {
  Rows r = query("SELECT " SLUICE_WEBHOOK_COLUMNS " FROM webhooks ORDER BY created, id", {}, "list the webhooks");
  std::vector<Webhook> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_webhook(r, i));
  return out;
}

bool PgStore::delete_webhook(const std::string &id) {
  // One statement: the endpoint and its deliveries go together.
  Rows r = write("WITH d AS (DELETE FROM webhook_deliveries WHERE webhook_id = $1) "
                 "DELETE FROM webhooks WHERE id = $1",
                 {id}, "delete webhook " + id);
  return r.changed() > 0;
}

bool PgStore::rotate_webhook_secret(const std::string &id, const std::string &secret, std::int64_t previous_until) {
  return write("UPDATE webhooks SET previous_secret = secret, previous_until = $3, secret = $2 WHERE id = $1",
               {id, secret, previous_until}, "rotate the secret of webhook " + id)
             .changed() > 0;
}

std::vector<Delivery> PgStore::deliveries(const std::string &webhook_id, int limit) {
  Rows r = query("SELECT " SLUICE_DELIVERY_COLUMNS " FROM webhook_deliveries WHERE webhook_id = $1 "
                 "ORDER BY seq DESC LIMIT $2",
                 {webhook_id, limit}, "list the deliveries of webhook " + webhook_id);
  std::vector<Delivery> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_delivery(r, i));
  return out;
}

int PgStore::add_events(const std::vector<OutboxEvent> &events, std::int64_t now) {
  std::lock_guard lock(mu_);
  Transaction tx(*this);
  int n = 0;
  for (const auto &e : events)
    n += fan_out(e, now);
  tx.commit();
  return n;
}

std::vector<ClaimedDelivery> PgStore::claim_deliveries(std::int64_t now, std::int64_t lease_us, int limit) {
  if (prune_deliveries_due())
    write("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND last_attempt < $1::bigint",
          {now - kKeepDeliveries}, "forget old webhook deliveries");
  // One statement. The candidates are the oldest pending delivery of each endpoint (an endpoint's deliveries go out
  // in order; one being attempted holds the ones after it), due and not leased; rows another process is claiming are
  // skipped, not waited for. The outer conditions are checked again on a row changed meanwhile.
  Rows r = write("WITH c AS (UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = $2::bigint "
                 "WHERE seq IN (SELECT d.seq FROM webhook_deliveries d WHERE d.state = 'pending' "
                 "AND d.next_attempt <= $1::bigint AND d.leased_until < $1::bigint AND NOT EXISTS (SELECT 1 FROM "
                 "webhook_deliveries e WHERE e.webhook_id = d.webhook_id AND e.state = 'pending' AND e.seq < d.seq) "
                 "ORDER BY d.seq LIMIT $3 FOR UPDATE SKIP LOCKED) AND state = 'pending' "
                 "AND leased_until < $1::bigint RETURNING " SLUICE_DELIVERY_COLUMNS ") "
                 "SELECT c.*, w.id, w.url, w.events, w.description, w.secret, w.previous_secret, w.previous_until, "
                 "w.created FROM c JOIN webhooks w ON w.id = c.webhook_id ORDER BY c.seq",
                 {now, now + lease_us, limit}, "claim webhook deliveries");
  std::vector<ClaimedDelivery> out;
  for (int i = 0; i < r.size(); i++) {
    ClaimedDelivery c;
    c.delivery = read_delivery(r, i);
    c.webhook = read_webhook(r, i, kDeliveryColumns);
    out.push_back(std::move(c));
  }
  return out;
}

bool PgStore::finish_delivery(const Delivery &d) {
  return write("UPDATE webhook_deliveries SET state = $3, next_attempt = $4, last_status = $5, last_error = $6, "
               "last_attempt = $7, leased_until = 0, body = CASE WHEN body = '' THEN $8 ELSE body END "
               "WHERE seq = $1 AND attempts = $2 AND state = 'pending'",
               {d.seq, d.attempts, d.state, d.next_attempt, d.last_status, d.last_error, d.last_attempt, d.body},
               "write the outcome of webhook delivery " + d.id)
             .changed() > 0;
}

} // namespace sluice::store::pg
