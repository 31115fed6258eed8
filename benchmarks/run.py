"""Ingest and apply benchmark: stripe-bridge next to a bare and a naive webhook server.

    .venv/bin/python -m benchmarks.run --ref HEAD     # about 3 minutes; see benchmarks/README.md

A run creates its own PostgreSQL databases (`sb_bench_<random>`, `…_naive`) and Redis key
prefix and migrates them. It starts the bare, the naive and the bridge's web server (each one
uvicorn process with uvloop + httptools on its own loopback port), warms them up, then runs
rounds in which they take turns: saturation (wrk, 32 connections, deliveries.lua) and 1,000
signed deliveries/s paced (open loop, paced_client.py). Then it starts `stripe-bridge worker`
processes on the Redis broker and times how long they take to apply every stored event. It
prints a table against the issue's targets and, when one is missed, where the Python CPU of
the web process or the workers goes (py-spy). Every process it started is stopped, the
databases dropped and the Redis keys deleted at the end, also on error or Ctrl-C. Results,
logs and profiles go to benchmarks/results/<date>-<id>/ (ignored by git).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from benchmarks import profiling, report, workspaces
from benchmarks.deliveries import load_templates
from benchmarks.machine import describe, free_port
from benchmarks.phases import ROOT, Bench, Server, apply_backlog, drive, profile_web, run_wrk

BIN = sys.executable.rsplit("/", 1)[0]
BRIDGE_CLI = f"{sys.executable} {Path(__file__).with_name('bridge_cli.py')}"
BRIDGE = "stripe-bridge"


@contextmanager
def database(admin_url: str, name: str) -> Iterator[None]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def redis_keys(url: str, prefix: str) -> Iterator[None]:
    try:
        yield
    finally:
        client = redis.Redis.from_url(url)
        try:
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    add("--redis-url", default="redis://127.0.0.1:6379/0")
    add("--rate", type=float, default=1000.0, help="offered deliveries/s of the paced phase")
    add("--rate-seconds", type=float, default=5.0, help="length of one paced phase")
    add("--seconds", type=float, default=5.0, help="length of one saturation phase")
    add("--rounds", type=int, default=3, help="rounds in which the servers take turns")
    add("--connections", type=int, default=32, help="wrk connections at saturation")
    add("--wrk-threads", type=int, default=2)
    add("--max-pool", type=int, default=120_000, help="most distinct deliveries in a wrk file")
    add("--workers", type=int, default=2, help="`stripe-bridge worker` processes")
    add("--worker-threads", type=int, default=8)
    add("--apply-timeout", type=float, default=60.0, help="give up draining after this long")
    add("--no-apply", action="store_true", help="measure ingest only (no workers)")
    add(
        "--workspaces", type=int, default=200, help="the multi-workspace run's workspaces (0: skip)"
    )
    add("--quiet-rate", type=float, default=200.0, help="deliveries/s of the quiet workspaces")
    add("--fair-backlog", type=int, default=20_000, help="the noisy workspace's deliveries")
    add("--fair-seconds", type=float, default=15.0, help="how long the quiet workspaces send")
    add("--servers", default="bare,naive", help="reference servers to measure (comma-separated)")
    add(
        "--web-cmd",
        default=f"{BRIDGE_CLI} web --host 127.0.0.1 --port {{port}}",
        help="how to start the web role ({port}, {python}, {root} are replaced)",
    )
    add(
        "--worker-cmd",
        default=f"{BRIDGE_CLI} worker --threads {{threads}}",
        help="how to start one worker ({threads}, {python}, {root} are replaced)",
    )
    add(
        "--ref",
        default=None,
        help="measure this git ref (exported into the results directory), not the working tree",
    )
    add(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy the web process / the workers when a target is missed (auto)",
    )
    add("--profile-seconds", type=float, default=6.0)
    add(
        "--quiet-wait",
        type=float,
        default=5.0,
        help="seconds to wait, before each phase, for other processes to go quiet",
    )
    return parser.parse_args(argv)


def git(*argv: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() or "unknown"


def snapshot(ref: str, into: Path) -> Path:
    """The src/ and migrations/ of `ref`, exported (the repository is left untouched)."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src", "migrations"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, timeout=60, check=True)
    return into


def migrate(bench: Bench, database: str) -> None:
    env = {**bench.env(), "BRIDGE_DATABASE_URL": bench.url(database, "postgresql+psycopg")}
    done = subprocess.run(
        [*BRIDGE_CLI.split(), "migrate"],
        env=env, cwd=bench.out, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"stripe-bridge migrate failed: {done.stderr[-2000:]}")


def start_servers(bench: Bench) -> list[Server]:
    """The reference servers and the bridge's web role, each on its own loopback port."""
    args = bench.args
    servers = []
    for name in filter(None, args.servers.split(",")):
        port = free_port()
        argv = [
            f"{BIN}/uvicorn", "--factory", "--app-dir", str(ROOT), "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
            f"benchmarks.reference_servers:{name}_app",
        ]  # fmt: skip
        database = f"{bench.db_name}_naive" if name == "naive" else None
        servers.append(Server(name, bench.start(name, argv), port, database))
    port = free_port()
    web = shlex.split(args.web_cmd.format(python=sys.executable, root=ROOT, port=port))
    servers.append(Server(BRIDGE, bench.start(BRIDGE, web), port, bench.db_name))
    return servers


def run(bench: Bench, results: dict[str, Any]) -> None:
    args = bench.args
    servers = start_servers(bench)
    results.update(drive(bench, servers, BRIDGE))
    worker = shlex.split(
        args.worker_cmd.format(python=sys.executable, root=ROOT, threads=args.worker_threads)
    )
    if not args.no_apply:
        results["apply"] = apply_backlog(bench, worker, limit=args.apply_timeout)
        applied = results["apply"]
        print(f"  workers: {applied['applied_per_s']:,.0f} events/s applied; "
              f"{applied['left_received']:,} left after {applied['seconds_from_launch']:.0f} s",
              flush=True)  # fmt: skip

    if args.workspaces and not args.no_apply:
        if bench.query("SELECT to_regclass('workspaces') IS NOT NULL")[0][0]:
            print(f"  workspaces: {args.workspaces} connected…", flush=True)
            results["workspaces"] = workspaces.run(
                bench, servers[-1], worker, shlex.split(BRIDGE_CLI)
            )
        else:
            print("  (no workspaces in this ref: the multi-workspace run is skipped)")

    missed = [label for label, _, _, ok in report.verdicts(results) if not ok]
    always = args.profile == "always"
    wanted = always or (args.profile == "auto" and bool(missed))
    bridge = servers[-1]
    if wanted and not profiling.available():
        print("  (py-spy is not installed: `pip install py-spy` shows where the time goes)")
    elif wanted:
        if always or any(not label.startswith("events") for label in missed):
            print("  profiling the web process at saturation…", flush=True)
            results["profile_web"] = profile_web(bench, bridge)
        if not args.no_apply and (always or any(label.startswith("events") for label in missed)):
            print("  profiling the workers…", flush=True)
            backlog, _ = bench.deliveries("profile-apply", 4_000)
            run_wrk(bench, bridge.port, backlog, 2)
            backlog.unlink()
            limit = args.profile_seconds + 2
            results["profile_apply"] = apply_backlog(bench, worker, limit=limit, profile=True)
        spread = results.get("workspaces", {}).get("ingest_ratio", 1.0)
        if always or spread < report.WORKSPACES_RATIO:
            print("  profiling the web process at saturation, spread over workspaces…", flush=True)
            requests = workspaces.spread_deliveries(bench, "profile-web-spread")
            results["profile_web_spread"] = profile_web(bench, bridge, requests)
    for server in servers:
        bench.stop(server.process)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    run_id = secrets.token_hex(4)
    out = ROOT / "benchmarks" / "results" / f"{datetime.now():%Y%m%d-%H%M%S}-{run_id}"
    out.mkdir(parents=True)
    machine = describe(args.pg_admin_url, args.redis_url)
    print(
        f"{machine['date']}: {machine['nproc']} x {machine['cpu_model']}; results in "
        f"{out.relative_to(ROOT)}",
        flush=True,
    )
    templates, weights = load_templates()
    secret = f"whsec_bench{secrets.token_hex(12)}"
    source = snapshot(args.ref, out / "source") if args.ref else None
    bench = Bench(args, run_id, out, secret, templates, weights, source)
    version = git("describe", "--always", "--dirty") if source is None else args.ref
    results: dict[str, Any] = {
        "machine": machine,
        "commit": f"{version} ({git('rev-parse', '--short', args.ref or 'HEAD')})",
        "config": {key: value for key, value in vars(args).items() if "url" not in key},
    }
    began = time.monotonic()
    with ExitStack() as stack:
        for name in (bench.db_name, f"{bench.db_name}_naive"):
            stack.enter_context(database(args.pg_admin_url, name))
            migrate(bench, name)
        stack.enter_context(redis_keys(args.redis_url, bench.namespace))
        stack.callback(lambda: [bench.stop(process) for process in list(bench.processes)])
        stack.callback(lambda: [path.unlink() for path in out.glob("*.tsv")])
        run(bench, results)
    results["total_seconds"] = time.monotonic() - began
    print(report.write(results, out))
    shutil.rmtree(out / "var", ignore_errors=True)
    shutil.rmtree(out / "source", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
