"""The numbers a run prints (Markdown, pasteable into benchmarks/README.md) and their verdicts.

A server measured in several rounds is reported by the median round, with the range; the
targets are judged on medians (the bridge/naive ratio is the median of the per-round ratios)."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

import orjson

from benchmarks.phases import NOISY

TARGET_RATIO = 2.0  # stripe-bridge at saturation ≥ 2x the naive endpoint
TARGET_P99_MS = 20.0  # p99 ack at 1,000 deliveries/s offered
TARGET_APPLIED = 2000.0  # events/s applied by the workers on the Redis broker
WORKSPACES_RATIO = 0.90  # spread over many workspaces / one workspace, ingest and apply
TARGET_FAIR_S = 2.0  # p99 delay of quiet workspaces' events while a noisy one replays
SERVERS = ("bare", "naive", "stripe-bridge")


def _spread(values: list[float], fmt: str) -> str:
    middle = format(median(values), fmt)
    if len(values) < 2:
        return middle
    return f"{middle} ({format(min(values), fmt)} to {format(max(values), fmt)})"


def _row(name: str, phase: str, rounds: list[dict[str, Any]], connections: int) -> str:
    first = rounds[0]
    load = (
        f"{first['offered_rate']:,.0f}/s offered"
        if phase == "paced"
        else f"wrk, {connections} conns"
    )
    cpu = {
        role: median(r["cpu_us_per_request"][role] for r in rounds)
        for role in first["cpu_us_per_request"]
    }
    other = max(r["other_cores"] for r in rounds)
    duplicates = sum(r["duplicates"] for r in rounds) / max(1, sum(r["accepted"] for r in rounds))
    commit = (
        f"{median(r['rows_per_commit'] for r in rounds):.1f}" if "rows_per_commit" in first else "-"
    )
    return (
        f"| {name} | {load} | {len(rounds)} "
        f"| {_spread([r['accepted_per_s'] for r in rounds], ',.0f')} "
        f"| {median(r['p50_ms'] for r in rounds):.1f} "
        f"| {_spread([r['p99_ms'] for r in rounds], '.1f')} "
        f"| {duplicates:.1%} "
        f"| {commit} | {cpu['server']:.0f} · {cpu['postgresql']:.0f} · {cpu['redis']:.0f} · "
        f"{cpu['load generator']:.0f} | {median(r['machine_busy'] for r in rounds):.0%} "
        f"| {other:.2f}{' ⚠' if other >= NOISY else ''} |"
    )


def table(results: dict[str, Any]) -> str:
    connections = results["config"]["connections"]
    rows = [
        "| server | load | rounds | accepted/s | p50 ms | p99 ms | duplicate answers "
        "| rows/commit | CPU µs per request: server · PostgreSQL · Redis · load gen "
        "| machine busy | other procs (cores, max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name in SERVERS:
        for phase in ("paced", "saturation"):
            rounds = results.get(name, {}).get(phase)
            if rounds:
                rows.append(_row(name, phase, rounds, connections))
    return "\n".join(rows)


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, wanted, measured, met) for each of the issue's targets that was measured."""
    out: list[tuple[str, str, str, bool]] = []
    bridge, naive = results.get("stripe-bridge"), results.get("naive")
    if bridge and naive:
        pairs = list(zip(bridge["saturation"], naive["saturation"], strict=False))
        ratios = [ours["accepted_per_s"] / theirs["accepted_per_s"] for ours, theirs in pairs]
        ours = median(r["accepted_per_s"] for r in bridge["saturation"])
        theirs = median(r["accepted_per_s"] for r in naive["saturation"])
        ratio = median(ratios)
        out.append(
            (
                "ingest at saturation vs naive",
                f"≥ {TARGET_RATIO:.0f}x",
                f"{_spread(ratios, '.2f')}x (median {ours:,.0f} vs {theirs:,.0f}/s)",
                ratio >= TARGET_RATIO,
            )
        )
    if bridge:
        p99s = [r["p99_ms"] for r in bridge["paced"]]
        out.append(
            (
                f"p99 ack at {results['config']['rate']:,.0f}/s offered",
                f"< {TARGET_P99_MS:.0f} ms",
                f"{_spread(p99s, '.1f')} ms",
                median(p99s) < TARGET_P99_MS,
            )
        )
    apply = results.get("apply")
    if apply:
        applied = apply["applied_per_s"]
        if apply["left_received"]:
            projected = apply["backlog"] / applied if applied else float("inf")
            drained = (
                f"{apply['left_received']:,} of {apply['backlog']:,} still waiting after "
                f"{apply['seconds_from_launch']:.0f} s; all would take ≈ {projected:.0f} s"
            )
        else:
            drained = (
                f"{apply['backlog']:,} events, all applied "
                f"{apply['seconds_from_launch']:.1f} s after the workers started"
            )
        out.append(
            (
                "events applied by the workers (Redis broker)",
                f"≥ {TARGET_APPLIED:,.0f}/s",
                f"{applied:,.0f}/s ({drained})",
                applied >= TARGET_APPLIED and not apply["left_received"],
            )
        )
    spread = results.get("workspaces")
    if spread:
        count = spread["count"]
        for part, key in (("ingest", "ingest_ratio"), ("apply", "apply_ratio")):
            out.append(
                (
                    f"{part} spread over {count} workspaces vs one (same run)",
                    f"≥ {WORKSPACES_RATIO:.2f}x",
                    f"{spread[key]:.2f}x",
                    spread[key] >= WORKSPACES_RATIO,
                )
            )
        for fair in spread["fairness"]:
            if fair["mode"] != "bulk":
                continue
            quiet = fair["quiet"]
            p99 = quiet["p99_s"] if quiet["p99_s"] is not None else float("inf")
            out.append(
                (
                    "quiet workspaces' events applied (p99) while a noisy one replays "
                    f"{fair['noisy_applied']:,} dead letters",
                    f"< {TARGET_FAIR_S:.0f} s",
                    f"{p99 * 1e3:,.0f} ms (p50 {(quiet['p50_s'] or 0) * 1e3:,.0f} ms, "
                    f"max {(quiet['max_s'] or 0) * 1e3:,.0f} ms, {quiet['events']:,} events)",
                    p99 < TARGET_FAIR_S and not quiet["unapplied"],
                )
            )
    return out


def workspaces_lines(spread: dict[str, Any]) -> list[str]:
    lines = ["", f"Workspaces ({spread['count']}): single and spread in the order S, M, M, S"]
    for shape, runs in spread["runs"].items():
        ingest = ", ".join(f"{run['ingest']['accepted_per_s']:,.0f}" for run in runs)
        applied = ", ".join(f"{run['apply']['applied_per_s']:,.0f}" for run in runs)
        lines.append(f"- {shape}: ingest {ingest}/s; workers {applied} events/s")
    for fair in spread["fairness"]:
        quiet = fair["quiet"]
        lines.append(
            f"- fairness, noisy {fair['mode']}: {fair['noisy_applied']:,} noisy events applied, "
            f"all drained {fair['seconds_to_drain']:.1f} s after the noisy work began; quiet "
            f"events {quiet['events']:,}: applied after p50 {(quiet['p50_s'] or 0) * 1e3:,.0f} "
            f"ms, p99 {(quiet['p99_s'] or 0) * 1e3:,.0f} ms, max "
            f"{(quiet['max_s'] or 0) * 1e3:,.0f} ms; other processes "
            f"{fair['other_cores']:.2f} cores"
        )
        alone = fair.get("quiet_alone")
        if alone:
            lines.append(
                f"  - the quiet workspaces alone, before the noisy work: {alone['events']:,} "
                f"events, p50 {(alone['p50_s'] or 0) * 1e3:,.0f} ms, p99 "
                f"{(alone['p99_s'] or 0) * 1e3:,.0f} ms"
            )
    return lines


def render(results: dict[str, Any]) -> str:
    machine, config = results["machine"], results["config"]
    lines = [
        f"{machine['date']}: {machine['nproc']} x {machine['cpu_model']}, "
        f"{machine['memory_gb']} GB; PostgreSQL {machine['postgresql']}; Redis {machine['redis']}; "
        f"{machine['wrk']}; Python {machine['python']}; stripe-bridge {results['commit']}",
        "",
        table(results),
        "",
        "| target | wanted | measured (median, range over rounds) | |",
        "|---|---|---|---|",
    ]
    for label, wanted, measured, ok in verdicts(results):
        lines.append(f"| {label} | {wanted} | {measured} | {'met' if ok else '**missed**'} |")
    apply = results.get("apply")
    if apply:
        cpu = apply["cpu_us_per_event"]
        lines.append(
            f"\nworkers: {config['workers']} processes x {config['worker_threads']} threads; "
            f"{apply['by_status']}; CPU µs per event: workers {cpu['workers']:.0f} · PostgreSQL "
            f"{cpu['postgresql']:.0f} · Redis {cpu['redis']:.0f}; machine busy "
            f"{apply['machine_busy']:.0%}; other processes {apply['other_cores']:.2f} cores"
        )
    if results.get("workspaces"):
        lines += workspaces_lines(results["workspaces"])
    checks = [
        f"{name} {phase}: {r['stored']:,} rows stored for "
        f"{r['accepted'] - r['duplicates']:,} non-duplicate answers"
        for name in SERVERS
        for phase in ("paced", "saturation")
        for r in results.get(name, {}).get(phase, [])
        if not r.get("consistent", True)
    ]
    if checks:
        lines += ["", "INCONSISTENT (a bug, not a performance problem):", *checks]
    if "profile_web" in results:
        lines += ["", "Where the web process spends its Python CPU at saturation (py-spy --gil):",
                  "```", results["profile_web"], "```"]  # fmt: skip
    if "profile_web_spread" in results:
        lines += ["", "The same, deliveries spread over the workspaces (py-spy --gil):", "```",
                  results["profile_web_spread"], "```"]  # fmt: skip
    if "profile_apply" in results:
        lines += ["", "Where the workers spend their Python CPU (py-spy --gil):", "```",
                  results["profile_apply"]["profile"], "```"]  # fmt: skip
    lines.append(f"\n(run took {results['total_seconds']:.0f} s)")
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> str:
    text = render(results)
    (out / "summary.md").write_text(text + "\n")
    (out / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str)
    )
    return text
