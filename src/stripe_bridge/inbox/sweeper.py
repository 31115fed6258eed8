"""Re-enqueues events that were stored but never applied (broker down, job lost)."""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog

from stripe_bridge.context import Context
from stripe_bridge.inbox.store import due_for_sweep, mark_enqueued, unmark_enqueued
from stripe_bridge.models import StripeEvent, VelesEvent

log = structlog.get_logger(__name__)


def sweep_once(bridge: Context) -> int:
    """One pass over both inboxes; answers how many events were re-enqueued."""
    grace = timedelta(seconds=bridge.settings.sweep_grace)
    total = 0
    for inbox in (StripeEvent, VelesEvent):
        # Marked before they are sent: a job must never find its rows locked by this UPDATE
        # (it would skip them as another job's). What could not be sent is due again at once.
        with bridge.session_factory.begin() as session:
            due = due_for_sweep(session, inbox, grace=grace)
            mark_enqueued(session, inbox, due)
        if not due:
            continue
        sent = bridge.jobs.send_events(due, inbox)
        if len(sent) < len(due):
            with bridge.session_factory.begin() as session:
                unmark_enqueued(session, inbox, set(due) - set(sent))
        log.info(
            "swept stored events back onto the queue",
            inbox=inbox.__tablename__,
            count=len(sent),
            due=len(due),
        )
        total += len(sent)
    return total


def run_periodically(bridge: Context, stop: threading.Event) -> None:
    """The sweeper loop of the `worker` role (the scheduler runs it inside its own loop)."""
    while not stop.is_set():
        try:
            sweep_once(bridge)
        except Exception as exc:
            log.error("sweep failed; will try again", error=repr(exc))
        stop.wait(bridge.settings.sweep_interval)
