"""Applying one stored event with its handler, in one transaction: the Veles jobs' path, and
the batch path's fallback when a batch fails (`batch.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge import connection
from stripe_bridge.db import looked_up
from stripe_bridge.event import Event
from stripe_bridge.failures import describe, is_permanent, mark_failed, record_error
from stripe_bridge.handlers.base import Handler
from stripe_bridge.metrics import EVENTS, HANDLER_SECONDS
from stripe_bridge.models import (
    DEFAULT_WORKSPACE,
    DISCONNECTED,
    FAILED,
    IGNORED,
    PROCESSED,
    RECEIVED,
    Connection,
    Inbox,
    StripeEvent,
    VelesEvent,
    Workspace,
    utcnow,
)
from stripe_bridge.settings import Settings
from stripe_bridge.uow import UnitOfWork
from stripe_bridge.workspaces import exists

log = structlog.get_logger(__name__)


# Whether an event may be applied now (a reason to ignore it, or None): the connection's say.
Accept = Callable[[Session, str, Event], str | None]
Key = tuple[str, str]  # (workspace_id, event id): an inbox row's primary key

MAX_ATTEMPTS = 8  # BRIDGE_EVENT_MAX_ATTEMPTS: tries of one event before it is a dead letter
_ID_KEY = {StripeEvent: "stripe_event_id", VelesEvent: "veles_event_id"}


class _Failed(Exception):
    """Carries a permanent handler error out of the transaction, so that it rolls back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def handle(
    uow: UnitOfWork, handlers: Mapping[str, Handler], event: Event, refusal: str | None
) -> str:
    """The one rule both paths apply to an event: one refused (disconnected, the other mode) is
    ignored, the caller recording the reason; any other goes to its handler. Answers the
    status."""
    if refusal:
        return IGNORED
    handlers[event.type](event, uow)
    return PROCESSED


def refusal(status: str, mode: str, livemode: bool) -> str | None:
    """Why a Stripe event must not be applied now, or None."""
    if status == DISCONNECTED:
        return "disconnected"
    if livemode != (mode == "live"):
        event_mode = "live" if livemode else "test"
        return f"mode mismatch: {event_mode} event, bridge is in {mode} mode"
    return None


def refusal_now(
    session: Session, settings: Settings, workspace_id: str, event: Event
) -> str | None:
    """The worker's check, in the applying transaction (no secrets decrypted). An event of a
    workspace deleted since it was stored is not applied (its id may be given to another), nor
    one of a connected account other than the workspace's (an endpoint that also listens to
    the account's Connect accounts delivers their events with `account`)."""
    row = connection.get(session, workspace_id)
    if row is None and workspace_id != DEFAULT_WORKSPACE and not exists(session, workspace_id):
        return "unknown_workspace"
    mode = row.mode if row is not None else settings.inbound_mode
    reason = refusal(connection.status_of(row), mode, event.livemode)
    # a Connect event at the account's own door
    if reason is None and row is not None and event.account not in (None, row.account_id):
        return f"other account: {event.account}, workspace is connected to {row.account_id}"
    return reason


def apply_event(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    workspace_id: str,
    event_id: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    inbox: Inbox = StripeEvent,
    decode: Callable[[Any], Event] = Event.from_payload,
    accept: Accept = lambda _session, _workspace, _event: None,
    skip_locked: bool = False,
) -> str:
    """Apply one stored event with its handler, in one transaction; answers the new status.

    Safe to call twice: only a `received` row is applied, under a row lock. A permanent error
    (`failures.is_permanent`: the payload can never be applied) rolls the handler's work back
    and marks the event failed at once. A transient one is counted on the event and re-raised
    (the job retries), until the event has had `max_attempts`: then it is marked failed with
    the error, whichever job or replay made the attempts. `accept` may return a reason to
    ignore the event instead (e.g. disconnected). With `skip_locked`, an event whose row
    another transaction holds is left to it ("locked")."""
    bound = log.bind(workspace_id=workspace_id, **{_ID_KEY[inbox]: event_id})
    key = (workspace_id, event_id)
    source = "stripe" if inbox is StripeEvent else "veles"
    started = time.perf_counter()
    try:
        with session_factory.begin() as session:
            lock = {"skip_locked": True} if skip_locked else True
            row = cast(
                "StripeEvent | VelesEvent | None",
                session.get(inbox, key, with_for_update=lock),
            )
            if row is None:
                return "missing or locked" if skip_locked else "missing"
            if row.status != RECEIVED:
                return row.status
            _apply_row(session, row, handlers, decode, accept)
            status, event_type = row.status, row.type
        bound.info("event applied", status=status)
    except _Failed as failed:
        status, event_type = _record_permanent(session_factory, inbox, key, failed.cause)
        bound.warning("event failed permanently", error=describe(failed.cause))
    except Exception as exc:
        status = _record_transient(session_factory, inbox, key, exc, max_attempts)
        EVENTS.labels(source, "unknown", "failed" if status == FAILED else "retried").inc()
        if status != FAILED:
            bound.warning("event failed, will retry", error=describe(exc))
            raise
        bound.error("event failed on its last attempt", error=describe(exc), attempts=max_attempts)
        return status
    EVENTS.labels(source, event_type, status).inc()
    HANDLER_SECONDS.labels(source).observe(time.perf_counter() - started)
    return status


def apply_each(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    keys: Sequence[Key],
    *,
    max_attempts: int = MAX_ATTEMPTS,
    accept: Accept = lambda _session, _workspace, _event: None,
) -> dict[Key, str]:
    """Apply stored Stripe events one at a time, each in its own transaction (a failed batch's
    fallback): one bad event fails alone. The first transient error is re-raised once all have
    been tried (the job retries; events already applied are skipped)."""
    statuses: dict[Key, str] = {}
    transient: Exception | None = None
    for workspace_id, event_id in keys:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(workspace_id=workspace_id, stripe_event_id=event_id)
        try:
            statuses[(workspace_id, event_id)] = apply_event(
                session_factory,
                handlers,
                workspace_id,
                event_id,
                max_attempts=max_attempts,
                accept=accept,
                skip_locked=True,  # a row another job holds is that job's to apply
            )
        except Exception as exc:  # recorded on the event by apply_event; the job retries
            transient = transient or exc
        finally:
            structlog.contextvars.clear_contextvars()
    if transient is not None:
        raise transient
    return statuses


def _apply_row(
    session: Session,
    row: StripeEvent | VelesEvent,
    handlers: Mapping[str, Handler],
    decode: Callable[[Any], Event],
    accept: Accept,
) -> None:
    structlog.contextvars.bind_contextvars(event_type=row.type)
    try:
        event = decode(orjson.loads(row.payload))
        refusal = accept(session, row.workspace_id, event)
        row.status = handle(UnitOfWork(session, row.workspace_id), handlers, event, refusal)
        if refusal:
            row.reason = refusal
        session.flush()  # a value the database refuses is the payload's failure too
    except Exception as exc:
        if is_permanent(exc):
            raise _Failed(exc) from exc
        raise
    row.attempts += 1
    row.processed_at, row.last_error = utcnow(), None


def _record_permanent(
    session_factory: sessionmaker[Session], inbox: Inbox, key: Key, exc: BaseException
) -> tuple[str, str]:
    with session_factory.begin() as session:
        row = cast(
            "StripeEvent | VelesEvent",
            session.get(inbox, key, with_for_update=True),
        )
        if row.status == RECEIVED:
            row.status, row.attempts = FAILED, row.attempts + 1
            mark_failed(row, exc)
        return row.status, row.type


def _record_transient(
    session_factory: sessionmaker[Session],
    inbox: Inbox,
    key: Key,
    exc: BaseException,
    max_attempts: int,
) -> str:
    """Count the failed attempt on the event; the one that reaches `max_attempts` marks it
    failed. Answers the event's status (`received` also when nothing could be recorded)."""
    try:
        with session_factory.begin() as session:
            row = cast(
                "StripeEvent | VelesEvent | None",
                session.get(inbox, key, with_for_update=True),
            )
            if row is None or row.status != RECEIVED:
                return RECEIVED if row is None else row.status
            row.attempts += 1
            if row.attempts >= max_attempts:
                row.status = FAILED
                mark_failed(row, exc)
            else:
                record_error(row, exc)
            return row.status
    except Exception as record_exc:  # the database itself may be what failed
        log.error("could not record the failure", event_id=key[1], error=repr(record_exc))
        return RECEIVED


def received_locked(session: Session, keys: Iterable[Key]) -> Sequence[Any]:
    """The events among `keys` (of any workspaces) still `received`, locked for this transaction
    (`SKIP LOCKED`: a row another job holds is that job's), in key order: `(workspace_id, id,
    type, payload)`. Each looked up through the primary key (`db.looked_up`)."""
    return session.execute(
        looked_up(
            session,
            [StripeEvent.workspace_id, StripeEvent.id, StripeEvent.type, StripeEvent.payload],
            StripeEvent,
            keys,
            where=[StripeEvent.status == RECEIVED],
            lock="skip_locked",
        )
    ).all()


def prime_refusals(session: Session, workspace_ids: Collection[str]) -> list[object]:
    """Load the workspaces' connections and workspace rows in two queries, so that
    `refusal_now`'s lookups for a batch of many workspaces find them in the session. Answers the
    rows: the caller keeps them (the session holds its objects weakly)."""
    if not workspace_ids:
        return []
    ids = sorted(workspace_ids)
    connections = list(session.scalars(select(Connection).where(Connection.workspace_id.in_(ids))))
    unconnected = sorted(set(ids) - {row.workspace_id for row in connections})
    workspaces = (
        list(session.scalars(select(Workspace).where(Workspace.id.in_(unconnected))))
        if unconnected
        else []
    )
    return [*connections, *workspaces]
