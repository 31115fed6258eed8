"""What every fault scenario shares: its size, and the figures it reports.

`BRIDGE_FAULTS_SIZE=full` (what `./scripts/faults` sets) runs each scenario at full size; the
default is the reduced size CI runs on every change. A scenario calls `record(name, **figures)`
once it has its numbers; when `BRIDGE_FAULTS_REPORT` names a file, each call appends one JSON
line to it, and `./scripts/faults` prints them as one table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

FULL = os.environ.get("BRIDGE_FAULTS_SIZE", "ci") == "full"


def size(ci: int, full: int) -> int:
    """The scenario's size in this run: `ci` by default, `full` under `./scripts/faults`."""
    return full if FULL else ci


def record(scenario: str, **figures: Any) -> None:
    target = os.environ.get("BRIDGE_FAULTS_REPORT")
    if not target:
        return
    line = orjson.dumps({"scenario": scenario, "size": "full" if FULL else "ci", **figures})
    with Path(target).open("ab") as report:
        report.write(line + b"\n")
