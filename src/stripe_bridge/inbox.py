"""The durable inbox: verified events are stored (in batches), then applied one job each."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.db import insert_ignoring_conflicts
from stripe_bridge.errors import BadRequest, PermanentError
from stripe_bridge.handlers import Event, Handler
from stripe_bridge.models import FAILED, IGNORED, PROCESSED, RECEIVED, StripeEvent, utcnow

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Incoming:
    """A verified delivery, parsed just enough to be stored."""

    id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    account: str | None
    object_id: str | None
    payload: bytes
    status: str = RECEIVED
    reason: str | None = None


def parse_event(body: bytes) -> Incoming:
    """The fields the inbox stores, or BadRequest for anything that is not a Stripe event."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("body is not a JSON object")
    event_id, event_type, created = doc.get("id"), doc.get("type"), doc.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or len(event_id) > 255:
        raise BadRequest("body is not a Stripe event: missing or malformed 'id'")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 255:
        raise BadRequest("body is not a Stripe event: missing 'type'")
    if not isinstance(created, int) or isinstance(created, bool):
        raise BadRequest("body is not a Stripe event: missing 'created'")
    data = doc.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadRequest("body is not a Stripe event: missing 'data.object'")
    livemode = doc.get("livemode")
    if not isinstance(livemode, bool):
        raise BadRequest("body is not a Stripe event: missing 'livemode'")
    object_id = obj.get("id")
    account = doc.get("account")
    return Incoming(
        id=event_id,
        type=event_type,
        created=created,
        livemode=livemode,
        api_version=doc.get("api_version") if isinstance(doc.get("api_version"), str) else None,
        account=account if isinstance(account, str) else None,
        object_id=object_id if isinstance(object_id, str) else None,
        payload=body,
    )


def classify(incoming: Incoming, *, mode: str, handled: Mapping[str, Handler]) -> None:
    """Decide at the door whether an event will be applied; the rest are stored as ignored."""
    if incoming.type not in handled:
        incoming.status, incoming.reason = IGNORED, f"unhandled event type {incoming.type}"
    elif incoming.livemode != (mode == "live"):
        event_mode = "live" if incoming.livemode else "test"
        incoming.status = IGNORED
        incoming.reason = f"mode mismatch: {event_mode} event, bridge is in {mode} mode"


def store(session: Session, batch: Sequence[Incoming]) -> set[str]:
    """Insert a batch in the caller's transaction; answers the ids that were new."""
    if not batch:
        return set()
    now = utcnow()
    rows = [
        {
            "id": item.id,
            "type": item.type,
            "api_version": item.api_version,
            "livemode": item.livemode,
            "account": item.account,
            "created": item.created,
            "object_id": item.object_id,
            "payload": item.payload,
            "received_at": now,
            "status": item.status,
            "reason": item.reason,
            "attempts": 0,
        }
        for item in batch
    ]
    statement = insert_ignoring_conflicts(session, StripeEvent.__table__).returning(  # type: ignore[arg-type]
        StripeEvent.id
    )
    return set(session.scalars(statement, rows))


def due_for_sweep(session: Session, *, grace: timedelta, limit: int = 1000) -> list[str]:
    """Events stored but still not applied after `grace`: their job was lost or never sent."""
    cutoff = utcnow() - grace
    last_sent = func.coalesce(StripeEvent.enqueued_at, StripeEvent.received_at)
    query = (
        select(StripeEvent.id)
        .where(StripeEvent.status == RECEIVED, StripeEvent.received_at < cutoff, last_sent < cutoff)
        .order_by(StripeEvent.received_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_enqueued(session: Session, ids: Iterable[str]) -> None:
    ids = list(ids)
    if ids:
        session.execute(
            update(StripeEvent).where(StripeEvent.id.in_(ids)).values(enqueued_at=utcnow())
        )


PERMANENT = (PermanentError, KeyError, TypeError, ValueError)


def apply_event(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    event_id: str,
    *,
    final_attempt: bool,
    accept: Callable[[Event], str | None] = lambda _event: None,
) -> str:
    """Apply one stored event with its handler, in one transaction; answers the new status.

    Safe to call twice: only a `received` row is applied, under a row lock. A permanent error
    marks the event failed at once; a transient one re-raises (the job retries) unless this
    was the last attempt, which marks it failed with the error. `accept` may return a reason
    to ignore the event instead (e.g. the connection was disconnected)."""
    bound = log.bind(stripe_event_id=event_id)
    try:
        with session_factory.begin() as session:
            row = session.get(StripeEvent, event_id, with_for_update=True)
            if row is None or row.status != RECEIVED:
                return row.status if row else "missing"
            structlog.contextvars.bind_contextvars(event_type=row.type)
            row.attempts += 1
            try:
                event = Event.from_payload(orjson.loads(row.payload))
                ignored_because = accept(event)
                if ignored_because:
                    row.status, row.reason = IGNORED, ignored_because
                else:
                    with session.begin_nested():
                        handlers[row.type](event, session)
                    row.status = PROCESSED
                row.processed_at = utcnow()
                row.last_error = None
            except PERMANENT as exc:
                row.status, row.last_error = FAILED, _describe(exc)
                bound.warning("event failed permanently", error=row.last_error)
            else:
                bound.info("event applied", status=row.status)
            return row.status
    except Exception as exc:
        _record_transient(session_factory, event_id, exc, final=final_attempt)
        bound.warning("event failed, will retry", error=_describe(exc), final=final_attempt)
        raise


def _record_transient(
    session_factory: sessionmaker[Session], event_id: str, exc: BaseException, *, final: bool
) -> None:
    values: dict[str, Any] = {"attempts": StripeEvent.attempts + 1, "last_error": _describe(exc)}
    if final:
        values["status"] = FAILED
    try:
        with session_factory.begin() as session:
            session.execute(
                update(StripeEvent)
                .where(StripeEvent.id == event_id, StripeEvent.status == RECEIVED)
                .values(**values)
            )
    except Exception as record_exc:  # the database itself may be what failed
        log.error("could not record the failure", stripe_event_id=event_id, error=repr(record_exc))


def _describe(exc: BaseException) -> str:
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return summary[:2000]


def counts_by_status(session: Session) -> dict[str, int]:
    query = select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
    return {status: count for status, count in session.execute(query).all()}
