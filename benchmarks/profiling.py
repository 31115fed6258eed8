"""Where the time goes: py-spy samples of a running process, summarised as text.

run.py samples with `--gil` (only the thread holding the GIL), so the shares are shares of the
process's Python CPU, the resource a saturated process runs out of; time spent waiting for
PostgreSQL or Redis with the GIL released is not in them. Each sample is charged to the
innermost frame that belongs to a known library (psycopg, SQLAlchemy, dramatiq, redis-py, the
Stripe SDK, Starlette, uvicorn, logging, the bridge itself…), so "SQLAlchemy 30 %" means 30 % of
the thread's samples were in SQLAlchemy's own Python code (not in the psycopg or socket calls it
made). Per thread, so the event loop and the inbox writer are apart."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = (  # (substring of a frame's file path, label); first match from the leaf wins
    ("/dramatiq/", "dramatiq"),
    ("/redis/", "redis-py"),
    ("/psycopg", "psycopg"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/stripe/", "Stripe SDK (verify_header)"),
    ("/structlog/", "logging"),
    ("/logging/", "logging"),
    ("/stripe_bridge/inbox/store", "bridge: group commit"),
    ("/stripe_bridge/handlers/", "bridge: handlers"),
    ("/stripe_bridge/", "bridge: other"),
    ("/benchmarks/", "reference server"),
    ("/starlette/", "Starlette"),
    ("/uvicorn/", "uvicorn"),
    ("/anyio/", "anyio"),
    ("/asyncio/", "asyncio"),
    ("/uvloop/", "asyncio"),
    ("/concurrent/", "thread pool"),
    ("threading.py", "threading"),
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def executable() -> str | None:
    """py-spy next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    return executable() is not None


def record(
    pid: int, seconds: float, output: Path, *, rate: int = 200, gil: bool = False
) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` (without pausing it) into a collapsed-stack file;
    with `gil`, only the thread holding the GIL is sampled (where the Python CPU goes)."""
    argv = [
        executable() or "py-spy", "record", "--pid", str(pid),
        "--duration", str(max(1, round(seconds))), "--rate", str(rate),
        "--nonblocking", "--threads", "--full-filenames",
        "--format", "raw", "--output", str(output), *(["--gil"] if gil else []),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class ThreadProfile:
    name: str
    samples: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    leaf: Counter[str] = field(default_factory=Counter)


def _label(frame: str) -> tuple[str, str]:
    """(category, `function (file)`) of a frame."""
    match = FRAME.match(frame)
    function, path = (match["function"], match["file"]) if match else (frame, "")
    short = "/".join(path.split("/")[-2:])
    category = next((label for needle, label in CATEGORIES if needle in path), "other")
    return category, f"{function} ({short})"


def parse(paths: list[Path]) -> dict[str, ThreadProfile]:
    threads: dict[str, ThreadProfile] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            thread_frame = frames.pop(0) if frames[0].startswith("thread (") else "thread"
            name = thread_frame.split(": ", 1)[-1]
            name = re.sub(r"[-_]?\d+$", "", name) or name  # pool threads share one name
            profile = threads.setdefault(name, ThreadProfile(name))
            profile.samples += count
            labels = [_label(frame) for frame in frames]
            category = next(
                (cat for cat, _ in reversed(labels) if cat != "other"),
                labels[-1][0] if labels else "other",
            )
            profile.categories[category] += count
            for function in {function for _, function in labels}:
                profile.inclusive[function] += count
            if labels:
                profile.leaf[labels[-1][1]] += count
    return threads


def summarise(paths: list[Path], *, top: int = 12, min_share: float = 0.03) -> str:
    threads = sorted(parse(paths).values(), key=lambda profile: -profile.samples)
    total = sum(profile.samples for profile in threads)
    if not total:
        return "  (no samples)"
    out: list[str] = []
    for profile in threads:
        if profile.samples / total < min_share:
            continue
        out.append(
            f"  thread {profile.name}: {profile.samples} busy samples "
            f"({profile.samples / total:.0%} of all)"
        )
        out.append("    by library (innermost known frame):")
        for category, count in profile.categories.most_common(top):
            out.append(f"      {count / profile.samples:6.1%}  {category}")
        out.append("    hottest functions (inclusive):")
        inclusive = [
            (function, count)
            for function, count in profile.inclusive.most_common(top + 12)
            if count < profile.samples * 0.98  # skip the frames every sample passes through
        ][:top]
        for function, count in inclusive:
            out.append(f"      {count / profile.samples:6.1%}  {function}")
        out.append("    self time (leaf frames):")
        for function, count in profile.leaf.most_common(8):
            out.append(f"      {count / profile.samples:6.1%}  {function}")
    return "\n".join(out)
