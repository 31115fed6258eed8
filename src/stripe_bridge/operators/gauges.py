"""The /metrics scrape: the processes' counters, then gauges read from the database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.connection import is_connected
from stripe_bridge.models import (
    CONNECTED,
    DEAD,
    DEFAULT_WORKSPACE,
    FAILED,
    IN_FLIGHT,
    NOT_CONNECTED,
    PENDING,
    RECEIVED,
    Connection,
    OutboxRow,
    StripeEvent,
    SyncRun,
    VelesEvent,
    Workspace,
    utcnow,
)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        lag = GaugeMetricFamily(
            "bridge_inbox_oldest_unprocessed_seconds",
            "Age of the oldest event not yet applied",
            labels=["source"],
        )
        dead = GaugeMetricFamily(
            "bridge_dead_letters",
            "Work that failed for good, waiting for an operator",
            labels=["kind"],
        )
        backlog = GaugeMetricFamily(
            "bridge_outbox_rows",
            "Outbox rows not yet sent, by kind and status",
            labels=["kind", "status"],
        )
        synced = GaugeMetricFamily(
            "bridge_sync_last_success_timestamp_seconds",
            "When each sync kind last completed, in the workspace least recently synced",
            labels=["kind"],
        )
        up = GaugeMetricFamily(
            "bridge_stripe_connected", "1 when the default workspace's connection is connected"
        )
        workspaces = GaugeMetricFamily(
            "bridge_workspaces", "Workspaces by connection status", labels=["status"]
        )
        with self.session_factory() as session:
            for source, inbox in (("stripe", StripeEvent), ("veles", VelesEvent)):
                oldest = session.scalar(
                    select(func.min(inbox.received_at)).where(inbox.status == RECEIVED)
                )
                lag.add_metric([source], (now - oldest).total_seconds() if oldest else 0.0)
                failed = session.scalar(
                    select(func.count()).select_from(inbox).where(inbox.status == FAILED)
                )
                dead.add_metric(["event" if source == "stripe" else "veles"], float(failed or 0))
            rows = session.execute(
                select(OutboxRow.kind, OutboxRow.status, func.count())
                .where(OutboxRow.status.in_((PENDING, IN_FLIGHT, DEAD)))
                .group_by(OutboxRow.kind, OutboxRow.status)
            ).all()
            dead_outbox = 0
            for kind, status, count in rows:
                backlog.add_metric([kind, status], float(count))
                dead_outbox += count if status == DEAD else 0
            dead.add_metric(["outbox"], float(dead_outbox))
            for kind, finished in _least_recent_syncs(session):
                synced.add_metric([kind], finished.timestamp() if finished else 0.0)
            default = session.get(Connection, DEFAULT_WORKSPACE)
            up.add_metric([], 1.0 if is_connected(default) else 0.0)
            for status, count in _workspaces_by_status(session):
                workspaces.add_metric([status], float(count))
        yield from (lag, dead, backlog, synced, up, workspaces)


def _least_recent_syncs(session: Session) -> list[tuple[str, datetime | None]]:
    """Each kind's last completed sync in the connected workspace least recently synced
    (bounded labels: the admin API's per-workspace status names the workspace)."""
    connected = select(Connection.workspace_id).where(Connection.status == CONNECTED)
    last = (
        select(SyncRun.kind, func.max(SyncRun.finished_at).label("finished"))
        .where(SyncRun.status == "completed", SyncRun.workspace_id.in_(connected))
        .group_by(SyncRun.workspace_id, SyncRun.kind)
        .subquery()
    )
    query = select(last.c.kind, func.min(last.c.finished)).group_by(last.c.kind)
    return [(kind, finished) for kind, finished in session.execute(query)]


def _workspaces_by_status(session: Session) -> list[tuple[str, int]]:
    counts = [
        (status, int(count))
        for status, count in session.execute(
            select(Connection.status, func.count()).group_by(Connection.status)
        )
    ]
    unconnected = session.scalar(
        select(func.count())
        .select_from(Workspace)
        .where(~Workspace.id.in_(select(Connection.workspace_id)))
    )
    return [*counts, (NOT_CONNECTED, int(unconnected or 0))]


def exposition(session_factory: sessionmaker[Session], multiprocess_dir: Path | None) -> bytes:
    """The /metrics body: this process's (or, with `PROMETHEUS_MULTIPROC_DIR`, all processes')
    metrics, then the database's."""
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        own = generate_latest(registry)
    else:
        own = generate_latest(REGISTRY)
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(session_factory))
    return own + generate_latest(database)
