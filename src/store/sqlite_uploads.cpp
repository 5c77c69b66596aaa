// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog: resumable uploads while they arrive, and direct uploads.
#include "store/sqlite_internal.h"

namespace sluice::store::sqlite {

namespace {

#define UPLOAD_COLUMNS                                                                                                 \
  "id, length, received, metadata, concat, state, video_id, error_code, error, direct_id, created, expires, "          \
  "multipart, parts, holder, held_from"
#define DIRECT_COLUMNS "id, token_hash, max_size, origin, metadata, upload_id, created, expires"

ResumableUpload read_upload(const Query &q) {
  ResumableUpload u;
  u.id = q.text(0);
  u.length = q.int64(1);
  u.offset = q.int64(2);
  u.metadata = q.text(3);
  u.concat = q.text(4);
  u.state = q.text(5);
  u.video_id = q.text(6);
  u.error_code = q.text(7);
  u.error = q.text(8);
  u.direct_id = q.text(9);
  u.created = q.int64(10);
  u.expires = q.int64(11);
  u.multipart = q.text(12);
  u.parts = decode_parts(q.text(13));
  u.holder = q.text(14);
  u.held_from = q.int64(15);
  return u;
}

DirectUpload read_direct(const Query &q) {
  DirectUpload d;
  d.id = q.text(0);
  d.token_hash = q.text(1);
  d.max_size = q.int64(2);
  d.origin = q.text(3);
  d.metadata_json = q.text(4);
  d.upload_id = q.text(5);
  d.created = q.int64(6);
  d.expires = q.int64(7);
  return d;
}

} // namespace

void SqliteStore::prepare_uploads() {
  add_upload_ = prepare("INSERT INTO uploads (" UPLOAD_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                        "?11, ?12, ?13, ?14, ?15, ?16)");
  upload_ = prepare("SELECT " UPLOAD_COLUMNS " FROM uploads WHERE id = ?1");
  update_upload_ = prepare("UPDATE uploads SET length = ?2, received = ?3, state = ?4, video_id = ?5, error_code = ?6, "
                           "error = ?7, multipart = ?8, parts = ?9, held_from = ?10 WHERE id = ?1 AND holder = ?11");
  take_upload_ = prepare("UPDATE uploads SET holder = ?2, received = ?3, held_from = ?4 WHERE id = ?1 AND holder = ?5 "
                         "AND parts = ?6 AND state = 'receiving'");
  delete_upload_ = prepare("DELETE FROM uploads WHERE id = ?1");
  uploads_ = prepare("SELECT " UPLOAD_COLUMNS " FROM uploads ORDER BY created ASC, rowid ASC");
  add_direct_ = prepare("INSERT INTO direct_uploads (" DIRECT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  direct_by_hash_ = prepare("SELECT " DIRECT_COLUMNS " FROM direct_uploads WHERE token_hash = ?1");
  claim_direct_ = prepare("UPDATE direct_uploads SET upload_id = ?2 WHERE id = ?1 AND upload_id = ''");
  forget_direct_ = prepare("DELETE FROM direct_uploads WHERE expires < ?1");
}

void SqliteStore::add_upload(const ResumableUpload &u) {
  write([&] {
    Query q = query(add_upload_, "add an upload");
    q.bind(1, u.id).bind(2, u.length).bind(3, u.offset).bind(4, u.metadata).bind(5, u.concat).bind(6, u.state);
    q.bind(7, u.video_id).bind(8, u.error_code).bind(9, u.error).bind(10, u.direct_id).bind(11, u.created);
    q.bind(12, u.expires).bind(13, u.multipart).bind(14, encode_parts(u.parts)).bind(15, u.holder);
    q.bind(16, u.held_from);
    q.run();
  });
}

std::optional<ResumableUpload> SqliteStore::upload(const std::string &id) {
  Query q = query(upload_, "read an upload");
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_upload(q);
}

bool SqliteStore::update_upload(const ResumableUpload &u) {
  return write([&] {
    Query q = query(update_upload_, "update an upload");
    q.bind(1, u.id).bind(2, u.length).bind(3, u.offset).bind(4, u.state).bind(5, u.video_id);
    q.bind(6, u.error_code).bind(7, u.error).bind(8, u.multipart).bind(9, encode_parts(u.parts));
    q.bind(10, u.held_from).bind(11, u.holder);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

bool SqliteStore::take_upload(const ResumableUpload &u, const std::string &from) {
  return write([&] {
    Query q = query(take_upload_, "take an upload over");
    q.bind(1, u.id).bind(2, u.holder).bind(3, u.offset).bind(4, u.held_from).bind(5, from);
    q.bind(6, encode_parts(u.parts));
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

bool SqliteStore::delete_upload(const std::string &id) {
  return write([&] {
    Query q = query(delete_upload_, "delete an upload");
    q.bind(1, id);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

std::vector<ResumableUpload> SqliteStore::uploads() {
  std::vector<ResumableUpload> out;
  Query q = query(uploads_, "list the uploads");
  while (q.step())
    out.push_back(read_upload(q));
  return out;
}

void SqliteStore::add_direct_upload(const DirectUpload &d) {
  write([&] {
    Query q = query(add_direct_, "add a direct upload");
    q.bind(1, d.id).bind(2, d.token_hash).bind(3, d.max_size).bind(4, d.origin).bind(5, d.metadata_json);
    q.bind(6, d.upload_id).bind(7, d.created).bind(8, d.expires);
    q.run();
  });
}

std::optional<DirectUpload> SqliteStore::direct_upload_by_hash(const std::string &token_hash) {
  Query q = query(direct_by_hash_, "read a direct upload");
  q.bind(1, token_hash);
  if (!q.step())
    return std::nullopt;
  return read_direct(q);
}

bool SqliteStore::claim_direct_upload(const std::string &id, const std::string &upload_id) {
  return write([&] {
    Query q = query(claim_direct_, "use a direct upload");
    q.bind(1, id).bind(2, upload_id);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

void SqliteStore::forget_direct_uploads(std::int64_t when) {
  write([&] {
    Query q = query(forget_direct_, "forget expired direct uploads");
    q.bind(1, when);
    q.run();
  });
}

} // namespace sluice::store::sqlite
