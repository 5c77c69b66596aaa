// SPDX-License-Identifier: LGPL-2.1-or-later
// The PostgreSQL catalog: kept answers, API keys, resumable and direct uploads, live streams.
#include "store/pg_internal.h"

namespace sluice::store::pg {

namespace {

#define PG_UPLOAD_COLUMNS                                                                                              \
  "id, length, received, metadata, concat, state, video_id, error_code, error, direct_id, created, expires, "          \
  "multipart, parts, holder, held_from"
#define PG_DIRECT_COLUMNS "id, token_hash, max_size, origin, metadata, upload_id, created, expires"
#define PG_STREAM_COLUMNS "id, title, key_hash, pipeline, ladder, record, source, created"

ApiKey read_key(const Rows &r, int i) {
  ApiKey k;
  k.name = r.text(i, 0);
  k.hash = r.text(i, 1);
  k.scopes = r.text(i, 2);
  k.created = r.int64(i, 3);
  k.last_used = r.int64(i, 4);
  k.revoked = r.int64(i, 5);
  return k;
}

ResumableUpload read_upload(const Rows &r, int i) {
  ResumableUpload u;
  u.id = r.text(i, 0);
  u.length = r.int64(i, 1);
  u.offset = r.int64(i, 2);
  u.metadata = r.text(i, 3);
  u.concat = r.text(i, 4);
  u.state = r.text(i, 5);
  u.video_id = r.text(i, 6);
  u.error_code = r.text(i, 7);
  u.error = r.text(i, 8);
  u.direct_id = r.text(i, 9);
  u.created = r.int64(i, 10);
  u.expires = r.int64(i, 11);
  u.multipart = r.text(i, 12);
  u.parts = decode_parts(r.text(i, 13));
  u.holder = r.text(i, 14);
  u.held_from = r.int64(i, 15);
  return u;
}

DirectUpload read_direct(const Rows &r, int i) {
  DirectUpload d;
  d.id = r.text(i, 0);
  d.token_hash = r.text(i, 1);
  d.max_size = r.int64(i, 2);
  d.origin = r.text(i, 3);
  d.metadata_json = r.text(i, 4);
  d.upload_id = r.text(i, 5);
  d.created = r.int64(i, 6);
  d.expires = r.int64(i, 7);
  return d;
}

Stream read_stream(const Rows &r, int i) {
  Stream s;
  s.id = r.text(i, 0);
  s.title = r.text(i, 1);
  s.key_hash = r.text(i, 2);
  s.pipeline = r.text(i, 3);
  s.ladder = r.text(i, 4);
  s.record = r.int32(i, 5) != 0;
  s.source = r.text(i, 6);
  s.created = r.int64(i, 7);
  return s;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Answers kept for Idempotency-Key retries

std::optional<StoredAnswer> PgStore::stored_answer(const std::string &scope, const std::string &key,
                                                   std::int64_t since) {
  Rows r = query("SELECT fingerprint, status, body, location, created FROM answers "
                 "WHERE scope = $1 AND key = $2 AND created >= $3",
                 {scope, key, since}, "read a kept answer");
  if (r.size() == 0)
    return std::nullopt;
  StoredAnswer a;
  a.scope = scope;
  a.key = key;
  a.fingerprint = r.text(0, 0);
  a.status = r.int32(0, 1);
  a.body = r.text(0, 2);
  a.location = r.text(0, 3);
  a.created = r.int64(0, 4);
  return a;
}

void PgStore::store_answer(const StoredAnswer &a, std::int64_t forget_before) {
  std::lock_guard lock(mu_);
  Transaction t(*this);
  write("DELETE FROM answers WHERE created < $1", {forget_before}, "forget old answers");
  // The first answer under a key stays (a replay never replaces it), unless it is past forgetting.
  write("INSERT INTO answers (scope, key, fingerprint, status, body, location, created) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, key) DO UPDATE SET "
        "fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body, "
        "location = excluded.location, created = excluded.created WHERE answers.created < $8",
        {a.scope, a.key, a.fingerprint, a.status, a.body, a.location, a.created, forget_before}, "keep an answer");
  t.commit();
}

// ---------------------------------------------------------------------------------------------
// API keys

void PgStore::add_key(const ApiKey &k) {
  std::lock_guard lock(mu_);
  for (const ApiKey &other : keys())
    if (other.name == k.name && !other.revoked)
      throw Error("a key named '" + k.name + "' exists already (revoke it first, or choose another name)");
  write("INSERT INTO api_keys (name, hash, scopes, created) VALUES ($1, $2, $3, $4)",
        {k.name, k.hash, k.scopes, k.created}, "add an API key");
}

std::optional<ApiKey> PgStore::key_by_hash(const std::string &hash) {
  Rows r = query("SELECT " PG_KEY_COLUMNS " FROM api_keys WHERE hash = $1", {hash}, "look up an API key");
  if (r.size() == 0)
    return std::nullopt;
  return read_key(r, 0);
}

std::vector<ApiKey> PgStore::keys() {
  Rows r = query("SELECT " PG_KEY_COLUMNS " FROM api_keys ORDER BY id ASC", {}, "list the API keys");
  std::vector<ApiKey> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_key(r, i));
  return out;
}

bool PgStore::revoke_key(const std::string &name, std::int64_t when) {
  return write("UPDATE api_keys SET revoked = $2 WHERE name = $1 AND revoked = 0", {name, when}, "revoke an API key")
             .changed() > 0;
}

void PgStore::touch_key(const std::string &hash, std::int64_t when) {
  write("UPDATE api_keys SET last_used = $2 WHERE hash = $1", {hash, when}, "note the use of an API key");
}

// ---------------------------------------------------------------------------------------------
// Resumable and direct uploads

void PgStore::add_upload(const ResumableUpload &u) {
  write("INSERT INTO uploads (" PG_UPLOAD_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
        "$14, $15, $16)",
        {u.id, u.length, u.offset, u.metadata, u.concat, u.state, u.video_id, u.error_code, u.error, u.direct_id,
         u.created, u.expires, u.multipart, encode_parts(u.parts), u.holder, u.held_from},
        "add an upload");
}

std::optional<ResumableUpload> PgStore::upload(const std::string &id) {
  Rows r = query("SELECT " PG_UPLOAD_COLUMNS " FROM uploads WHERE id = $1", {id}, "read an upload");
  if (r.size() == 0)
    return std::nullopt;
  return read_upload(r, 0);
}

bool PgStore::update_upload(const ResumableUpload &u) {
  return write("UPDATE uploads SET length = $2, received = $3, state = $4, video_id = $5, error_code = $6, error = $7, "
               "multipart = $8, parts = $9, held_from = $10 WHERE id = $1 AND holder = $11",
               {u.id, u.length, u.offset, u.state, u.video_id, u.error_code, u.error, u.multipart,
                encode_parts(u.parts), u.held_from, u.holder},
               "update an upload")
             .changed() > 0;
}

bool PgStore::take_upload(const ResumableUpload &u, const std::string &from) {
  return write("UPDATE uploads SET holder = $2, received = $3, held_from = $4 WHERE id = $1 AND holder = $5 AND "
               "parts = $6 AND state = 'receiving'",
               {u.id, u.holder, u.offset, u.held_from, from, encode_parts(u.parts)}, "take an upload over")
             .changed() > 0;
}

bool PgStore::delete_upload(const std::string &id) {
  return write("DELETE FROM uploads WHERE id = $1", {id}, "delete an upload").changed() > 0;
}

std::vector<ResumableUpload> PgStore::uploads() {
  Rows r = query("SELECT " PG_UPLOAD_COLUMNS " FROM uploads ORDER BY created ASC, ord ASC", {}, "list the uploads");
  std::vector<ResumableUpload> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_upload(r, i));
  return out;
}

void PgStore::add_direct_upload(const DirectUpload &d) {
  write("INSERT INTO direct_uploads (" PG_DIRECT_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {d.id, d.token_hash, d.max_size, d.origin, d.metadata_json, d.upload_id, d.created, d.expires},
        "add a direct upload");
}

std::optional<DirectUpload> PgStore::direct_upload_by_hash(const std::string &token_hash) {
  Rows r = query("SELECT " PG_DIRECT_COLUMNS " FROM direct_uploads WHERE token_hash = $1", {token_hash},
                 "read a direct upload");
  if (r.size() == 0)
    return std::nullopt;
  return read_direct(r, 0);
}

bool PgStore::claim_direct_upload(const std::string &id, const std::string &upload_id) {
  return write("UPDATE direct_uploads SET upload_id = $2 WHERE id = $1 AND upload_id = ''", {id, upload_id},
               "use a direct upload")
             .changed() > 0;
}

void PgStore::forget_direct_uploads(std::int64_t when) {
  write("DELETE FROM direct_uploads WHERE expires < $1", {when}, "forget expired direct uploads");
}

// ---------------------------------------------------------------------------------------------
// Live streams

void PgStore::add_stream(const Stream &s) {
  write("INSERT INTO streams (" PG_STREAM_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {s.id, s.title, s.key_hash, s.pipeline, s.ladder, s.record ? 1 : 0, s.source, s.created}, "add a stream");
}

std::optional<Stream> PgStore::stream(const std::string &id) {
  Rows r = query("SELECT " PG_STREAM_COLUMNS " FROM streams WHERE id = $1", {id}, "read a stream");
  if (r.size() == 0)
    return std::nullopt;
  return read_stream(r, 0);
}

std::optional<Stream> PgStore::stream_by_key_hash(const std::string &key_hash) {
  Rows r = query("SELECT " PG_STREAM_COLUMNS " FROM streams WHERE key_hash = $1", {key_hash}, "look up a stream key");
  if (r.size() == 0)
    return std::nullopt;
  return read_stream(r, 0);
}

std::vector<Stream> PgStore::streams() {
  Rows r = query("SELECT " PG_STREAM_COLUMNS " FROM streams ORDER BY created ASC, ord ASC", {}, "list the streams");
  std::vector<Stream> out;
  for (int i = 0; i < r.size(); i++)
    out.push_back(read_stream(r, i));
  return out;
}

bool PgStore::delete_stream(const std::string &id) {
  return write("DELETE FROM streams WHERE id = $1", {id}, "delete a stream").changed() > 0;
}

} // namespace sluice::store::pg
