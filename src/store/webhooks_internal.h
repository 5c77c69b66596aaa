// SPDX-License-Identifier: LGPL-2.1-or-later
// What both catalogs' webhooks share: their columns, in the order the readers expect, and how long deliveries that
// ended are kept.
#pragma once

#include <cstdint>

namespace sluice::store {

#define SLUICE_WEBHOOK_COLUMNS "id, url, events, description, secret, previous_secret, previous_until, created"
#define SLUICE_DELIVERY_COLUMNS                                                                                        \
  "seq, id, event_id, webhook_id, type, subject, created, state, attempts, next_attempt, leased_until, "               \
  "last_status, last_error, last_attempt, body"
constexpr int kDeliveryColumns = 15; // in SLUICE_DELIVERY_COLUMNS

// Deliveries that ended are kept 30 days (GET /api/v1/webhooks/{id}/deliveries), forgotten by one claim in 600.
constexpr std::int64_t kKeepDeliveries = 30LL * 86400 * 1000000;
inline bool prune_deliveries_due() {
  static thread_local unsigned calls = 0;
  return calls++ % 600 == 599;
}

} // namespace sluice::store
