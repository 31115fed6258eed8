"""`stripe-bridge serve` as an operator first runs it: the embedded default, end to end.

No BRIDGE_DATABASE_URL and no BRIDGE_REDIS_URL: SQLite under ./var/ and the in-process broker.
The console script runs as a real process; the tests talk to it over HTTP only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from stripe_bridge.inbox.door import sign
from tests.support import free_port, load_fixture

pytestmark = pytest.mark.slow

SECRET = "whsec_smoke_0123456789"
TOKEN = "smoke-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
STARTUP_SECONDS = 30
APPLY_SECONDS = 20
STOP_SECONDS = 10

T = TypeVar("T")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    http: httpx.Client
    log_path: Path
    exit_code: int | None = None  # set when stopped; None if it had to be killed

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def poll(self, what: str, seconds: float, attempt: Callable[[], T | None]) -> T:
        """`attempt()` until it answers something other than None, serve dies, or time is up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.process.returncode} while waiting for {what}:\n"
                    + self.output()[-3000:]
                )
            result = attempt()
            if result is not None:
                return result
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {seconds} s:\n" + self.output()[-3000:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECONDS."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
                return
        self.exit_code = self.process.returncode


@contextmanager
def serving(cwd: Path) -> Iterator[Served]:
    """The venv's console script, started in `cwd` with only a webhook secret and an admin
    token in its environment, and answering /healthz; stopped on the way out."""
    script = Path(sys.executable).with_name("stripe-bridge")
    assert script.is_file(), f"console script not installed at {script}"
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(cwd)),
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "BRIDGE_ADMIN_TOKEN": TOKEN,
    }
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(script), "serve", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        served = Served(process, http, log_path)
        try:

            def healthy() -> bool | None:
                try:
                    return http.get("/healthz").status_code == 200 or None
                except httpx.TransportError:
                    return None

            served.poll("/healthz", STARTUP_SECONDS, healthy)
            yield served
        finally:
            served.stop()


def deliver(http: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    body = orjson.dumps(payload)
    headers = {
        "Stripe-Signature": sign(body, SECRET, int(time.time())),
        "Content-Type": "application/json",
    }
    return http.post("/webhooks/stripe", content=body, headers=headers)


def test_serve_with_the_embedded_default_mirrors_a_customer_update(tmp_path: Path) -> None:
    created = load_fixture("current", "customer.created")
    updated = load_fixture("current", "customer.updated")

    with serving(tmp_path) as served:
        # When: Stripe delivers the customer's creation, then its rename
        answers = [deliver(served.http, created), deliver(served.http, updated)]

        # Then: both are acknowledged as new, and the mirror soon shows the new name
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"received": True, "duplicate": False}

        def mirrored() -> dict[str, Any] | None:
            customers = served.http.get("/admin/api/customers", headers=ADMIN)
            events = served.http.get("/admin/api/events", headers=ADMIN)
            assert customers.status_code == 200, customers.text
            assert events.status_code == 200, events.text
            rows = customers.json()["data"]
            statuses = {row["id"]: row["status"] for row in events.json()["data"]}
            applied = set(statuses.values()) == {"processed"}
            if rows and rows[0]["name"] == "Acme Corporation" and applied:
                return {"customers": rows, "events": statuses}
            return None

        state = served.poll("the updated customer", APPLY_SECONDS, mirrored)
        [customer] = state["customers"]
        assert customer["id"] == "cus_QmR4ckT3stAcme01"
        assert customer["email"] == "billing@acme.example"
        assert state["events"] == {created["id"]: "processed", updated["id"]: "processed"}
        assert (tmp_path / "var" / "stripe-bridge.db").is_file()
        assert served.http.get("/readyz").status_code == 200

    assert served.process.poll() is not None, "serve is still running after SIGKILL"
    assert served.exit_code is not None, f"serve ignored SIGTERM for {STOP_SECONDS} s"
    output = served.output()
    assert SECRET not in output
    assert TOKEN not in output


def test_serve_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    # Given: serve up and answering
    with serving(tmp_path) as served:
        assert served.http.get("/readyz").status_code == 200
    # When: the serving block ends, serve gets SIGTERM (what a process manager sends)

    # Then: it stops its worker and sweeper and exits 0 of its own accord within 10 s
    assert served.exit_code == 0, (
        f"serve ended with {served.exit_code} (None: killed; negative: the signal's number)\n"
        + served.output()[-2000:]
    )
