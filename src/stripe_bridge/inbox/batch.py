"""Stored Stripe events applied in batches: one job and one transaction for many events.

The web sends one job per batch of new events (`inbox/store.py` `JobSender`), the sweeper
and replays likewise, at most `BATCH_SIZE` ids a job. A batch job applies its events with the
same handlers and the same stale guard as one event at a time (`apply.handle`), but takes every
lock and reads every shared record once: the inbox rows (`FOR UPDATE SKIP LOCKED`: a row another
job holds is that job's to apply), then what `prepare` puts in the batch's unit of work (each
mirror table's rows in one statement in sorted order, the Veles orders and contracts the events
may update, the matching locks and the Veles customers and products they may match). The
changed mirror rows go out as one executemany per table (`handlers/base.py` `write_mirrors`).

If anything in the batch fails, the whole transaction rolls back and its events are applied
one at a time (`apply.apply_event`), so that one bad event is marked failed on its own and the
others are applied; a transient failure then re-raises and the job retries (events already
applied are skipped)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import orjson
import structlog
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.db import key_is_one_of
from stripe_bridge.event import Event
from stripe_bridge.failures import describe
from stripe_bridge.handlers.base import Claim, Handler, claim_rows, write_mirrors
from stripe_bridge.handlers.orders import preload_links
from stripe_bridge.inbox.apply import MAX_ATTEMPTS, Accept, apply_event, handle, received_locked
from stripe_bridge.matching.linking import matching_lock, preload_pools
from stripe_bridge.matching.rules import Keys, derive_domain, normalise_product_name
from stripe_bridge.metrics import EVENTS, HANDLER_SECONDS
from stripe_bridge.models import (
    IGNORED,
    PROCESSED,
    Customer,
    Invoice,
    Product,
    StripeEvent,
    Subscription,
    utcnow,
)
from stripe_bridge.uow import UnitOfWork

log = structlog.get_logger(__name__)

BATCH_SIZE = 100


def chunks(ids: Sequence[str], size: int = BATCH_SIZE) -> list[list[str]]:
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


def apply_events(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    workspace_id: str,
    event_ids: Sequence[str],
    *,
    max_attempts: int = MAX_ATTEMPTS,
    accept: Accept = lambda _session, _workspace, _event: None,
) -> dict[str, str]:
    """Apply the `received` events among the workspace's `event_ids`; answers the status of
    each one applied (processed or ignored; failed ones only when they had to be applied one
    by one)."""
    started = time.perf_counter()
    types: set[str] = set()
    try:
        applied = _apply_together(
            session_factory, handlers, claims, workspace_id, event_ids, accept, types
        )
    except Exception as exc:
        structlog.contextvars.clear_contextvars()
        log.warning(
            "batch failed; applying its events one by one",
            workspace_id=workspace_id,
            stripe_event_ids=list(event_ids),
            event_types=sorted(types),
            error=describe(exc),
        )
        return _one_by_one(session_factory, handlers, workspace_id, event_ids, max_attempts, accept)
    finally:
        structlog.contextvars.clear_contextvars()
    share = (time.perf_counter() - started) / max(1, len(applied))
    for event_id, (event_type, status) in applied.items():
        log.info(
            "event applied",
            workspace_id=workspace_id,
            stripe_event_id=event_id,
            event_type=event_type,
            status=status,
        )
        EVENTS.labels("stripe", event_type, status).inc()
        HANDLER_SECONDS.labels("stripe").observe(share)
    return {event_id: status for event_id, (_type, status) in applied.items()}


def _apply_together(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    workspace_id: str,
    event_ids: Sequence[str],
    accept: Accept,
    types: set[str],
) -> dict[str, tuple[str, str]]:
    """One transaction for the batch; `types` collects the event types seen (for the log)."""
    applied: dict[str, tuple[str, str]] = {}
    with session_factory.begin() as session:
        rows = received_locked(session, workspace_id, event_ids)
        if not rows:
            return applied
        types.update(event_type for _id, event_type, _payload in rows)
        events = [Event.from_payload(orjson.loads(payload)) for _id, _type, payload in rows]
        uow = UnitOfWork(session, workspace_id)
        to_apply, ignored = _refusals(uow, events, accept, applied)
        _handle_all(uow, handlers, claims, to_apply, applied)
        _record(uow, [event.id for event in to_apply], PROCESSED, None)
        for reason, ids in ignored.items():
            _record(uow, ids, IGNORED, reason)
    return applied


def _refusals(
    uow: UnitOfWork, events: list[Event], accept: Accept, applied: dict[str, tuple[str, str]]
) -> tuple[list[Event], dict[str, list[str]]]:
    """The events to apply, and the refused ones by reason. Whether an event may be applied
    depends on the connection and the event's mode and account only: asked once for each."""
    verdicts: dict[tuple[bool, str | None], str | None] = {}
    to_apply: list[Event] = []
    ignored: dict[str, list[str]] = defaultdict(list)
    for event in events:
        asked = (event.livemode, event.account)
        if asked not in verdicts:
            verdicts[asked] = accept(uow.session, uow.workspace_id, event)
        reason = verdicts[asked]
        if reason:
            ignored[reason].append(event.id)
            applied[event.id] = (event.type, IGNORED)
        else:
            to_apply.append(event)
    return to_apply, ignored


def _handle_all(
    uow: UnitOfWork,
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    events: list[Event],
    applied: dict[str, tuple[str, str]],
) -> None:
    """Customers and products take a matching lock, which serialises every transaction that
    holds it until it commits: they go last, so that the lock is held briefly.

    On PostgreSQL every row the handlers write is claimed and loaded first, and what they
    query (Veles records) they do not write, so nothing needs flushing before a query: the
    changes go out together, as one executemany per table. (SQLite claims row by row, and
    needs its flushes.)"""
    parts = (
        [event for event in events if not claims[event.type].matching_lock],
        [event for event in events if claims[event.type].matching_lock],
    )
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    with uow.session.no_autoflush if postgres else nullcontext():
        for part in parts:
            if not part:
                continue
            prepare(uow, claims, part)
            for event in part:
                structlog.contextvars.bind_contextvars(
                    stripe_event_id=event.id, event_type=event.type
                )
                applied[event.id] = (event.type, handle(uow, handlers, event, None))
        if uow.rows:
            write_mirrors(uow.session, uow.rows.values())


def prepare(uow: UnitOfWork, claims: Mapping[str, Claim], events: list[Event]) -> None:
    """Lock and load what `events` need, in the order the one-event path takes it: matching
    locks, then each table's rows (tables in name order, rows in id order), then the Veles
    records they may match or update."""
    by_model: dict[type[Any], list[Event]] = defaultdict(list)
    locks: set[str] = set()
    for event in events:
        claim = claims[event.type]
        by_model[claim.model].append(event)
        if claim.matching_lock:
            locks.add(claim.matching_lock)
    for name in sorted(locks - uow.locks):
        matching_lock(uow.session, uow.workspace_id, name)
    uow.locks |= locks
    for model in sorted(by_model, key=lambda model: str(model.__tablename__)):
        claim_rows(uow, model, [event.object["id"] for event in by_model[model]])

    def veles_id(event: Event, key: str) -> str | None:
        metadata = event.object.get("metadata")
        value = metadata.get(key) if isinstance(metadata, Mapping) else None
        return value if isinstance(value, str) else None

    if Customer in by_model or Product in by_model:
        uow.pools = preload_pools(
            uow.session,
            uow.workspace_id,
            customers=[
                Keys.of(
                    event.object.get("name"),
                    event.object.get("email"),
                    derive_domain(event.object.get("email"), event.object.get("metadata")),
                )
                for event in by_model.get(Customer, ())
            ],
            product_names=[
                normalise_product_name(event.object.get("name"))
                for event in by_model.get(Product, ())
            ],
        )
    if Invoice in by_model or Subscription in by_model:
        preload_links(
            uow,
            invoices=[
                (event.object["id"], veles_id(event, "veles_order_id"))
                for event in by_model.get(Invoice, ())
            ],
            subscriptions=[
                (event.object["id"], veles_id(event, "veles_contract_id"))
                for event in by_model.get(Subscription, ())
            ],
        )


def _record(uow: UnitOfWork, ids: list[str], status: str, reason: str | None) -> None:
    if not ids:
        return
    values: dict[str, Any] = {
        "status": status,
        "attempts": StripeEvent.attempts + 1,
        "processed_at": utcnow(),
        "last_error": None,
    }
    if reason is not None:
        values["reason"] = reason
    uow.session.execute(
        update(StripeEvent)
        .where(key_is_one_of(uow.session, StripeEvent, [(uow.workspace_id, id_) for id_ in ids]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _one_by_one(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    workspace_id: str,
    event_ids: Sequence[str],
    max_attempts: int,
    accept: Accept,
) -> dict[str, str]:
    statuses: dict[str, str] = {}
    transient: Exception | None = None
    for event_id in event_ids:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(stripe_event_id=event_id)
        try:
            statuses[event_id] = apply_event(
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
