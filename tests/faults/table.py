"""Prints the figures the fault scenarios recorded (JSON lines) as one Markdown table.

    python -m tests.faults.table REPORT

Whatever scenarios are in the report are printed, in the order they first appear, a row each
with every figure it recorded, under a line naming the machine (CPU model, cores) and the date."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def _value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def table(lines: list[dict[str, Any]]) -> str:
    """One row per scenario: its size and every figure it recorded, `name value` apart."""
    out = [
        f"Machine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}",
        "",
        "| scenario | size | figures |",
        "|---|---|---|",
    ]
    for line in lines:
        scenario, size = line.pop("scenario", "?"), line.pop("size", "?")
        figures = " · ".join(f"{name.replace('_', ' ')} {_value(v)}" for name, v in line.items())
        out.append(f"| {scenario} | {size} | {figures} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.faults.table REPORT", file=sys.stderr)
        return 2
    path = Path(argv[0])
    raw = path.read_bytes().splitlines() if path.exists() else []
    lines = [orjson.loads(raw_line) for raw_line in raw if raw_line.strip()]
    if not lines:
        print(f"no figures in {path} (did every scenario fail before recording?)")
        return 1
    print(table(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
