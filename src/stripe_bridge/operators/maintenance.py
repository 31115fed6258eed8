"""Recovering events Stripe never delivered, and pruning what is done.

`recover --since DATE` lists events through Stripe's Events API (the types the bridge
handles, at most 20 per request as Stripe allows, 30 days back at most) and stores any the
inbox lacks exactly like a delivery: classified, stored with `ON CONFLICT DO NOTHING`,
enqueued. Retention prunes processed and ignored events and sent outbox rows older than
BRIDGE_RETENTION_DAYS; dead letters stay until replayed or discarded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import structlog
from sqlalchemy import delete

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.inbox.door import Incoming, classify, parse_event
from stripe_bridge.inbox.store import store
from stripe_bridge.models import (
    DISCARDED,
    IGNORED,
    PROCESSED,
    RECEIVED,
    SENT,
    OutboxRow,
    StripeEvent,
    VelesEvent,
    utcnow,
)

log = structlog.get_logger(__name__)

EVENTS_WINDOW = timedelta(days=30)
TYPES_PER_REQUEST = 20
BATCH = 100


@dataclass(frozen=True)
class Recovered:
    listed: int
    stored: int
    already_had: int


def recover(bridge: Context, workspace_id: str, since: datetime) -> Recovered:
    """The workspace's events since `since` that its inbox lacks, stored and applied."""
    now = utcnow()
    if since < now - EVENTS_WINDOW:
        raise BadRequest("Stripe keeps events for 30 days: --since must be within the last 30 days")
    gateway = connection.connected_gateway(
        bridge.session_factory, bridge.box, bridge.gateway, workspace_id, "recover"
    )
    types = sorted(bridge.handlers)
    listed = stored = 0
    for start in range(0, len(types), TYPES_PER_REQUEST):
        chunk = types[start : start + TYPES_PER_REQUEST]
        batch = []
        for event in gateway.iterate(
            "events", types=chunk, created={"gte": int(since.timestamp())}
        ):
            incoming = parse_event(orjson.dumps(event))
            incoming.workspace_id = workspace_id
            classify(incoming, handled=bridge.handlers)
            batch.append(incoming)
            if len(batch) >= BATCH:
                stored += _store(bridge, batch)
                listed += len(batch)
                batch = []
        stored += _store(bridge, batch)
        listed += len(batch)
    log.info(
        "recovered events",
        workspace_id=workspace_id,
        listed=listed,
        stored=stored,
        since=since.isoformat(),
    )
    return Recovered(listed, stored, listed - stored)


def _store(bridge: Context, batch: list[Incoming]) -> int:
    if not batch:
        return 0
    with bridge.session_factory.begin() as session:
        inserted = store(session, StripeEvent, batch)
    [workspace_id] = {item.workspace_id for item in batch}
    bridge.jobs.send_events(
        workspace_id,
        [item.id for item in batch if item.key in inserted and item.status == RECEIVED],
        bulk=True,
    )
    return len(inserted)


@dataclass(frozen=True)
class Pruned:
    stripe_events: int
    veles_events: int
    outbox_rows: int


def prune(bridge: Context, older_than: timedelta | None = None) -> Pruned:
    """Delete finished work older than the retention period, in every workspace; never a dead
    letter."""
    cutoff = utcnow() - (older_than or timedelta(days=bridge.settings.retention_days))
    counts = []
    with bridge.session_factory.begin() as session:
        for inbox in (StripeEvent, VelesEvent):
            result = session.execute(
                delete(inbox).where(
                    inbox.status.in_((PROCESSED, IGNORED, DISCARDED)), inbox.received_at < cutoff
                )
            )
            counts.append(result.rowcount)  # type: ignore[attr-defined]
        result = session.execute(
            delete(OutboxRow).where(
                OutboxRow.status.in_((SENT, DISCARDED)), OutboxRow.created_at < cutoff
            )
        )
        counts.append(result.rowcount)  # type: ignore[attr-defined]
    pruned = Pruned(*counts)
    if any(counts):
        log.info("pruned finished work", **pruned.__dict__, cutoff=cutoff.isoformat())
    return pruned
