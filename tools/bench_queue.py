# SPDX-License-Identifier: LGPL-2.1-or-later
# `tools/bench queue`: claim-and-finish throughput of the job queue with 1, 2 and 4 worker processes on PostgreSQL,
# and with SQLite in one process; jobs per second, claim latency, and that no job is claimed twice.
"""The `queue` benchmark of tools/bench (which imports this file and passes itself as `b` for its helpers)."""

import json
import os
import subprocess
import sys
import tempfile
import time

SHORT = "the job queue: claim-and-finish throughput with 1, 2, 4 workers on PostgreSQL and SQLite, no double claims"

HELP = """\
Benchmark the job queue that workers share: how many jobs per second processes claim and finish,
and how long a claim takes, with no job claimed twice.

Each worker is a process of build/tools/sluice-bench-queue, which does what a `sluice serve --role worker`
does for a job, without the HTTP side: it claims a job through the catalog (store::Store::claim_job:
PostgreSQL's UPDATE ... FOR UPDATE SKIP LOCKED, SQLite's BEGIN IMMEDIATE), runs the no-op pipeline
`fakesrc num-buffers=1 ! fakesink` to its end, and writes the job's end with its fencing token together
with the next claim (finish_and_claim: one statement, one commit, as the scheduler does when a slot frees),
until the queue is empty. All workers start at one instant. A claim's latency is that call's (the first
claim's alone).

Runs: PostgreSQL (a throwaway server the benchmark starts on a Unix socket, initdb + pg_ctl; as the
postgres user when run as root; durable settings: fsync and synchronous_commit on, as a production server
has them unless --fast) with 1, 2 and 4 workers, and SQLite (WAL) with one worker. Each run gets --jobs
fresh jobs. Reported per run: jobs/s (jobs / (last finish - start)), p50 and p99 of the claim's latency,
and the check: every job succeeded, attempts 1 for all, and the ids the workers report never repeat.

Goal (issue): at least 500 jobs/s with 4 workers on PostgreSQL, and no job claimed twice over 10,000 jobs.
"""

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PROGRAM = os.path.join(REPO, "build", "tools", "sluice-bench-queue")


def add_args(p):
    p.add_argument("--jobs", type=int, default=10000, help="jobs per run (default 10000)")
    p.add_argument("--workers", default="1,2,4", help="worker processes of the PostgreSQL runs (default 1,2,4)")
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    p.add_argument("--fast", action="store_true",
                   help="PostgreSQL without fsync and synchronous_commit (as the tests run it)")
    p.add_argument("--program", default=DEFAULT_PROGRAM, help="the worker program (default: build/tools/...)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE (- for stdout)")


def _pg_server(b, fast):
    sys.path.insert(0, os.path.join(REPO, "tests", "server"))
    from test_store_postgres import PgServer  # the tests' throwaway server, shared rather than written twice
    try:
        return PgServer(durable=not fast)
    except Exception as e:  # unittest.SkipTest when PostgreSQL is not installed
        raise b.BenchError(f"cannot start a PostgreSQL server: {e}")


def _program(a, b, *args):
    r = subprocess.run([a.program] + [str(x) for x in args], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise b.BenchError(f"{os.path.basename(a.program)} {args[0]} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def _run(a, b, url, workers, label):
    _program(a, b, "seed", url, a.jobs)
    start_us = int((time.time() + 1.0) * 1e6)  # every worker starts at this instant
    procs = [subprocess.Popen([a.program, "work", url, f"w{i + 1}", str(start_us)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(workers)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise b.BenchError(f"a worker failed ({p.returncode}): {err.strip()}")
        reports.append(json.loads(out))
    check = json.loads(_program(a, b, "check", url))
    ids = [i for r in reports for i in r["ids"]]
    ended = max(r["ended_us"] for r in reports)
    seconds = max(1e-6, (ended - start_us) / 1e6)
    result = {
        "run": label, "workers": workers, "jobs": len(ids), "seconds": round(seconds, 3),
        "jobs_per_s": round(len(ids) / seconds, 1),
        "claim_p50_ms": round(max(r["claim_p50_us"] for r in reports) / 1000, 3),
        "claim_p99_ms": round(max(r["claim_p99_us"] for r in reports) / 1000, 3),
        "per_worker": [r["jobs"] for r in reports],
        "claimed_twice": len(ids) - len(set(ids)),
        "failed": sum(r["failed"] for r in reports), "lost": sum(r["lost"] for r in reports),
        "catalog": check,
    }
    result["ok"] = (result["claimed_twice"] == 0 and result["failed"] == 0 and result["lost"] == 0
                    and check["jobs"] == a.jobs and check["succeeded"] == a.jobs and check["attempts_not_1"] == 0
                    and len(ids) == a.jobs)
    b.say(f"  {label:<22} {workers} worker(s): {result['jobs_per_s']:>8.1f} jobs/s   claim p50 "
          f"{result['claim_p50_ms']:.2f} ms  p99 {result['claim_p99_ms']:.2f} ms   per worker {result['per_worker']}"
          f"   claimed twice {result['claimed_twice']}   {'OK' if result['ok'] else 'CHECK FAILED'}")
    return result


def run(a, b):
    if a.jobs < 1:
        raise b.UsageError("--jobs must be at least 1")
    try:
        counts = [int(x) for x in a.workers.split(",") if x.strip()]
    except ValueError:
        raise b.UsageError("--workers must look like 1,2,4")
    if not counts or min(counts) < 1:
        raise b.UsageError("--workers must look like 1,2,4")
    if not (os.path.isfile(a.program) and os.access(a.program, os.X_OK)):
        raise b.BenchError(f"no worker program at {a.program} (build it: ninja -C build)")
    b.say(f"queue: {a.jobs} jobs per run, the no-op pipeline between claim and finish, {os.cpu_count()} cores")
    results = []
    pg = _pg_server(b, a.fast)
    try:
        b.say(f"PostgreSQL ({'fsync off' if a.fast else 'durable: fsync and synchronous_commit on'}):")
        for i, n in enumerate(counts):
            db = f"bench{i}"
            pg.create_database(db)
            results.append(_run(a, b, pg.url(db), n, "postgresql"))
    finally:
        pg.stop()
    if not a.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-queue-") as d:
            b.say("SQLite (WAL, one process):")
            results.append(_run(a, b, "sqlite://" + os.path.join(d, "catalog.db"), 1, "sqlite"))
    if a.json:
        b.write_json(a.json, {"benchmark": "queue", "jobs": a.jobs, "results": results})
    return 0 if all(r["ok"] for r in results) else 1
