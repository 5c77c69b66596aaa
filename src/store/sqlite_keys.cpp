// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog: answers kept for Idempotency-Key retries, and API keys (kept as hashes).
#include "store/sqlite_internal.h"

namespace sluice::store::sqlite {

std::optional<StoredAnswer> SqliteStore::stored_answer(const std::string &scope, const std::string &key,
                                                       std::int64_t since) {
  Query q = query(answer_, "read a kept answer");
  q.bind(1, scope).bind(2, key).bind(3, since);
  if (!q.step())
    return std::nullopt;
  StoredAnswer a;
  a.scope = scope;
  a.key = key;
  a.fingerprint = q.text(0);
  a.status = q.int32(1);
  a.body = q.text(2);
  a.location = q.text(3);
  a.created = q.int64(4);
  return a;
}

void SqliteStore::store_answer(const StoredAnswer &a, std::int64_t forget_before) {
  write([&] {
    Transaction t(*this);
    {
      Query q = query(forget_answers_, "forget old answers");
      q.bind(1, forget_before);
      q.run();
    }
    {
      Query q = query(add_answer_, "keep an answer");
      q.bind(1, a.scope).bind(2, a.key).bind(3, a.fingerprint).bind(4, a.status).bind(5, a.body);
      q.bind(6, a.location).bind(7, a.created).bind(8, forget_before);
      q.run();
    }
    t.commit();
  });
}

namespace {

ApiKey read_key(const Query &q) {
  ApiKey k;
  k.name = q.text(0);
  k.hash = q.text(1);
  k.scopes = q.text(2);
  k.created = q.int64(3);
  k.last_used = q.int64(4);
  k.revoked = q.int64(5);
  return k;
}

} // namespace

void SqliteStore::add_key(const ApiKey &k) {
  for (const ApiKey &other : keys())
    if (other.name == k.name && !other.revoked)
      throw Error("a key named '" + k.name + "' exists already (revoke it first, or choose another name)");
  write([&] {
    Query q = query(add_key_, "add an API key");
    q.bind(1, k.name).bind(2, k.hash).bind(3, k.scopes).bind(4, k.created);
    q.run();
  });
}

std::optional<ApiKey> SqliteStore::key_by_hash(const std::string &hash) {
  Query q = query(key_by_hash_, "look up an API key");
  q.bind(1, hash);
  if (!q.step())
    return std::nullopt;
  return read_key(q);
}

std::vector<ApiKey> SqliteStore::keys() {
  Query q = query(keys_, "list the API keys");
  std::vector<ApiKey> out;
  while (q.step())
    out.push_back(read_key(q));
  return out;
}

bool SqliteStore::revoke_key(const std::string &name, std::int64_t when) {
  return write([&] {
    Query q = query(revoke_key_, "revoke an API key");
    q.bind(1, name).bind(2, when);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

void SqliteStore::touch_key(const std::string &hash, std::int64_t when) {
  write([&] {
    Query q = query(touch_key_, "note the use of an API key");
    q.bind(1, hash).bind(2, when);
    q.run();
  });
}

} // namespace sluice::store::sqlite
