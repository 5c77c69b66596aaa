// SPDX-License-Identifier: LGPL-2.1-or-later
// The catalog tests' fixture on both backends: GetParam() is "sqlite" or "postgresql"; SetUp() opens `store` on a
// fresh SQLite file, or on a fresh database of the throwaway PostgreSQL server (pg_server.h; the test is skipped,
// saying why, when there is none). A fixture that adds to SetUp() returns when open_backend() did not open it.
#pragma once

#include "store/store.h"

#include <gtest/gtest.h>

#include "check.h"
#include "pg_server.h"

#include <memory>
#include <string>

namespace sluice::test {

class BackendTest : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override { open_backend(); }
  // Opens `store`; false when the test is skipped or failed.
  bool open_backend() {
    open_or_skip();
    return store != nullptr;
  }
  bool postgres() const { return GetParam() == "postgresql"; }
  // A second connection to the same catalog (another process's, as far as the catalog can tell).
  std::unique_ptr<store::Store> another() { return store::open(url, dir.path()); }

  TempDir dir;
  std::string url;
  std::unique_ptr<store::Store> store;

private:
  void open_or_skip() {
    if (postgres()) {
      PgServer &server = PgServer::get();
      if (!server.ok())
        GTEST_SKIP() << "no PostgreSQL server for the tests: " << server.why();
      url = server.new_database();
      ASSERT_FALSE(url.empty()) << server.why();
    } else {
      url = "sqlite://" + dir.file("catalog.db");
    }
    store = store::open(url, dir.path());
  }
};

inline std::string backend_name(const ::testing::TestParamInfo<std::string> &p) {
  return p.param;
}

} // namespace sluice::test

// Runs the fixture's TEST_Ps on both backends.
#define SLUICE_ON_BOTH_BACKENDS(Fixture)                                                                               \
  INSTANTIATE_TEST_SUITE_P(Backends, Fixture, ::testing::Values("sqlite", "postgresql"), ::sluice::test::backend_name)
