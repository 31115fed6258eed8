"""Jobs for stored Stripe events, gathered across group commits into bigger batch jobs.

A group commit stores whatever arrived together, often a handful of events; a worker applies a
batch of a hundred for a fraction of the cost per event of a batch of five. So the web does not
send a job per group commit: the sender collects the new ids and sends them `linger` seconds
after the first one waits, or at once when a full batch waits, in one Redis round trip.

The ids wait only in memory, like a job the broker has not acknowledged yet: if the process dies
before sending them, they are still `received` in the inbox and the sweeper sends them after its
grace period. Stopping the sender sends whatever waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import structlog

from stripe_bridge.inbox.batch import BATCH_SIZE

log = structlog.get_logger(__name__)


class JobSender:
    def __init__(
        self, send: Callable[[list[str]], object], *, linger: float, size: int = BATCH_SIZE
    ) -> None:
        self._send, self._linger, self._size = send, linger, size
        self._pending: list[str] = []
        self._first_at = 0.0
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="job-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, event_ids: Iterable[str]) -> None:
        event_ids = list(event_ids)
        if not event_ids:
            return
        with self._changed:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.extend(event_ids)
            self._changed.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what waits, then stop the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[str] | None:
        """Wait until something is due (or stopping with nothing left: None)."""
        with self._changed:
            while True:
                if self._pending:
                    due = self._first_at + self._linger - time.monotonic()
                    if due <= 0 or len(self._pending) >= self._size or self._stopping:
                        batch, self._pending = self._pending, []
                        return batch
                    self._changed.wait(due)
                elif self._stopping:
                    return None
                else:
                    self._changed.wait()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._send(batch)
            except Exception as exc:  # the sweeper sends them later; the thread must live on
                log.error("could not send jobs", events=len(batch), error=type(exc).__name__)
