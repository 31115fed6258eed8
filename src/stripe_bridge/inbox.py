"""The durable inbox: verified events are stored (in batches), then applied one job each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeGuard, cast

import orjson
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.db import insert_ignoring_conflicts
from stripe_bridge.errors import BadRequest
from stripe_bridge.failures import describe, is_permanent, mark_failed, record_error
from stripe_bridge.handlers import Event, Handler
from stripe_bridge.metrics import EVENTS, HANDLER_SECONDS
from stripe_bridge.models import (
    FAILED,
    IGNORED,
    PROCESSED,
    RECEIVED,
    StripeEvent,
    VelesEvent,
    utcnow,
)

log = structlog.get_logger(__name__)


Inbox = type[StripeEvent] | type[VelesEvent]


@dataclass(slots=True)
class Incoming:
    """A verified delivery, parsed just enough to be stored (`extra`: inbox-specific columns)."""

    id: str
    type: str
    created: int
    object_id: str | None
    payload: bytes
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = RECEIVED
    reason: str | None = None


MAX_CREATED = 253_402_300_799  # unix seconds of 9999-12-31: anything later is not a timestamp


def unix_seconds(value: Any, what: str) -> int:
    """An event's `created`: whole unix seconds in the range an inbox row holds."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"body is not {what}: missing 'created' (unix seconds)")
    if not 0 <= value <= MAX_CREATED:
        raise BadRequest(f"body is not {what}: 'created' is out of range")
    return value


def storable(value: Any, limit: int = 255) -> TypeGuard[str]:
    """A string an inbox column can keep: at most `limit` characters, no NUL (PostgreSQL's text
    cannot hold one)."""
    return isinstance(value, str) and len(value) <= limit and "\x00" not in value


def _bounded(value: Any, name: str, limit: int) -> str | None:
    """An optional string field that an inbox column keeps."""
    if not isinstance(value, str):
        return None
    if not storable(value, limit):
        raise BadRequest(f"body is not a Stripe event: {name!r} is longer than {limit} or has NUL")
    return value


def parse_event(body: bytes) -> Incoming:
    """The fields the inbox stores, or BadRequest for anything that is not a Stripe event."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("body is not a JSON object")
    event_id, event_type, created = doc.get("id"), doc.get("type"), doc.get("created")
    if not storable(event_id) or not event_id.startswith("evt_"):
        raise BadRequest("body is not a Stripe event: missing or malformed 'id'")
    if not storable(event_type) or not event_type:
        raise BadRequest("body is not a Stripe event: missing 'type'")
    created = unix_seconds(created, "a Stripe event")
    data = doc.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadRequest("body is not a Stripe event: missing 'data.object'")
    livemode = doc.get("livemode")
    if not isinstance(livemode, bool):
        raise BadRequest("body is not a Stripe event: missing 'livemode'")
    return Incoming(
        id=event_id,
        type=event_type,
        created=created,
        object_id=_bounded(obj.get("id"), "data.object.id", 255),
        payload=body,
        extra={
            "livemode": livemode,
            "api_version": _bounded(doc.get("api_version"), "api_version", 64),
            "account": _bounded(doc.get("account"), "account", 255),
        },
    )


def classify(incoming: Incoming, *, handled: Mapping[str, Handler]) -> None:
    """Types the bridge does not handle are stored as ignored at the door. Whether a handled
    event may be applied (connected? the right mode?) is decided by its job, in the applying
    transaction: the web's view of the connection may be a second old."""
    if incoming.type not in handled:
        incoming.status, incoming.reason = IGNORED, f"unhandled event type {incoming.type}"


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


MAX_ATTEMPTS = 8  # BRIDGE_EVENT_MAX_ATTEMPTS: tries of one event before it is a dead letter
_ID_KEY = {StripeEvent: "stripe_event_id", VelesEvent: "veles_event_id"}


class _Failed(Exception):
    """Carries a permanent handler error out of the transaction, so that it rolls back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def apply_event(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    event_id: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    inbox: Inbox = StripeEvent,
    decode: Callable[[Any], Event] = Event.from_payload,
    accept: Callable[[Session, Event], str | None] = lambda _session, _event: None,
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
    bound = log.bind(**{_ID_KEY[inbox]: event_id})
    source = "stripe" if inbox is StripeEvent else "veles"
    started = time.perf_counter()
    try:
        with session_factory.begin() as session:
            row = cast(
                "StripeEvent | VelesEvent | None",
                session.get(
                    inbox, event_id, with_for_update={"skip_locked": True} if skip_locked else True
                ),
            )
            if row is None or row.status != RECEIVED:
                if row is None:
                    return "missing or locked" if skip_locked else "missing"
                return row.status
            structlog.contextvars.bind_contextvars(event_type=row.type)
            try:
                event = decode(orjson.loads(row.payload))
                ignored_because = accept(session, event)
                if ignored_because:
                    row.status, row.reason = IGNORED, ignored_because
                else:
                    handlers[row.type](event, session)
                    row.status = PROCESSED
                session.flush()  # a value the database refuses is the payload's failure too
            except Exception as exc:
                if is_permanent(exc):
                    raise _Failed(exc) from exc
                raise
            row.attempts += 1
            row.processed_at, row.last_error = utcnow(), None
            status, event_type = row.status, row.type
        bound.info("event applied", status=status)
    except _Failed as failed:
        status, event_type = _record_permanent(session_factory, inbox, event_id, failed.cause)
        bound.warning("event failed permanently", error=describe(failed.cause))
    except Exception as exc:
        status = _record_transient(session_factory, inbox, event_id, exc, max_attempts)
        EVENTS.labels(source, "unknown", "failed" if status == FAILED else "retried").inc()
        if status != FAILED:
            bound.warning("event failed, will retry", error=describe(exc))
            raise
        bound.error("event failed on its last attempt", error=describe(exc), attempts=max_attempts)
        return status
    EVENTS.labels(source, event_type, status).inc()
    HANDLER_SECONDS.labels(source).observe(time.perf_counter() - started)
    return status


def _record_permanent(
    session_factory: sessionmaker[Session], inbox: Inbox, event_id: str, exc: BaseException
) -> tuple[str, str]:
    with session_factory.begin() as session:
        row = cast(
            "StripeEvent | VelesEvent",
            session.get(inbox, event_id, with_for_update=True),
        )
        if row.status == RECEIVED:
            row.status, row.attempts = FAILED, row.attempts + 1
            mark_failed(row, exc)
        return row.status, row.type


def _record_transient(
    session_factory: sessionmaker[Session],
    inbox: Inbox,
    event_id: str,
    exc: BaseException,
    max_attempts: int,
) -> str:
    """Count the failed attempt on the event; the one that reaches `max_attempts` marks it
    failed. Answers the event's status (`received` also when nothing could be recorded)."""
    try:
        with session_factory.begin() as session:
            row = cast(
                "StripeEvent | VelesEvent | None",
                session.get(inbox, event_id, with_for_update=True),
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
        log.error("could not record the failure", event_id=event_id, error=repr(record_exc))
        return RECEIVED


def counts_by_status(session: Session, inbox: Inbox = StripeEvent) -> dict[str, int]:
    query = select(inbox.status, func.count()).group_by(inbox.status)
    return {status: count for status, count in session.execute(query).all()}
