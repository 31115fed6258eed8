"""The multi-workspace run (`--workspaces N`, after the single-workspace phases, same servers).

- **Totals**: the same saturation load and worker drain, once with every delivery for `default`
  (`/webhooks/stripe`) and once spread evenly over N connected workspaces
  (`/webhooks/stripe/{id}`, each its own account and signing secret), in the order single,
  spread, spread, single: the ratios spread / single of ingest and of apply.
- **Fairness** (one noisy workspace, N - 1 quiet ones sending `--quiet-rate` deliveries/s
  between them, the workers running): the delay from storing to applying the quiet
  workspaces' events (`processed_at - received_at`: p50, p99, max) while
  * *bulk*: the noisy workspace replays a backlog of dead letters (`stripe-bridge replay --all`,
    sent to the bulk queue), and
  * *live*: the noisy workspace sends a burst at saturation (wrk) through its own endpoint.

The workspaces are created and connected in the database directly (a connection row with the
account, the mode and the signing secret sealed with the run's BRIDGE_SECRET_KEY): the web role
reads them as it would after `PUT /admin/api/workspaces/{id}/connection`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from benchmarks.deliveries import make_deliveries, write_deliveries
from benchmarks.machine import CpuMeter
from benchmarks.phases import ROOT, Bench, Server, apply_backlog, measured, run_wrk
from stripe_bridge import connection, workspaces
from stripe_bridge.endpoints import set_webhook_secrets
from stripe_bridge.secrets_box import SecretBox

NOISY = "bench-noisy"


QUIET_ALONE = 5.0  # seconds the quiet workspaces send before the noisy work starts


def quiet_ids(count: int) -> list[str]:
    return [f"bench-{n:04d}" for n in range(count - 1)]


def connect_all(bench: Bench, count: int) -> None:
    """`count` workspaces: `bench-0000`… and the noisy one, each connected to its own (test)
    account with the run's signing secret."""
    engine = create_engine(bench.url(bench.db_name, "postgresql+psycopg"))
    box = SecretBox([bench.secret_key])
    try:
        with Session(engine) as session, session.begin():
            for n, workspace_id in enumerate([*quiet_ids(count), NOISY]):
                workspaces.create(session, workspace_id)
                account = {"id": f"acct_bench{n:05d}", "settings": {}}
                row = connection.take(session, workspace_id, account, "test", platform=False)
                set_webhook_secrets(row, box, [bench.secret])
    finally:
        engine.dispose()


def routed(lines: Sequence[bytes], routes: Sequence[str]) -> list[bytes]:
    """Each delivery sent to one of `routes`, picked by its body (a re-delivery goes where its
    original went): `<path>\\t<Stripe-Signature>\\t<body>`."""
    out = []
    for line in lines:
        body = line.split(b"\t", 1)[1]
        route = routes[zlib.crc32(body) % len(routes)]
        out.append(route.encode() + b"\t" + line)
    return out


def paths(ids: Sequence[str]) -> list[str]:
    return [f"/webhooks/stripe/{workspace_id}" for workspace_id in ids]


def deliveries(bench: Bench, name: str, count: int, routes: Sequence[str]) -> Path:
    tag = f"b{bench.run_id}x{next(bench.tags)}x"
    lines, _ = make_deliveries(
        count, tag, bench.secret, bench.rng, templates=bench.templates, weights=bench.weights
    )
    return write_deliveries(bench.out / f"{name}.tsv", routed(lines, routes))


def spread_deliveries(bench: Bench, name: str) -> Path:
    """Fresh deliveries spread over the quiet workspaces (for a profile of the web)."""
    routes = paths(quiet_ids(bench.args.workspaces))
    return deliveries(bench, name, bench.args.max_pool // 2, routes)


def totals(bench: Bench, server: Server, worker_argv: Sequence[str], count: int) -> dict[str, Any]:
    """Saturation then drain, single workspace and spread, in the order S, M, M, S."""
    args = bench.args
    spread = paths(quiet_ids(count))
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "spread": []}
    for shape in ("single", "spread", "spread", "single"):
        pool = min(args.max_pool, round(3_000 * args.seconds + 5_000))
        routes = ["/webhooks/stripe"] if shape == "single" else spread
        requests = deliveries(bench, f"ws-{shape}", pool, routes)
        ingest = measured(
            bench, server, lambda path=requests: run_wrk(bench, server.port, path, args.seconds)
        )
        requests.unlink()
        applied = apply_backlog(bench, worker_argv, limit=args.apply_timeout)
        runs[shape].append({"ingest": ingest, "apply": applied})
        print(
            f"  workspaces ({shape}): saturation {ingest['accepted_per_s']:,.0f}/s, "
            f"workers {applied['applied_per_s']:,.0f} events/s",
            flush=True,
        )

    def mean(shape: str, part: str, key: str) -> float:
        values = [run[part][key] for run in runs[shape]]
        return sum(values) / len(values)

    return {
        "runs": runs,
        "ingest_ratio": mean("spread", "ingest", "accepted_per_s")
        / max(1e-9, mean("single", "ingest", "accepted_per_s")),
        "apply_ratio": mean("spread", "apply", "applied_per_s")
        / max(1e-9, mean("single", "apply", "applied_per_s")),
    }


def _delays(bench: Bench, since: Any, where: str) -> dict[str, Any]:
    rows = bench.query(
        "SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY"
        " extract(epoch FROM processed_at - received_at)),"
        " max(extract(epoch FROM processed_at - received_at)),"
        " count(*) FILTER (WHERE processed_at IS NULL)"
        f" FROM stripe_events WHERE received_at >= %s AND {where}",
        since,
    )
    count, (p50, p99), worst, unapplied = rows[0][0], rows[0][1] or (None, None), *rows[0][2:]
    return {
        "events": count,
        "p50_s": p50,
        "p99_s": p99,
        "max_s": float(worst) if worst is not None else None,
        "unapplied": unapplied,
    }


def _paced(bench: Bench, port: int, requests: Path, rate: float) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "benchmarks.paced_client", str(requests),
        "--port", str(port), "--rate", str(rate), "--connections", "64",
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _clear_queues(bench: Bench) -> None:
    """Drop the queued jobs (the workers are stopped): the noisy backlog's live jobs, sent when
    it was stored, would otherwise apply it after the replay put it back to `received`."""
    client = redis.Redis.from_url(bench.args.redis_url)
    try:
        for key in client.scan_iter(f"{bench.namespace}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def fairness(
    bench: Bench,
    server: Server,
    worker_argv: Sequence[str],
    cli_argv: Sequence[str],
    count: int,
    mode: str,
) -> dict[str, Any]:
    """The quiet workspaces' delays while the noisy one's backlog (`bulk`) or burst (`live`)
    drains."""
    args = bench.args
    quiet = paths(quiet_ids(count))
    seconds = args.fair_seconds
    noisy_requests = deliveries(bench, f"fair-{mode}-noisy", args.fair_backlog, paths([NOISY]))
    if mode == "bulk":  # store the noisy backlog, make it dead letters
        run_wrk(bench, server.port, noisy_requests, max(2.0, args.fair_backlog / 2_000))
        bench.query(
            "UPDATE stripe_events SET status = 'failed', attempts = 10, last_error = 'bench'"
            " WHERE workspace_id = %s AND status = 'received' RETURNING 1",
            NOISY,
        )
        _clear_queues(bench)
    quiet_requests = deliveries(
        bench, f"fair-{mode}-quiet", round(args.quiet_rate * seconds), quiet
    )
    began = bench.query("SELECT now()")[0][0]
    workers = [bench.start(f"worker-fair-{mode}-{n}", worker_argv) for n in range(args.workers)]
    noisy_result: dict[str, Any] = {}
    with CpuMeter({"workers": [worker.pid for worker in workers]}, bench.db_name) as meter:
        time.sleep(1.0)  # the workers import and connect
        client = _paced(bench, server.port, quiet_requests, args.quiet_rate)
        time.sleep(QUIET_ALONE)  # the quiet workspaces' delays alone: the reference
        noisy_began = bench.query("SELECT now()")[0][0]
        started = time.monotonic()
        if mode == "bulk":
            done = subprocess.run(
                [*cli_argv, "replay", "--all", "--kind", "event", "--workspace", NOISY],
                env=bench.env(), cwd=bench.out, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"replay failed: {done.stderr[-2000:]}")
        else:
            burst = threading.Thread(
                target=lambda: noisy_result.update(
                    run_wrk(bench, server.port, noisy_requests, min(6.0, seconds / 2))
                )
            )
            burst.start()
            burst.join()
        client.wait(seconds + 120)
        deadline = time.monotonic() + args.apply_timeout
        while bench.count("received") and time.monotonic() < deadline:
            time.sleep(0.2)
        drained = time.monotonic() - started
    for worker in workers:
        bench.stop(worker)
    noisy_requests.unlink()
    quiet_requests.unlink()
    noisy = bench.query(
        "SELECT count(*), max(processed_at) FROM stripe_events WHERE workspace_id = %s"
        " AND processed_at >= %s",
        NOISY,
        began,
    )[0]
    quiet_only = f"workspace_id NOT IN ('{NOISY}', 'default')"
    result = {
        "mode": mode,
        "quiet": _delays(bench, noisy_began, quiet_only),
        "quiet_alone": _delays(bench, began, f"{quiet_only} AND received_at < '{noisy_began}'"),
        "noisy_applied": noisy[0],
        "seconds_to_drain": drained,
        "left_received": bench.count("received"),
        "noisy_burst": noisy_result or None,
        "machine_busy": meter.machine_busy,
        "other_cores": meter.seconds["other"] / max(meter.wall, 1e-3),
    }
    q, alone = result["quiet"], result["quiet_alone"]
    print(
        f"  fairness ({mode}): {result['noisy_applied']:,} noisy events applied in "
        f"{drained:.1f} s; quiet events ({q['events']:,}) applied after p50 "
        f"{(q['p50_s'] or 0) * 1e3:.0f} ms, p99 {(q['p99_s'] or 0) * 1e3:.0f} ms, "
        f"max {(q['max_s'] or 0) * 1e3:.0f} ms (alone, before the noisy work: "
        f"{alone['events']:,} events, p50 {(alone['p50_s'] or 0) * 1e3:.0f} ms, "
        f"p99 {(alone['p99_s'] or 0) * 1e3:.0f} ms)",
        flush=True,
    )
    return result


def run(
    bench: Bench, server: Server, worker_argv: Sequence[str], cli_argv: Sequence[str]
) -> dict[str, Any]:
    count = bench.args.workspaces
    connect_all(bench, count)
    time.sleep(1.0)
    result = totals(bench, server, worker_argv, count)
    print(
        f"  workspaces: spread over {count} / single: ingest {result['ingest_ratio']:.2f}x, "
        f"apply {result['apply_ratio']:.2f}x",
        flush=True,
    )
    result["fairness"] = [
        fairness(bench, server, worker_argv, cli_argv, count, mode) for mode in ("bulk", "live")
    ]
    result["count"] = count
    return result
