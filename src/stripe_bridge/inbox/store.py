"""The inbox tables: storing verified events (a batch in the caller's transaction), the
sweeper's queries, and counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from stripe_bridge.db import insert_ignoring_conflicts
from stripe_bridge.inbox.parse import Incoming
from stripe_bridge.models import (
    RECEIVED,
    Inbox,
    StripeEvent,
    utcnow,
)

log = structlog.get_logger(__name__)


def store(session: Session, inbox: Inbox, batch: Sequence[Incoming]) -> set[str]:
    """Insert a batch in the caller's transaction; answers the ids that were new."""
    if not batch:
        return set()
    now = utcnow()
    rows = [
        {
            "id": item.id,
            "type": item.type,
            "created": item.created,
            "object_id": item.object_id,
            "payload": item.payload,
            "received_at": now,
            "status": item.status,
            "reason": item.reason,
            "attempts": 0,
            **item.extra,
        }
        for item in batch
    ]
    table = inbox.__table__
    statement = insert_ignoring_conflicts(session, table).returning(table.c.id)  # type: ignore[arg-type]
    return set(session.scalars(statement, rows))


def due_for_sweep(
    session: Session, inbox: Inbox, *, grace: timedelta, limit: int = 1000
) -> list[str]:
    """Events stored but still not applied after `grace`: their job was lost or never sent.

    Locked for the caller's transaction (`mark_enqueued`), skipping rows a job holds: that job
    is applying them, and waiting for it could deadlock with its own bookkeeping."""
    cutoff = utcnow() - grace
    last_sent = func.coalesce(inbox.enqueued_at, inbox.received_at)
    query = (
        select(inbox.id)
        .where(inbox.status == RECEIVED, inbox.received_at < cutoff, last_sent < cutoff)
        .order_by(inbox.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def mark_enqueued(session: Session, inbox: Inbox, ids: Iterable[str]) -> None:
    ids = list(ids)
    if ids:
        session.execute(update(inbox).where(inbox.id.in_(ids)).values(enqueued_at=utcnow()))


def unmark_enqueued(session: Session, inbox: Inbox, ids: Iterable[str]) -> None:
    """Sending failed: these are due for the next sweep again."""
    ids = list(ids)
    if ids:
        session.execute(update(inbox).where(inbox.id.in_(ids)).values(enqueued_at=None))


def counts_by_status(session: Session, inbox: Inbox = StripeEvent) -> dict[str, int]:
    query = select(inbox.status, func.count()).group_by(inbox.status)
    return {status: count for status, count in session.execute(query).all()}
