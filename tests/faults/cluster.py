"""The production topology of the fault suite: its own servers and the roles as processes.

`Postgres` is a cluster of its own (`initdb` into a temporary directory owned by the
`postgres` OS user, fsync on, a free port, its unix socket in that directory) so it can be
restarted with `pg_ctl restart -m immediate`; `Redis` is a `redis-server` without persistence,
so stopping it loses every queued job. `Roles` runs `stripe-bridge <role>` processes the way
the Procfile does, each in its own process group with its output in a log file, and kills
them all on the way out. Every wait here is bounded and raises with the logs' tails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg

PG_BIN = Path(os.environ.get("BRIDGE_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
DATABASE = "db"
START_SECONDS = 30
STOP_SECONDS = 10
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(
    what: str,
    seconds: float,
    attempt: Callable[[], T | None],
    tails: Callable[[], str] = lambda: "",
) -> T:
    """`attempt()` until it answers something other than None; AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s\n{tails()}")
        time.sleep(0.2)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"--- {path.name}: (no file)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text)


def _as_postgres(*argv: str) -> list[str]:
    """Run a PostgreSQL binary as the `postgres` OS user (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *argv]
    return list(argv)


class Postgres:
    """A PostgreSQL cluster in `root/pg` (data, socket, log), listening on 127.0.0.1:port."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.data, self.socket_dir, self.log = self.dir / "data", self.dir / "run", root / "pg.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, seconds: float = START_SECONDS) -> None:
        result = subprocess.run(
            _as_postgres(*argv), capture_output=True, text=True, timeout=seconds
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
                f"\n{tail(self.log)}"
            )

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir.parent, PG_USER)
            for path in (self.dir, self.socket_dir):
                shutil.chown(path, PG_USER, PG_USER)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            seconds=60,
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c max_connections=200 -c shared_buffers=64MB"
        )

    def start(self) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-w",
            "-t",
            str(START_SECONDS),
            "start",
        )

    def restart_immediate(self) -> None:
        """What a crash and a quick recovery look like to the roles: every connection drops."""
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self._options(),
            "-m",
            "immediate",
            "-w",
            "-t",
            str(START_SECONDS),
            "restart",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres(
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    str(STOP_SECONDS),
                    "stop",
                ),
                capture_output=True,
                timeout=STOP_SECONDS + 5,
            )

    def create_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")


class Redis:
    """`redis-server` on a free port with no persistence: a stop loses every queued job."""

    def __init__(self, root: Path) -> None:
        self.dir, self.log = root / "redis", root / "redis.log"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import redis

        def answers() -> bool | None:
            client = redis.Redis.from_url(self.url, socket_timeout=1)
            try:
                return bool(client.ping()) or None
            except redis.RedisError:
                return None
            finally:
                client.close()

        wait_for("redis PING", START_SECONDS, answers, lambda: tail(self.log))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)
        self.process = None


class Roles:
    """`stripe-bridge <role>` processes by name, each with its log file in `root`."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root, self.env = root, dict(env)
        self.script = Path(sys.executable).with_name("stripe-bridge")
        assert self.script.is_file(), f"console script not installed at {self.script}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.web_port = free_port()

    def run(self, *argv: str, seconds: float = 60) -> str:
        """A one-shot command (`migrate`, `sync products`); its output, or AssertionError."""
        result = subprocess.run(
            [str(self.script), *argv],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=seconds,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"stripe-bridge {' '.join(argv)} exited {result.returncode}\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start (or start again) the process `name`; its log file is appended to."""
        old = self.processes.get(name)
        assert old is None or old.poll() is not None, f"{name} is still running"
        log_path = self.logs.setdefault(name, self.root / f"{name}.log")
        with log_path.open("ab") as log:
            log.write(f"=== started {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            process = subprocess.Popen(
                [str(self.script), *argv],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_web(self) -> None:
        self.start("web", "web", "--host", "127.0.0.1", "--port", str(self.web_port))
        self.wait_ready()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_ready(self) -> None:
        def ready() -> bool | None:
            web = self.processes["web"]
            if web.poll() is not None:
                raise AssertionError(f"web exited with {web.returncode}\n{self.tails()}")
            try:
                return httpx.get(f"{self.web_url}/readyz", timeout=2).status_code == 200 or None
            except httpx.TransportError:
                return None

        wait_for("web /readyz", START_SECONDS, ready, self.tails)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(timeout=STOP_SECONDS)
        with self.logs[name].open("ab") as log:
            log.write(f"=== {sig.name} at {time.strftime('%H:%M:%S')}\n".encode())

    def assert_running(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"roles exited on their own: {dead}\n{self.tails()}"

    def stop_all(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after STOP_SECONDS."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_SECONDS)

    def tails(self, lines: int = 30) -> str:
        return "\n".join(tail(path, lines) for path in self.logs.values())


class Cluster:
    """Postgres + Redis + the roles, with the environment of the README's Settings table."""

    def __init__(self, root: Path, stripe_url: str, **env: str) -> None:
        self.root = root
        self.pg, self.redis = Postgres(root), Redis(root)
        base = {
            "PATH": os.environ["PATH"],
            "HOME": str(root),
            "BRIDGE_DATABASE_URL": self.pg.url,
            "BRIDGE_REDIS_URL": self.redis.url,
            "STRIPE_API_BASE": stripe_url,
            "BRIDGE_LOG_FORMAT": "json",
            "BRIDGE_VAR_DIR": str(root / "var"),
        }
        self.roles = Roles(root, {**base, **env})

    def start_servers(self) -> None:
        self.pg.init()
        self.pg.start()
        self.pg.create_database()
        self.redis.start()

    def start_roles(self, workers: int = 2) -> None:
        """What the Procfile runs: `migrate` (release), then web, workers, relay, scheduler."""
        self.roles.run("migrate")
        self.roles.start_web()
        for n in range(1, workers + 1):
            self.roles.start(f"worker-{n}", "worker")
        self.roles.start("relay", "relay")
        self.roles.start("scheduler", "scheduler")

    def tails(self) -> str:
        return "\n".join([self.roles.tails(), tail(self.pg.log, 15), tail(self.redis.log, 10)])

    def stop(self) -> None:
        try:
            self.roles.stop_all()
        finally:
            try:
                self.redis.stop()
            finally:
                self.pg.stop()
