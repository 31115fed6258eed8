"""The periodic role: re-enqueue stranded events (sweeper) and start syncs on their cadence.

Cadence: customers and products are synced every BRIDGE_SYNC_INTERVAL seconds (default 900)
while connected, measured from the last run's start as recorded in the database, so a restart
neither skips nor doubles a run."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.inbox.sweeper import sweep_once
from stripe_bridge.models import SyncRun, utcnow
from stripe_bridge.operators.maintenance import prune

log = structlog.get_logger(__name__)

CADENCE_KINDS = ("customers", "products")
TICK_SECONDS = 30
PRUNE_EVERY = timedelta(hours=1)


def sweep(bridge: Context) -> int:
    """One sweep with the configured grace (the worker's loop, the scheduler, tests)."""
    grace = timedelta(seconds=bridge.settings.sweep_grace)
    return sweep_once(bridge.session_factory, bridge.jobs, grace)


class Scheduler:
    def __init__(self, bridge: Context) -> None:
        self.bridge = bridge
        self._enqueued_at: dict[str, datetime] = {}
        self._last_sweep: datetime | None = None
        self._last_prune: datetime | None = None

    def due_syncs(self) -> list[str]:
        now = utcnow()
        interval = timedelta(seconds=self.bridge.settings.sync_interval)
        with self.bridge.session_factory() as session:
            row = connection.get(session)
            if not connection.is_connected(row):
                return []
            due = []
            for kind in CADENCE_KINDS:
                last = session.scalar(
                    select(SyncRun.started_at)
                    .where(SyncRun.kind == kind)
                    .order_by(SyncRun.id.desc())
                    .limit(1)
                )
                sent = self._enqueued_at.get(kind)
                if all(at is None or now - at >= interval for at in (last, sent)):
                    due.append(kind)
        return due

    def tick(self) -> list[str]:
        """One pass: sweep when due, enqueue the syncs that are due; answers the kinds sent."""
        now = utcnow()
        sweep_every = timedelta(seconds=self.bridge.settings.sweep_interval)
        if self._last_sweep is None or now - self._last_sweep >= sweep_every:
            sweep(self.bridge)
            self._last_sweep = now
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            prune(self.bridge)
            self._last_prune = now
        sent = []
        for kind in self.due_syncs():
            self.bridge.jobs.send_sync(kind, "schedule")
            self._enqueued_at[kind] = now
            sent.append(kind)
            log.info("scheduled sync", sync_kind=kind)
        return sent

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                log.error("scheduler tick failed; will try again", error=repr(exc))
            stop.wait(min(TICK_SECONDS, self.bridge.settings.sweep_interval))
