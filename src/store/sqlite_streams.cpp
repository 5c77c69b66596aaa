// SPDX-License-Identifier: LGPL-2.1-or-later
// The SQLite catalog: live streams.
#include "store/sqlite_internal.h"

namespace sluice::store::sqlite {

namespace {

#define STREAM_COLUMNS "id, title, key_hash, pipeline, ladder, record, source, created"

Stream read_stream(const Query &q) {
  Stream s;
  s.id = q.text(0);
  s.title = q.text(1);
  s.key_hash = q.text(2);
  s.pipeline = q.text(3);
  s.ladder = q.text(4);
  s.record = q.int32(5) != 0;
  s.source = q.text(6);
  s.created = q.int64(7);
  return s;
}

} // namespace

void SqliteStore::prepare_streams() {
  add_stream_ = prepare("INSERT INTO streams (" STREAM_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  stream_ = prepare("SELECT " STREAM_COLUMNS " FROM streams WHERE id = ?1");
  stream_by_key_ = prepare("SELECT " STREAM_COLUMNS " FROM streams WHERE key_hash = ?1");
  streams_ = prepare("SELECT " STREAM_COLUMNS " FROM streams ORDER BY created ASC, rowid ASC");
  delete_stream_ = prepare("DELETE FROM streams WHERE id = ?1");
}

void SqliteStore::add_stream(const Stream &s) {
  write([&] {
    Query q = query(add_stream_, "add a stream");
    q.bind(1, s.id).bind(2, s.title).bind(3, s.key_hash).bind(4, s.pipeline).bind(5, s.ladder);
    q.bind(6, s.record ? 1 : 0).bind(7, s.source).bind(8, s.created);
    q.run();
  });
}

std::optional<Stream> SqliteStore::stream(const std::string &id) {
  Query q = query(stream_, "read a stream");
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_stream(q);
}

std::optional<Stream> SqliteStore::stream_by_key_hash(const std::string &key_hash) {
  Query q = query(stream_by_key_, "look up a stream key");
  q.bind(1, key_hash);
  if (!q.step())
    return std::nullopt;
  return read_stream(q);
}

std::vector<Stream> SqliteStore::streams() {
  std::vector<Stream> out;
  Query q = query(streams_, "list the streams");
  while (q.step())
    out.push_back(read_stream(q));
  return out;
}

bool SqliteStore::delete_stream(const std::string &id) {
  return write([&] {
    Query q = query(delete_stream_, "delete a stream");
    q.bind(1, id);
    q.run();
    return sqlite3_changes(db_.get()) > 0;
  });
}

} // namespace sluice::store::sqlite
