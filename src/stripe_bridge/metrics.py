"""Prometheus metrics. Counters and histograms are kept per process; with several web and
worker processes set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them, cleared at
deploy) and /metrics aggregates them. Gauges that describe the database (inbox lag, outbox
backlog, dead letters, last sync) are read from it at scrape time, so every process agrees."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from stripe_bridge.models import (
    CONNECTED,
    DEAD,
    FAILED,
    IN_FLIGHT,
    PENDING,
    RECEIVED,
    Connection,
    OutboxRow,
    StripeEvent,
    SyncRun,
    VelesEvent,
    utcnow,
)

if TYPE_CHECKING:
    from stripe_bridge.bootstrap import Bridge

WEBHOOKS = Counter(
    "bridge_webhooks_received_total",
    "Deliveries answered, by endpoint and result",
    ["source", "result"],
)
EVENTS = Counter(
    "bridge_events_total",
    "Events taken by a job, by source, type and outcome",
    ["source", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "bridge_handler_seconds",
    "Time to apply one event",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
STRIPE_CALLS = Counter(
    "bridge_stripe_calls_total", "Stripe API calls, by call and result", ["call", "result"]
)
STRIPE_SECONDS = Histogram(
    "bridge_stripe_call_seconds", "Stripe API call latency (with retries)", ["call"]
)
OUTBOX = Counter(
    "bridge_outbox_rows_total",
    "Outbox rows handled by the relay, by kind and outcome",
    ["kind", "outcome"],
)
SYNC_RUNS = Counter(
    "bridge_sync_runs_total", "Sync runs, by kind and final status", ["kind", "status"]
)

_NUMBERS = re.compile(r"\s*\d+$")


def call_name(what: str) -> str:
    """`create invoice item 3` → `create invoice item` (bounded label values)."""
    return _NUMBERS.sub("", what)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

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
            "When each sync kind last completed",
            labels=["kind"],
        )
        up = GaugeMetricFamily(
            "bridge_stripe_connected", "1 when the Stripe connection is connected"
        )
        with self.bridge.session_factory() as session:
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
            for kind, finished in session.execute(
                select(SyncRun.kind, func.max(SyncRun.finished_at))
                .where(SyncRun.status == "completed")
                .group_by(SyncRun.kind)
            ).all():
                synced.add_metric([kind], finished.timestamp() if finished else 0.0)
            connection = session.get(Connection, 1)
            up.add_metric(
                [], 1.0 if connection is not None and connection.status == CONNECTED else 0.0
            )
        yield from (lag, dead, backlog, synced, up)


def exposition(bridge: Bridge) -> bytes:
    """The /metrics body: this process's (or all processes') metrics, then the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        own = generate_latest(registry)
    else:
        own = generate_latest(REGISTRY)
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(bridge))
    return own + generate_latest(database)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
