"""The periodic role: re-enqueue stranded events (sweeper) and start syncs on their cadence.

Cadence: each connected workspace's customers and products are synced every
BRIDGE_SYNC_INTERVAL seconds (default 900), measured from the last run's start as recorded in
the database, so a restart neither skips nor doubles a run. The syncs due are spread over the
interval: a tick sends at most its share (all due syncs * tick / interval, the least recently
synced first), so 2,000 workspaces never start 4,000 syncs at once."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select

from stripe_bridge import oauth
from stripe_bridge.context import Context
from stripe_bridge.inbox.sweeper import sweep_once
from stripe_bridge.models import CONNECTED, Connection, SyncRun, utcnow
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
        self._enqueued_at: dict[tuple[str, str], datetime] = {}
        self._last_sweep: datetime | None = None
        self._last_prune: datetime | None = None

    def due_syncs(self) -> list[tuple[str, str]]:
        """(workspace, kind) pairs due now, least recently synced first, at most this tick's
        share of the interval (at least one workspace's kinds)."""
        now = utcnow()
        interval = timedelta(seconds=self.bridge.settings.sync_interval)
        with self.bridge.session_factory() as session:
            connected = list(
                session.scalars(
                    select(Connection.workspace_id).where(Connection.status == CONNECTED)
                )
            )
            last_started = {
                (workspace_id, kind): started
                for workspace_id, kind, started in session.execute(
                    select(SyncRun.workspace_id, SyncRun.kind, func.max(SyncRun.started_at))
                    .where(SyncRun.workspace_id.in_(connected), SyncRun.kind.in_(CADENCE_KINDS))
                    .group_by(SyncRun.workspace_id, SyncRun.kind)
                )
            }
        due: list[tuple[datetime, tuple[str, str]]] = []
        for key in ((ws, kind) for ws in connected for kind in CADENCE_KINDS):
            last, sent = last_started.get(key), self._enqueued_at.get(key)
            if all(at is None or now - at >= interval for at in (last, sent)):
                due.append((last or datetime.min.replace(tzinfo=UTC), key))
        tick = min(TICK_SECONDS, self.bridge.settings.sweep_interval)
        share = math.ceil(len(connected) * len(CADENCE_KINDS) * tick / interval.total_seconds())
        return [key for _last, key in sorted(due)[: max(len(CADENCE_KINDS), share)]]

    def tick(self) -> list[str]:
        """One pass: sweep when due, enqueue the syncs that are due; answers the kinds sent."""
        now = utcnow()
        sweep_every = timedelta(seconds=self.bridge.settings.sweep_interval)
        if self._last_sweep is None or now - self._last_sweep >= sweep_every:
            sweep(self.bridge)
            self._last_sweep = now
        if self.bridge.settings.stripe_platform_key:  # installed apps' tokens, before expiry
            oauth.refresh_due(self.bridge.session_factory, self.bridge.box, self.bridge.gateway)
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            prune(self.bridge)
            self._last_prune = now
        sent = []
        for workspace_id, kind in self.due_syncs():
            self.bridge.jobs.send_sync(workspace_id, kind, "schedule")
            self._enqueued_at[(workspace_id, kind)] = now
            sent.append(kind)
            log.info("scheduled sync", workspace_id=workspace_id, sync_kind=kind)
        return sent

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                log.error("scheduler tick failed; will try again", error=repr(exc))
            stop.wait(min(TICK_SECONDS, self.bridge.settings.sweep_interval))
