"""Re-enqueues events that were stored but never applied (broker down, job lost)."""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog

from stripe_bridge.bootstrap import Bridge
from stripe_bridge.inbox import due_for_sweep, mark_enqueued
from stripe_bridge.models import StripeEvent, VelesEvent

log = structlog.get_logger(__name__)


def sweep_once(bridge: Bridge) -> int:
    """One pass over both inboxes; answers how many events were re-enqueued."""
    grace = timedelta(seconds=bridge.settings.sweep_grace)
    total = 0
    for inbox in (StripeEvent, VelesEvent):
        with bridge.session_factory.begin() as session:
            due = due_for_sweep(session, inbox, grace=grace)
        if not due:
            continue
        sent = bridge.enqueue_events(due, inbox)
        with bridge.session_factory.begin() as session:
            mark_enqueued(session, inbox, sent)
        log.info(
            "swept stored events back onto the queue",
            inbox=inbox.__tablename__,
            count=len(sent),
            due=len(due),
        )
        total += len(sent)
    return total


def run_periodically(bridge: Bridge, stop: threading.Event) -> None:
    """The sweeper loop of the `worker` role (the scheduler runs it inside its own loop)."""
    while not stop.is_set():
        try:
            sweep_once(bridge)
        except Exception as exc:
            log.error("sweep failed; will try again", error=repr(exc))
        stop.wait(bridge.settings.sweep_interval)
