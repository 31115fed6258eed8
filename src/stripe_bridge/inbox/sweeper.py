"""Re-enqueues events that were stored but never applied (broker down, job lost)."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.context import JobQueue
from stripe_bridge.inbox.store import due_for_sweep, mark_enqueued, unmark_enqueued
from stripe_bridge.models import StripeEvent, VelesEvent

log = structlog.get_logger(__name__)


def sweep_once(session_factory: sessionmaker[Session], jobs: JobQueue, grace: timedelta) -> int:
    """One pass over both inboxes: events stored more than `grace` ago and still not applied
    are sent again. Answers how many were sent."""
    total = 0
    for inbox in (StripeEvent, VelesEvent):
        # Marked before they are sent: a job must never find its rows locked by this UPDATE
        # (it would skip them as another job's). What could not be sent is due again at once.
        with session_factory.begin() as session:
            due = due_for_sweep(session, inbox, grace=grace)
            mark_enqueued(session, inbox, due)
        if not due:
            continue
        by_workspace: dict[str, list[str]] = {}
        for workspace_id, event_id in due:
            by_workspace.setdefault(workspace_id, []).append(event_id)
        sent = {
            (workspace_id, event_id)
            for workspace_id, ids in by_workspace.items()
            for event_id in jobs.send_events(workspace_id, ids, inbox)
        }
        if len(sent) < len(due):
            with session_factory.begin() as session:
                unmark_enqueued(session, inbox, set(due) - sent)
        log.info(
            "swept stored events back onto the queue",
            inbox=inbox.__tablename__,
            count=len(sent),
            due=len(due),
            workspaces=len(by_workspace),
        )
        total += len(sent)
    return total
