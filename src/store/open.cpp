// SPDX-License-Identifier: LGPL-2.1-or-later
// [store] url: which backend a catalog url names, the url without its password, and opening it.
#include "store/store.h"

#include "core/error.h"
#include "core/fs.h"

#include <libpq-fe.h>

#include <memory>
#include <string>

namespace sluice::store {

namespace {

constexpr const char kSqliteScheme[] = "sqlite://";

bool starts_with(const std::string &s, const char *prefix) {
  return s.rfind(prefix, 0) == 0;
}

bool is_postgres_uri(const std::string &url) {
  return starts_with(url, "postgresql://") || starts_with(url, "postgres://");
}

// A libpq keyword string ("host=/run/pg dbname=sluice") has a '=' and no scheme.
bool is_keyword_string(const std::string &url) {
  return url.find('=') != std::string::npos && url.find("://") == std::string::npos;
}

struct ConninfoFree {
  void operator()(PQconninfoOption *o) const { PQconninfoFree(o); }
};
using ConninfoPtr = std::unique_ptr<PQconninfoOption, ConninfoFree>;

// libpq's own parse of a connection string; null with its reason in `why` when it is malformed.
ConninfoPtr parse_conninfo(const std::string &url, std::string &why) {
  char *err = nullptr;
  ConninfoPtr opts(PQconninfoParse(url.c_str(), &err));
  if (!opts) {
    why = err ? err : "out of memory";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
      why.pop_back();
  }
  PQfreemem(err);
  return opts;
}

} // namespace

Backend check_url(const std::string &url) {
  if (url.empty())
    return Backend::Sqlite;
  if (starts_with(url, kSqliteScheme)) {
    if (url.size() == sizeof kSqliteScheme - 1)
      throw Error(ErrorCode::Invalid, "[store] url: sqlite:// needs a path (sqlite:///var/lib/sluice/sluice.db)");
    return Backend::Sqlite;
  }
  if (is_postgres_uri(url) || is_keyword_string(url)) {
    std::string why;
    if (!parse_conninfo(url, why))
      throw Error(ErrorCode::Invalid, "[store] url: not a PostgreSQL connection string (" + why + ")");
    return Backend::Postgres;
  }
  throw Error(ErrorCode::Invalid, "[store] url: expected sqlite:///PATH, postgresql://... or a libpq keyword string, "
                                  "got '" +
                                      redact_url(url) + "'");
}

std::string redact_url(const std::string &url) {
  if (url.empty() || starts_with(url, kSqliteScheme))
    return url;
  std::string why;
  ConninfoPtr opts;
  if (is_postgres_uri(url) || is_keyword_string(url))
    opts = parse_conninfo(url, why);
  if (!opts) {
    // Not parsed: only what comes before any credentials is shown.
    auto scheme = url.find("://");
    return scheme == std::string::npos ? std::string("(a connection string, not shown)")
                                       : url.substr(0, scheme + 3) + "...";
  }
  // What libpq read from it, keyword by keyword, the password masked: the same words whatever the url's form.
  std::string out;
  for (const PQconninfoOption *o = opts.get(); o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    if (!out.empty())
      out += ' ';
    out += o->keyword;
    out += '=';
    out += std::string(o->keyword) == "password" ? "***" : o->val;
  }
  return out.empty() ? "(PostgreSQL defaults)" : out;
}

std::unique_ptr<Store> open(const std::string &url, const std::string &data_dir, int timeout_s) {
  if (check_url(url) == Backend::Postgres)
    return open_postgres(url, timeout_s);
  if (url.empty())
    return open_sqlite(fs::join(data_dir, "sluice.db"));
  std::string path = url.substr(sizeof kSqliteScheme - 1);
  return open_sqlite(path[0] == '/' ? path : fs::join(data_dir, path));
}

} // namespace sluice::store
