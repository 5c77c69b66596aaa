// SPDX-License-Identifier: LGPL-2.1-or-later
// `sluice serve` and `sluice keys`.
#include "cli/serve.h"

#include "app/service.h"
#include "app/uploads.h"
#include "auth/authenticator.h"
#include "auth/keys.h"
#include "cli/common.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/gobj.h"
#include "core/mainloop.h"
#include "core/paths.h"
#include "http/server.h"
#include "http/webhooks_send.h"
#include "jobs/events.h"
#include "jobs/scheduler.h"
#include "jobs/stored.h"
#include "live/engine.h"
#include "store/executor.h"
#include "store/store.h"

#include <cstdio>
#include <string>

namespace sluice::cli {

namespace {

// [storage]'s storage, or null for the data folder. Left to the process's end (a global, so that it is no leak): a
// thread that reads or lists the bucket (a served object, the stats' measure) may still run when the server stops.
storage::Storage *kept_storage(const ServerConfig &config) {
  static storage::Storage *kept = nullptr;
  kept = jobs::open_storage(config).release();
  return kept;
}

// api and worker processes share the queue and the catalog: a SQLite file is one process's.
void check_role(const ServerConfig &config) {
  if (config.role != "all" && store::check_url(config.store_url) != store::Backend::Postgres)
    throw Error("[server] role: '" + config.role +
                "' needs a catalog shared by every process: set [store] url to a postgresql:// url (a SQLite "
                "catalog is for one process: --role all)");
}

// The calls that must not hold the main loop go through this: with PostgreSQL, kStoreThreads threads with a
// connection each; with SQLite (one process's file), inline on the one connection, as always.
constexpr int kStoreThreads = 4;

std::unique_ptr<store::Executor> make_executor(const ServerConfig &config, store::Store &main) {
  if (store::check_url(config.store_url) != store::Backend::Postgres)
    return std::make_unique<store::Executor>(main);
  return std::make_unique<store::Executor>(
      [url = config.store_url, timeout = config.store_timeout_s] { return store::open_postgres(url, timeout); },
      kStoreThreads, static_cast<std::int64_t>(config.store_timeout_s) * G_USEC_PER_SEC);
}

// What SIGINT and SIGTERM do: the first stops taking connections (where there is a server) and stops the running jobs,
// which go back to the queue, then ends the loop; a second ends the loop at once.
struct Stopping {
  GMainLoop *loop;
  jobs::Scheduler *scheduler;
  http::Server *server = nullptr;
  bool stopping = false;

  static gboolean on_signal(gpointer user_data) {
    auto *c = static_cast<Stopping *>(user_data);
    if (c->stopping) {
      std::fprintf(stderr, "sluice: stopping now\n");
      g_main_loop_quit(c->loop);
      return G_SOURCE_CONTINUE;
    }
    c->stopping = true;
    std::fprintf(stderr, "sluice: shutting down: running jobs stop and go back to the queue\n");
    if (c->server)
      c->server->stop_accepting();
    c->scheduler->shutdown([c] { g_main_loop_quit(c->loop); });
    return G_SOURCE_CONTINUE;
  }
};

// --role worker: claims and runs jobs from the shared catalog; no HTTP API, no live engine. It listens on nothing:
// its health is its heartbeat (GET /api/v1/workers on an api process).
int run_worker(ServerConfig &config) {
  try {
    auto store = store::open(config.store_url, config.data_dir, config.store_timeout_s);
    auto executor = make_executor(config, *store);
    auto hub = jobs::make_event_hub(config.store_url, config.store_timeout_s);
    storage::Storage *storage = kept_storage(config); // [storage]: null for the data folder
    jobs::Scheduler scheduler(*store, *hub, config, jobs::Layout{config.data_dir});
    scheduler.set_storage(storage);
    scheduler.set_executor(executor.get());
    scheduler.start();
    // Webhooks: any process of a shared catalog delivers (each delivery claimed by one); the service builds their data.
    app::Service service(config, *store, scheduler, *hub);
    http::WebhookSender webhooks(config, service);
    webhooks.start();
    GMainLoop *loop = g_main_loop_new(nullptr, FALSE);
    Stopping ctx{loop, &scheduler};
    {
      SignalSources signals(Stopping::on_signal, &ctx);
      std::printf("sluice: worker %s: %d job slot(s), encoders %s; data in %s\n", scheduler.worker_name().c_str(),
                  config.slots(), store::join_names(scheduler.runnable_encoders()).c_str(), config.data_dir.c_str());
      std::fflush(stdout);
      g_main_loop_run(loop);
    }
    g_main_loop_unref(loop);
    webhooks.stop();
    std::fprintf(stderr, "sluice: stopped\n");
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

} // namespace

int cmd_serve(int argc, char **argv) {
  gchar *config_file = nullptr, *listen = nullptr, *metrics_listen = nullptr, *data = nullptr;
  gchar *rtsp_listen = nullptr, *srt_listen = nullptr, *role = nullptr;
  GOptionEntry entries[] = {{"role", 0, 0, G_OPTION_ARG_STRING, &role,
                             "all (default), api (HTTP, uploads, catalog; runs no job) or worker (claims and runs "
                             "jobs; no HTTP API); api and worker share a PostgreSQL [store] url ([server] role)",
                             "ROLE"},
                            {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file,
                             "Read the configuration from FILE (see data/sluice.conf)", "FILE"},
                            {"listen", 'l', 0, G_OPTION_ARG_STRING, &listen,
                             "Listen on ADDR:PORT (default 127.0.0.1:8080; port 0 picks a free one)", "ADDR:PORT"},
                            {"metrics-listen", 0, 0, G_OPTION_ARG_STRING, &metrics_listen,
                             "Also serve GET /metrics alone, without credentials, on ADDR:PORT ([metrics] listen)",
                             "ADDR:PORT"},
                            {"rtsp-listen", 0, 0, G_OPTION_ARG_STRING, &rtsp_listen,
                             "Take RTSP publishers on ADDR:PORT, or off ([rtsp] listen; default 127.0.0.1:8554; "
                             "port 0 picks a free one)",
                             "ADDR:PORT"},
                            {"srt-listen", 0, 0, G_OPTION_ARG_STRING, &srt_listen,
                             "Take SRT publishers on ADDR:PORT, or off ([srt] listen; default 127.0.0.1:8890; "
                             "port 0 picks a free one)",
                             "ADDR:PORT"},
                            {"data", 'd', 0, G_OPTION_ARG_FILENAME, &data,
                             "Keep uploads, outputs and the catalog in DIR (default ./sluice-data)", "DIR"},
                            {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv, "", "Run the sluice server until SIGINT or SIGTERM.", entries))
    return kExitUsage;
  GCharPtr config_file_owner(config_file), listen_owner(listen), metrics_listen_owner(metrics_listen), data_owner(data);
  GCharPtr rtsp_listen_owner(rtsp_listen), srt_listen_owner(srt_listen), role_owner(role);
  if (argc != 1) {
    std::fprintf(stderr, "sluice serve: unexpected argument '%s' (see sluice serve --help)\n", argv[1]);
    return kExitUsage;
  }
  ServerConfig config;
  try {
    if (config_file)
      config.load_file(config_file);
    if (listen)
      config.set_listen(listen);
    if (metrics_listen)
      config.set_metrics_listen(metrics_listen);
    if (rtsp_listen)
      config.set_rtsp_listen(rtsp_listen);
    if (srt_listen)
      config.set_srt_listen(srt_listen);
    if (data)
      config.data_dir = data;
    if (role)
      config.set_role(role);
    check_role(config);
    config.data_dir = fs::absolute(config.data_dir);
    auth::check_listen(config);
    fs::make_dirs(config.data_dir);
  } catch (const Error &e) {
    print_error(e);
    return kExitUsage;
  }
  if (!paths::ensure_plugin()) {
    std::fprintf(stderr, "sluice: error: the sluiceprogress element (libgstsluice.so) is not installed\n");
    return kExitFailed;
  }
  if (config.role == "worker")
    return run_worker(config);
  try {
    auto store = store::open(config.store_url, config.data_dir, config.store_timeout_s);
    auto executor = make_executor(config, *store);
    // The event hub by the catalog's backend: this process's own (SQLite), or shared through PostgreSQL.
    auto hub = jobs::make_event_hub(config.store_url, config.store_timeout_s);
    jobs::EventHub &events = *hub;
    jobs::Layout layout{config.data_dir};
    // [storage]: sources and packages in a bucket (or another folder); null keeps them in the data folder.
    storage::Storage *storage = kept_storage(config);
    jobs::Scheduler scheduler(*store, events, config, layout);
    scheduler.set_storage(storage);
    scheduler.set_executor(executor.get());
    app::Service service(config, *store, scheduler, events);
    service.uploads().start();
    http::Server server(config, service);
    server.listen();
    // The live engine: publishers over RTSP and SRT. The ports it took (the real ones for port 0, -1 for an
    // address it could not bind) are what the streams' ingest URLs show.
    live::Engine engine(config, service.streams());
    service.streams().set_engine(&engine);
    engine.serve_videos(service);
    engine.start();
    config.rtsp_port = engine.rtsp_port();
    config.srt_port = engine.srt_port();
    scheduler.start();
    http::WebhookSender webhooks(config, service);
    webhooks.start();
    GMainLoop *loop = g_main_loop_new(nullptr, FALSE);
    Stopping ctx{loop, &scheduler, &server};
    {
      // Signals are handled from here on: one that comes right after the lines below waits for the loop.
      SignalSources signals(Stopping::on_signal, &ctx);
      std::printf("sluice: serving on %s\n", server.url().c_str());
      if (!server.metrics_url().empty())
        std::printf("sluice: metrics (alone, without credentials) on %smetrics\n", server.metrics_url().c_str());
      if (!engine.rtsp_url().empty())
        std::printf("sluice: RTSP on %s\n", engine.rtsp_url().c_str());
      if (!engine.srt_url().empty())
        std::printf("sluice: SRT on %s\n", engine.srt_url().c_str());
      if (config.role == "api")
        std::printf("sluice: role api: jobs run on the workers that share the catalog\n");
      if (storage)
        std::printf("sluice: sources and packages in %s (served: %s)\n", storage->describe().c_str(),
                    config.storage_serve.c_str());
      std::printf("sluice: data in %s, %d job slot(s); upload with: curl -F file=@VIDEO %sapi/v1/videos\n",
                  config.data_dir.c_str(), config.role == "api" ? 0 : config.slots(), server.url().c_str());
      std::fflush(stdout);
      g_main_loop_run(loop);
    }
    g_main_loop_unref(loop);
    webhooks.stop(); // attempts in flight are attempted again (by any process) once their leases run out
    // Live streams end (their playlists get ENDLIST) before the service goes.
    engine.stop();
    service.streams().set_engine(nullptr);
    std::fprintf(stderr, "sluice: stopped\n");
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

// sluice keys create|list|revoke: the API keys of a data folder's catalog (the server sees them at once).
int cmd_keys(int argc, char **argv) {
  gchar *data = nullptr, *name = nullptr, *scope = nullptr, *config_file = nullptr;
  GOptionEntry entries[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file,
       "The server's configuration: its [store] url and [server] data", "FILE"},
      {"data", 'd', 0, G_OPTION_ARG_FILENAME, &data, "The server's data folder (default ./sluice-data)", "DIR"},
      {"name", 'n', 0, G_OPTION_ARG_STRING, &name, "create: the key's name (revoke takes it as argument)", "NAME"},
      {"scope", 's', 0, G_OPTION_ARG_STRING, &scope, "create: what the key may do: read, upload, metrics, admin",
       "LIST"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  if (!parse_options(argc, argv, "create --name NAME --scope LIST | list | revoke NAME",
                     "Manage the API keys that `sluice serve` accepts with [auth] mode=keys.\n\n"
                     "create prints the new key once; only its hash is kept. Scopes: read, upload, metrics and\n"
                     "admin (admin implies every other), separated by commas.",
                     entries))
    return kExitUsage;
  GCharPtr data_owner(data), name_owner(name), scope_owner(scope), config_owner(config_file);
  const std::string sub = argc >= 2 ? argv[1] : "";
  const bool create = sub == "create" && argc == 2, list = sub == "list" && argc == 2,
             revoke = sub == "revoke" && (argc == 3 || (argc == 2 && name));
  if (!create && !list && !revoke) {
    std::fprintf(stderr, "sluice keys: need create, list or revoke NAME (see sluice keys --help)\n");
    return kExitUsage;
  }
  try {
    ServerConfig config;
    if (config_file)
      config.load_file(config_file);
    const std::string dir = fs::absolute(data ? data : config.data_dir);
    if (create) {
      if (!name || !*name || !scope) {
        std::fprintf(stderr, "sluice keys create: need --name NAME and --scope LIST\n");
        return kExitUsage;
      }
      store::ApiKey k;
      k.name = name;
      k.scopes = auth::scopes_string(auth::parse_scopes(scope));
      k.created = g_get_real_time();
      const std::string key = auth::new_key();
      k.hash = auth::hash_key(key);
      fs::make_dirs(dir);
      store::open(config.store_url, dir)->add_key(k);
      std::printf("%s\n", key.c_str());
      std::fprintf(stderr, "sluice: key '%s' (%s) created; it is shown only this once: keep it now\n", k.name.c_str(),
                   k.scopes.c_str());
      return kExitOk;
    }
    auto store = store::open(config.store_url, dir);
    if (revoke) {
      const std::string which = argc == 3 ? argv[2] : name;
      if (!store->revoke_key(which, g_get_real_time())) {
        std::fprintf(stderr, "sluice: error: no key named '%s' (or it was revoked already)\n", which.c_str());
        return kExitFailed;
      }
      std::printf("revoked key '%s'\n", which.c_str());
      return kExitOk;
    }
    auto when = [](std::int64_t us) -> std::string {
      if (!us)
        return "-";
      g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(us / 1000000);
      g_autofree gchar *s = t ? g_date_time_format_iso8601(t) : nullptr;
      return s ? s : "-";
    };
    std::printf("%-20s %-28s %-21s %-21s %s\n", "NAME", "SCOPES", "CREATED", "LAST USED", "STATE");
    for (const auto &k : store->keys())
      std::printf("%-20s %-28s %-21s %-21s %s\n", k.name.c_str(), k.scopes.c_str(), when(k.created).c_str(),
                  when(k.last_used).c_str(), k.revoked ? ("revoked " + when(k.revoked)).c_str() : "active");
    return kExitOk;
  } catch (const Error &e) {
    print_error(e);
    return kExitFailed;
  }
}

} // namespace sluice::cli
