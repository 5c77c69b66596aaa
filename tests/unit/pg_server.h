// SPDX-License-Identifier: LGPL-2.1-or-later
// A throwaway PostgreSQL server for the store tests: initdb + pg_ctl in a temp dir, a Unix socket only, one per test
// program (started on first use, stopped at the end), a fresh database per test.
#pragma once

#include "core/fs.h"

#include <glib.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace sluice::test {

// The first value of sql's answer on the database at conninfo; "" (and a test failure) when it fails.
inline std::string pg_value(const std::string &conninfo, const std::string &sql) {
  PGconn *c = PQconnectdb(conninfo.c_str());
  std::string out;
  if (PQstatus(c) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot connect to " << conninfo << ": " << PQerrorMessage(c);
  } else {
    PGresult *r = PQexec(c, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    else if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
      out = PQgetvalue(r, 0, 0);
    PQclear(r);
  }
  PQfinish(c);
  return out;
}

class PgServer {
public:
  // The server, started the first time it is asked for.
  static PgServer &get() {
    static PgServer server;
    return server;
  }
  bool ok() const { return ok_; }
  const std::string &why() const { return why_; }
  // A connection string to the server's maintenance database.
  std::string admin() const { return conninfo("postgres"); }
  std::string conninfo(const std::string &db) const { return "host=" + dir_ + " user=postgres dbname=" + db; }
  // A new, empty database; its connection string ("" with why() when it cannot be made).
  std::string new_database() {
    std::string name = "sluice_test_" + std::to_string(getpid()) + "_" + std::to_string(++databases_);
    PGconn *c = PQconnectdb(admin().c_str());
    bool made = false;
    if (PQstatus(c) == CONNECTION_OK) {
      // FILE_COPY (PostgreSQL 15): a plain copy of the template, about twice as fast here as logging it.
      PGresult *r = PQexec(c, ("CREATE DATABASE " + name + " STRATEGY FILE_COPY").c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQserverVersion(c) < 150000) {
        PQclear(r);
        r = PQexec(c, ("CREATE DATABASE " + name).c_str());
      }
      made = PQresultStatus(r) == PGRES_COMMAND_OK;
      if (!made)
        why_ = PQresultErrorMessage(r);
      PQclear(r);
    } else {
      why_ = PQerrorMessage(c);
    }
    PQfinish(c);
    return made ? conninfo(name) : "";
  }
  // Restarts the server as `pg_ctl restart` does (fast: every session is ended); false, with why(), when it fails.
  bool restart() {
    return started_ && run({bin("pg_ctl"), "-D", dir_ + "/data", "-l", dir_ + "/server.log", "-m", "fast", "-w", "-t",
                            "30", "restart"});
  }
  void stop() {
    if (started_)
      run({bin("pg_ctl"), "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"});
    started_ = false;
    if (!dir_.empty() && !g_getenv("SLUICE_KEEP_TEST_FILES"))
      fs::remove_all(dir_);
    dir_.clear();
  }
  // Whether get() was ever called (the environment stops only a server that was started).
  static bool &used() {
    static bool u = false;
    return u;
  }

private:
  PgServer() {
    used() = true;
    start();
  }

  // The folder of initdb and pg_ctl: $SLUICE_TEST_PG_BINDIR, else the newest of Debian's /usr/lib/postgresql/N/bin.
  static std::string find_bindir() {
    if (const char *env = g_getenv("SLUICE_TEST_PG_BINDIR"))
      return env;
    std::vector<int> versions;
    if (GDir *d = g_dir_open("/usr/lib/postgresql", 0, nullptr)) {
      while (const char *name = g_dir_read_name(d))
        if (int v = std::atoi(name); v > 0)
          versions.push_back(v);
      g_dir_close(d);
    }
    std::sort(versions.rbegin(), versions.rend());
    for (int v : versions) {
      std::string bin = "/usr/lib/postgresql/" + std::to_string(v) + "/bin";
      if (g_file_test((bin + "/initdb").c_str(), G_FILE_TEST_IS_EXECUTABLE))
        return bin;
    }
    return "";
  }
  std::string bin(const char *name) const { return bindir_ + "/" + name; }

  // Runs argv (as the postgres user when we are root); false with why_ set when it fails.
  bool run(std::vector<std::string> argv) {
    if (geteuid() == 0)
      argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
    std::vector<char *> args;
    for (std::string &a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    gchar *out = nullptr, *err = nullptr;
    gint status = 0;
    GError *error = nullptr;
    bool ok = g_spawn_sync(nullptr, args.data(), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out, &err, &status,
                           &error) &&
              g_spawn_check_wait_status(status, nullptr);
    if (!ok)
      why_ = argv[geteuid() == 0 ? 4 : 0] + " failed: " + (error ? error->message : "") + (err ? err : "");
    g_clear_error(&error);
    g_free(out);
    g_free(err);
    return ok;
  }

  void start() {
    bindir_ = find_bindir();
    if (bindir_.empty()) {
      why_ = "initdb not found (install Debian's postgresql package, or set SLUICE_TEST_PG_BINDIR)";
      return;
    }
    struct passwd *pw = nullptr;
    if (geteuid() == 0) {
      // initdb and postgres refuse to run as root: they run as the postgres user, in a folder it owns.
      pw = getpwnam("postgres");
      if (!pw) {
        why_ = "running as root and there is no postgres user to run the server as";
        return;
      }
      if (!g_find_program_in_path("runuser")) {
        why_ = "running as root and runuser is missing";
        return;
      }
    }
    gchar *d = g_dir_make_tmp("sluice-pg-XXXXXX", nullptr);
    if (!d) {
      why_ = "cannot make a temp dir";
      return;
    }
    dir_ = d;
    g_free(d);
    if (pw && chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      why_ = "cannot give " + dir_ + " to the postgres user";
      return;
    }
    const std::string data = dir_ + "/data";
    if (!run({bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"}))
      return;
    // A Unix socket in the temp dir only (no TCP port), nothing flushed to disk: it is thrown away.
    const std::string options = "-c listen_addresses='' -k " + dir_ +
                                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                                " -c shared_buffers=16MB -c max_connections=50";
    if (!run({bin("pg_ctl"), "-D", data, "-l", dir_ + "/server.log", "-w", "-t", "30", "-o", options, "start"}))
      return;
    started_ = true;
    ok_ = true;
  }

  std::string bindir_, dir_, why_;
  bool ok_ = false, started_ = false;
  int databases_ = 0;
};

// Stops the server at the end of the test program.
class PgEnvironment : public ::testing::Environment {
public:
  void TearDown() override {
    if (PgServer::used())
      PgServer::get().stop();
  }
};
inline ::testing::Environment *const pg_environment = ::testing::AddGlobalTestEnvironment(new PgEnvironment);

} // namespace sluice::test
