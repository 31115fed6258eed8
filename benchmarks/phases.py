"""The phases of a run: drive the servers (warm-up, then rounds of paced and saturation load,
the servers taking turns), and drain the stored backlog with workers. Each phase is metered:
CPU by role, write transactions, stored rows."""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from benchmarks import profiling
from benchmarks.deliveries import Template, make_deliveries, write_deliveries
from benchmarks.machine import CpuMeter, Process, wait_for_quiet, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("deliveries.lua")
NOISY = 0.2  # cores used by other processes during a phase, above which it is flagged


@dataclass
class Server:
    name: str
    process: Process
    port: int
    database: str | None  # where it stores events (None: it stores nothing)


@dataclass
class Bench:
    """One run's context: its databases, Redis prefix, secret, and the processes it started."""

    args: argparse.Namespace
    run_id: str
    out: Path
    secret: str
    templates: list[Template]
    weights: list[float]
    source: Path | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # BRIDGE_SECRET_KEY
    rng: random.Random = field(default_factory=lambda: random.Random(20250501))
    processes: list[Process] = field(default_factory=list)
    tags: Iterator[int] = field(default_factory=lambda: iter(range(10**6)))

    @property
    def db_name(self) -> str:
        """The bridge's database; the naive server's is `<db_name>_naive`."""
        return f"sb_bench_{self.run_id}"

    def url(self, database: str, driver: str = "postgresql") -> str:
        server = self.args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
        return f"{driver}://{server}/{database}"

    @property
    def namespace(self) -> str:
        return f"sb-bench-{self.run_id}"

    def query(self, statement: str, *params: Any, database: str = "") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(database or self.db_name), autocommit=True) as connection:
            cursor = connection.execute(statement, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def count(self, status: str | None = None, *, database: str = "") -> int:
        """Stored events, or those with `status`."""
        rows = self.query(
            "SELECT count(*) FROM stripe_events WHERE %s::text IS NULL OR status = %s",
            status,
            status,
            database=database,
        )
        return int(rows[0][0])

    def xid(self, database: str) -> int:
        """The next transaction id: its difference over a phase counts the write transactions."""
        return int(self.query("SELECT txid_current()", database=database)[0][0])

    def deliveries(self, name: str, count: int) -> tuple[Path, int]:
        tag = f"b{self.run_id}x{next(self.tags)}x"
        lines, distinct = make_deliveries(
            count, tag, self.secret, self.rng, templates=self.templates, weights=self.weights
        )
        return write_deliveries(self.out / f"{name}.tsv", lines), distinct

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BRIDGE_", "STRIPE_", "BENCH_"))
        }
        if self.source is not None:  # a snapshot of a git ref instead of the working tree
            env["PYTHONPATH"] = str(self.source / "src")
        env.update(
            BRIDGE_DATABASE_URL=self.url(self.db_name, "postgresql+psycopg"),
            BRIDGE_REDIS_URL=self.args.redis_url,
            BRIDGE_REDIS_NAMESPACE=self.namespace,
            STRIPE_WEBHOOK_SECRET=self.secret,
            BRIDGE_SECRET_KEY=self.secret_key,
            STRIPE_MODE="test",
            BRIDGE_LOG_FORMAT="json",
            BRIDGE_VAR_DIR=str(self.out / "var"),
            BRIDGE_SWEEP_GRACE="3600",  # the backlog gets older than the default 60 s grace
            BRIDGE_SWEEP_INTERVAL="3600",
            BENCH_DATABASE_URL=self.url(f"{self.db_name}_naive", "postgresql+psycopg"),
            BENCH_REDIS_URL=self.args.redis_url,
            BENCH_REDIS_NAMESPACE=f"{self.namespace}-naive",
            BENCH_WEBHOOK_SECRET=self.secret,
        )
        return env

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        log = self.out / f"{name}.log"
        process = Process(name, argv, env or self.env(), self.out, log)
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def quiet(self) -> float:
        """Wait for other processes (someone else's tests) to calm down before measuring."""
        share = wait_for_quiet(self.db_name, limit=self.args.quiet_wait)
        if share >= NOISY:
            print(f"    (machine busy with other processes: {share:.1f} cores)", flush=True)
        return share


# --- load generators -------------------------------------------------------------------------


def run_wrk(bench: Bench, port: int, requests: Path, seconds: float) -> dict[str, Any]:
    threads = bench.args.wrk_threads
    argv = [
        "wrk", "-t", str(threads), "-c", str(bench.args.connections),
        "-d", f"{max(1, round(seconds))}s", "--latency", "--timeout", "10s", "-s", str(LUA),
        f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_THREADS": str(threads)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result: dict[str, Any] = orjson.loads(lines[-1])
    result["accepted_per_s"] = result["accepted"] / result["seconds"]
    return result


def run_paced(bench: Bench, port: int, requests: Path, rate: float) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "benchmarks.paced_client", str(requests),
        "--port", str(port), "--rate", str(rate), "--connections", "64",
    ]  # fmt: skip
    timeout = bench.args.rate_seconds + 120
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"paced client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def measured(bench: Bench, server: Server, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `load()` while metering CPU by role, write transactions and stored rows."""
    noise_before = bench.quiet()
    database = server.database
    stored, xid = (bench.count(database=database), bench.xid(database)) if database else (0, 0)
    with CpuMeter({"server": [server.process.pid]}, bench.db_name) as meter:
        result = load()
    accepted = max(1, result["accepted"])
    result["noise_before"] = noise_before
    result["cpu_seconds"] = meter.seconds
    result["machine_busy"] = meter.machine_busy
    result["other_cores"] = meter.seconds["other"] / max(meter.wall, 1e-3)
    result["cpu_us_per_request"] = {
        role: seconds * 1e6 / accepted for role, seconds in meter.seconds.items()
    }
    if database:
        result["stored"] = bench.count(database=database) - stored
        result["write_transactions"] = bench.xid(database) - xid - 1
        result["rows_per_commit"] = result["stored"] / max(1, result["write_transactions"])
        # wrk stops with up to one request per connection in flight: stored, never answered
        in_flight = result["stored"] - (result["accepted"] - result["duplicates"])
        limit = 0 if "offered_rate" in result else bench.args.connections
        result["consistent"] = 0 <= in_flight <= limit
    refused = result.get("refused", 0) + result.get("socket_errors", 0)
    refused += sum(n for status, n in result.get("statuses", {}).items() if status != "200")
    if refused:
        print(f"    ({refused:,} deliveries refused or failed: see {server.process.log.name})")
    return result


def paced(bench: Bench, server: Server) -> dict[str, Any]:
    rate = bench.args.rate
    requests, distinct = bench.deliveries(
        f"{server.name}-paced", round(rate * bench.args.rate_seconds)
    )
    result = measured(bench, server, lambda: run_paced(bench, server.port, requests, rate))
    requests.unlink()
    result["distinct"] = distinct
    print(
        f"  {server.name}: {rate:,.0f}/s offered: {result['accepted_per_s']:,.0f}/s accepted, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms",
        flush=True,
    )
    return result


def saturation(bench: Bench, server: Server, estimate: float) -> dict[str, Any]:
    seconds = bench.args.seconds
    # enough distinct deliveries that wrk never runs out (it would then send only duplicates)
    wanted = math.ceil(estimate * seconds * 1.5 + 5_000)
    pool = min(bench.args.max_pool, wanted) if server.database else 30_000
    requests, _ = bench.deliveries(f"{server.name}-saturation", pool)
    result = measured(bench, server, lambda: run_wrk(bench, server.port, requests, seconds))
    requests.unlink()
    print(
        f"  {server.name}: saturation {result['accepted_per_s']:,.0f}/s, "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms",
        flush=True,
    )
    if server.database and result["wraps"]:
        print("    (wrk ran out of distinct deliveries: raise --max-pool)", flush=True)
    return result


def drive(bench: Bench, servers: Sequence[Server], bridge: str) -> dict[str, Any]:
    """Warm every server up (2 s of wrk), then `--rounds` rounds in which the servers take turns
    (the order rotates) at saturation; the bridge is also paced every round, the reference
    servers in the first round only. Taking turns spreads slow spells of a shared machine over
    all the servers instead of charging them to whichever happened to run then."""
    results: dict[str, Any] = {}
    for server in servers:
        wait_until_ready(server.process, server.port)
        requests, _ = bench.deliveries(f"{server.name}-warm", 12_000)
        warm = run_wrk(bench, server.port, requests, 2)
        requests.unlink()
        results[server.name] = {"warm_per_s": warm["accepted_per_s"], "paced": [], "saturation": []}
        print(f"  {server.name}: warm-up {warm['accepted_per_s']:,.0f}/s", flush=True)
    for round_ in range(bench.args.rounds):
        print(f"  round {round_ + 1} of {bench.args.rounds}", flush=True)
        turn = round_ % len(servers)
        for server in [*servers[turn:], *servers[:turn]]:
            mine = results[server.name]
            if round_ == 0 or server.name == bridge:
                mine["paced"].append(paced(bench, server))
            mine["saturation"].append(saturation(bench, server, mine["warm_per_s"]))
    return results


def profile_web(bench: Bench, server: Server, requests: Path | None = None) -> str:
    """py-spy the web process while wrk saturates it (fresh deliveries, or `requests`)."""
    seconds = bench.args.profile_seconds
    if requests is None:
        requests, _ = bench.deliveries("profile-web", bench.args.max_pool // 2)
    output = bench.out / f"{requests.stem}.txt"
    sampler = profiling.record(server.process.pid, seconds, output, gil=True)
    try:
        run_wrk(bench, server.port, requests, seconds)
    finally:
        sampler.wait(60)
        requests.unlink()
    return profiling.summarise([output])


# --- the workers -----------------------------------------------------------------------------


def apply_backlog(
    bench: Bench, worker_argv: Sequence[str], *, limit: float, profile: bool = False
) -> dict[str, Any]:
    """Start the workers on the stored backlog; wait (at most `limit` s) until no event is left
    `received`."""
    args = bench.args
    noise_before = bench.quiet()
    backlog = bench.count("received")
    began = bench.query("SELECT now()")[0][0]
    suffix = "-profiled" if profile else ""
    workers = [bench.start(f"worker-{n}{suffix}", worker_argv) for n in range(args.workers)]
    outputs = [bench.out / f"profile-worker-{n}.txt" for n in range(len(workers))]
    samplers: list[subprocess.Popen[bytes]] = []
    remaining = backlog
    with CpuMeter({"workers": [worker.pid for worker in workers]}, bench.db_name) as meter:
        started = time.monotonic()
        if profile:
            time.sleep(1.0)  # let them import and connect
            samplers = [
                profiling.record(worker.pid, args.profile_seconds, output, gil=True)
                for worker, output in zip(workers, outputs, strict=True)
            ]
        while remaining and time.monotonic() < started + limit:
            if not any(worker.alive() for worker in workers):
                raise RuntimeError(f"the workers exited:\n{workers[0].tail()}")
            time.sleep(0.2)
            remaining = bench.count("received")
        drained = time.monotonic() - started
    for sampler in samplers:
        sampler.wait(60)
    for worker in workers:
        bench.stop(worker)
    rows = bench.query(
        "SELECT status, count(*), min(processed_at), max(processed_at) FROM stripe_events "
        "WHERE processed_at >= %s GROUP BY status",
        began,
    )
    applied = sum(count for status, count, _, _ in rows if status == "processed")
    first = min((row[2] for row in rows), default=None)
    last = max((row[3] for row in rows), default=None)
    steady = (last - first).total_seconds() if first and last else 0.0
    result: dict[str, Any] = {
        "backlog": backlog,
        "left_received": remaining,
        "by_status": {status: count for status, count, _, _ in rows},
        "seconds_from_launch": drained,
        "seconds_first_to_last": steady,
        "applied_per_s": applied / steady if steady else 0.0,
        "applied_per_s_from_launch": applied / drained if drained else 0.0,
        "noise_before": noise_before,
        "cpu_seconds": meter.seconds,
        "machine_busy": meter.machine_busy,
        "other_cores": meter.seconds["other"] / max(meter.wall, 1e-3),
        "cpu_us_per_event": {
            role: seconds * 1e6 / max(1, applied) for role, seconds in meter.seconds.items()
        },
    }
    if profile:
        result["profile"] = profiling.summarise(outputs)
    return result
