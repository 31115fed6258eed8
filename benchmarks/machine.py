"""The machine under test: what it is, which processes use its CPU, and the processes we start.

CPU time comes from /proc (utime + stime of each process) and getrusage for children that
exited; a phase's CPU seconds per accepted request say where the time went at the coarsest level
(our server, PostgreSQL, Redis, the load generator)."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psycopg
import redis

TICK = os.sysconf("SC_CLK_TCK")


def describe(pg_url: str, redis_url: str) -> dict[str, object]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(pg_url, autocommit=True) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "unknown"
        settings = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections')"
            ).fetchall()
        )
    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()
    wrk = shutil.which("wrk")
    wrk_version = "not installed"
    if wrk:
        done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        banner = (done.stdout or done.stderr).splitlines()[0]
        wrk_version = banner.split(" Copyright")[0].strip()
    return {
        "date": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_settings": settings,
        "redis": redis_version,
        "wrk": wrk_version,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
    return pids


def postgres_pids(databases: str) -> tuple[list[int], list[int]]:
    """(ours, others): the server's shared processes and the backends of the databases named
    `databases…` are ours; backends of other databases (someone else's tests) are not."""
    ours, others = [], []
    for pid in pids_named("postgres"):
        # a backend's title is "postgres: 15/main: <user> <database> <client> <state>"
        parts = _cmdline(pid).split()
        is_backend = len(parts) >= 5 and parts[0] == "postgres:" and "(" in parts[4]
        (others if is_backend and not parts[3].startswith(databases) else ours).append(pid)
    return ours, others


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuMeter:
    """CPU seconds by role over one phase: our processes (`pids`), PostgreSQL (the server and
    our databases' backends), Redis, the load generator (children that exited), and `other`:
    whatever else kept the machine busy (on a shared machine, someone else's tests).

    CPU accounting in a VM is coarse (a process waiting on a socket can be charged a little),
    so read these as where the time roughly goes, not to the microsecond."""

    pids: Mapping[str, Sequence[int]]
    databases: str  # the prefix of our databases' names
    seconds: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0  # share of all CPUs
    wall: float = 0.0
    _start: dict[int, float] = field(default_factory=dict)
    _children: float = 0.0
    _machine: tuple[int, int] = (0, 0)
    _began: float = 0.0

    def _roles(self) -> dict[str, list[int]]:
        roles = {role: list(pids) for role, pids in self.pids.items()}
        roles["postgresql"] = postgres_pids(self.databases)[0]
        roles["redis"] = pids_named("redis-server")
        return roles

    @staticmethod
    def _children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> CpuMeter:
        self._start = {pid: process_cpu(pid) for pids in self._roles().values() for pid in pids}
        self._children = self._children_cpu()
        self._machine = machine_ticks()
        self._began = time.monotonic()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.monotonic() - self._began
        self.seconds = {
            role: sum(max(0.0, process_cpu(pid) - self._start.get(pid, 0.0)) for pid in pids)
            for role, pids in self._roles().items()
        }
        self.seconds["load generator"] = self._children_cpu() - self._children
        busy, total = machine_ticks()
        cpus = os.cpu_count() or 1
        self.machine_busy = (busy - self._machine[0]) / max(1, total - self._machine[1])
        busy_seconds = (busy - self._machine[0]) / TICK
        self.seconds["other"] = max(0.0, busy_seconds - sum(self.seconds.values()))
        self.seconds["idle"] = max(0.0, self.wall * cpus - busy_seconds)


def wait_for_quiet(databases: str, *, limit: float, threshold: float = 0.15) -> float:
    """Wait (at most `limit` s) until processes other than ours use under `threshold` of a core
    for two 0.5 s windows in a row; answers that share at the end (a note for the report)."""
    deadline = time.monotonic() + limit
    calm = 0
    share = 0.0
    while True:
        with CpuMeter({}, databases) as meter:
            time.sleep(0.5)
        share = meter.seconds["other"] / max(meter.wall, 1e-3)
        calm = calm + 1 if share < threshold else 0
        if calm >= 2 or time.monotonic() >= deadline:
            return share


class Process:
    """A subprocess we started: output to a log file, stopped by its pid with SIGINT, then
    SIGTERM, then SIGKILL, each bounded in time."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path
    ) -> None:
        self.name = name
        self.log = log
        self._out: IO[bytes] = log.open("ab")
        self.popen = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 15.0) -> None:
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        self._out.close()


def wait_until_ready(
    process: Process, port: int, path: str = "/healthz", timeout: float = 30
) -> None:
    """Poll GET `path` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited at start:\n{process.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as sock:
            sock.sendall(request)
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} not ready after {timeout} s:\n{process.tail()}")


def stop_all(processes: Iterable[Process]) -> None:
    for process in processes:
        process.stop()
