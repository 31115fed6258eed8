"""Stored Stripe events applied in batches: one job and one transaction for many events.

The web sends one job per batch of new events of any workspaces (`inbox/store.py`
`JobSender`), the sweeper and replays one per workspace, at most `BATCH_SIZE` keys a job. A
batch job applies its events with the same handlers and the same stale guard as one event at
a time (`apply.handle`), one unit of work per workspace, but takes every lock and reads every
shared record once, in one statement for all its workspaces: the inbox rows (`FOR UPDATE SKIP
LOCKED`: a row another job holds is that job's to apply), the connections the refusals read,
then what `prepare` puts in the units of work (each mirror table's rows in key order, the Veles
orders and contracts the events may update, the matching locks and the Veles customers and
products they may match). The changed mirror rows go out as one executemany per table
(`handlers/base.py` `write_mirrors`). A batch spread over many workspaces thus costs what a
batch of one costs (`tests/test_batches.py` counts the statements).

If anything in the batch fails, the whole transaction rolls back and its events are applied
one at a time (`apply.apply_each`), so that one bad event is marked failed on its own and the
others are applied; a transient failure then re-raises and the job retries (events already
applied are skipped)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.db import key_is_one_of
from stripe_bridge.event import Event
from stripe_bridge.failures import describe
from stripe_bridge.handlers.base import Claim, Handler, claim_rows, write_mirrors
from stripe_bridge.handlers.orders import preload_links
from stripe_bridge.inbox.apply import (
    MAX_ATTEMPTS,
    Accept,
    Key,
    apply_each,
    handle,
    prime_refusals,
    received_locked,
)
from stripe_bridge.matching.linking import matching_locks, preload_pools
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


T = TypeVar("T")


def chunks(items: Sequence[T], size: int = BATCH_SIZE) -> list[list[T]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def apply_events(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    keys: Sequence[Key],
    *,
    max_attempts: int = MAX_ATTEMPTS,
    accept: Accept = lambda _session, _workspace, _event: None,
) -> dict[Key, str]:
    """Apply the `received` events among `keys` (of one or several workspaces); answers the
    status of each one applied (processed or ignored; failed ones only when they had to be
    applied one by one)."""
    started = time.perf_counter()
    types: set[str] = set()
    try:
        applied = _apply_together(session_factory, handlers, claims, keys, accept, types)
    except Exception as exc:
        structlog.contextvars.clear_contextvars()
        log.warning(
            "batch failed; applying its events one by one",
            workspace_ids=sorted({workspace_id for workspace_id, _id in keys}),
            stripe_event_ids=[event_id for _workspace, event_id in keys],
            event_types=sorted(types),
            error=describe(exc),
        )
        return apply_each(session_factory, handlers, keys, max_attempts=max_attempts, accept=accept)
    finally:
        structlog.contextvars.clear_contextvars()
    share = (time.perf_counter() - started) / max(1, len(applied))
    for (workspace_id, event_id), (event_type, status) in applied.items():
        log.info(
            "event applied",
            workspace_id=workspace_id,
            stripe_event_id=event_id,
            event_type=event_type,
            status=status,
        )
        EVENTS.labels("stripe", event_type, status).inc()
        HANDLER_SECONDS.labels("stripe").observe(share)
    return {key: status for key, (_type, status) in applied.items()}


def _apply_together(
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    keys: Sequence[Key],
    accept: Accept,
    types: set[str],
) -> dict[Key, tuple[str, str]]:
    """One transaction for the batch, one unit of work in it per workspace; every statement
    serves all the batch's workspaces at once (a batch spread over many workspaces holds one or
    two events of each). `types` collects the event types seen (for the log)."""
    applied: dict[Key, tuple[str, str]] = {}
    with session_factory.begin() as session:
        rows = received_locked(session, keys)
        if not rows:
            return applied
        types.update(event_type for _ws, _id, event_type, _payload in rows)
        events: dict[str, list[Event]] = defaultdict(list)
        for workspace_id, _id, _type, payload in rows:
            events[workspace_id].append(Event.from_payload(orjson.loads(payload)))
        uows = {workspace_id: UnitOfWork(session, workspace_id) for workspace_id in events}
        primed = prime_refusals(session, events)  # noqa: F841 (held for the transaction)
        ignored: dict[str, list[Key]] = defaultdict(list)
        to_apply = {
            workspace_id: _refusals(uows[workspace_id], batch, accept, applied, ignored)
            for workspace_id, batch in events.items()
        }
        _handle_all(session, uows, handlers, claims, to_apply, applied)
        done = [(ws, event.id) for ws, batch in to_apply.items() for event in batch]
        _record(session, done, PROCESSED, None)
        for reason, refused in ignored.items():
            _record(session, refused, IGNORED, reason)
    return applied


def _refusals(
    uow: UnitOfWork,
    events: list[Event],
    accept: Accept,
    applied: dict[Key, tuple[str, str]],
    ignored: dict[str, list[Key]],
) -> list[Event]:
    """The workspace's events to apply; the refused ones go to `ignored` by reason. Whether an
    event may be applied depends on the connection and the event's mode and account only:
    asked once for each."""
    verdicts: dict[tuple[bool, str | None], str | None] = {}
    to_apply: list[Event] = []
    for event in events:
        asked = (event.livemode, event.account)
        if asked not in verdicts:
            verdicts[asked] = accept(uow.session, uow.workspace_id, event)
        reason = verdicts[asked]
        if reason:
            ignored[reason].append((uow.workspace_id, event.id))
            applied[(uow.workspace_id, event.id)] = (event.type, IGNORED)
        else:
            to_apply.append(event)
    return to_apply


def _handle_all(
    session: Session,
    uows: Mapping[str, UnitOfWork],
    handlers: Mapping[str, Handler],
    claims: Mapping[str, Claim],
    events: Mapping[str, list[Event]],
    applied: dict[Key, tuple[str, str]],
) -> None:
    """Customers and products take a matching lock, which serialises every transaction that
    holds it until it commits: they go last, so that the lock is held briefly.

    On PostgreSQL every row the handlers write is claimed and loaded first, and what they
    query (Veles records) they do not write, so nothing needs flushing before a query: the
    changes go out together, as one executemany per table. (SQLite claims row by row, and
    needs its flushes.)"""
    postgres = session.get_bind().dialect.name == "postgresql"
    with session.no_autoflush if postgres else nullcontext():
        for matching in (False, True):
            part = {
                ws: picked
                for ws, batch in events.items()
                if (picked := [e for e in batch if bool(claims[e.type].matching_lock) == matching])
            }
            if not part:
                continue
            prepare(session, uows, claims, part)
            for workspace_id, batch in part.items():
                for event in batch:
                    structlog.contextvars.bind_contextvars(
                        workspace_id=workspace_id, stripe_event_id=event.id, event_type=event.type
                    )
                    status = handle(uows[workspace_id], handlers, event, None)
                    applied[(workspace_id, event.id)] = (event.type, status)
        write_mirrors(session, [row for uow in uows.values() for row in (uow.rows or {}).values()])


def prepare(
    session: Session,
    uows: Mapping[str, UnitOfWork],
    claims: Mapping[str, Claim],
    events: Mapping[str, list[Event]],
) -> None:
    """Lock and load what `events` (by workspace) need, in the order the one-event path takes
    it, in one statement each for all the workspaces: matching locks, then each table's rows
    (tables in name order, rows in key order), then the Veles records they may match or
    update."""
    by_model: dict[type[Any], list[tuple[str, Event]]] = defaultdict(list)
    locks: set[tuple[str, str]] = set()
    for workspace_id, batch in events.items():
        for event in batch:
            claim = claims[event.type]
            by_model[claim.model].append((workspace_id, event))
            if claim.matching_lock and claim.matching_lock not in uows[workspace_id].locks:
                locks.add((workspace_id, claim.matching_lock))
    matching_locks(session, locks)
    for workspace_id, name in locks:
        uows[workspace_id].locks.add(name)
    for model in sorted(by_model, key=lambda model: str(model.__tablename__)):
        keys = [(ws, event.object["id"]) for ws, event in by_model[model]]
        claim_rows(session, uows, model, keys)

    def veles_id(event: Event, key: str) -> str | None:
        metadata = event.object.get("metadata")
        value = metadata.get(key) if isinstance(metadata, Mapping) else None
        return value if isinstance(value, str) else None

    if Customer in by_model or Product in by_model:
        pools = preload_pools(
            session,
            customers=[
                (ws, Keys.of(e.object.get("name"), e.object.get("email"), _domain(e)))
                for ws, e in by_model.get(Customer, ())
            ],
            product_names=[
                (ws, normalise_product_name(e.object.get("name")))
                for ws, e in by_model.get(Product, ())
            ],
        )
        for workspace_id, pool in pools.items():
            uows[workspace_id].pools = pool
    if Invoice in by_model or Subscription in by_model:
        preload_links(
            session,
            uows,
            invoices=[
                (ws, e.object["id"], veles_id(e, "veles_order_id"))
                for ws, e in by_model.get(Invoice, ())
            ],
            subscriptions=[
                (ws, e.object["id"], veles_id(e, "veles_contract_id"))
                for ws, e in by_model.get(Subscription, ())
            ],
        )


def _domain(event: Event) -> str | None:
    return derive_domain(event.object.get("email"), event.object.get("metadata"))


def _record(session: Session, keys: list[Key], status: str, reason: str | None) -> None:
    if not keys:
        return
    values: dict[str, Any] = {
        "status": status,
        "attempts": StripeEvent.attempts + 1,
        "processed_at": utcnow(),
        "last_error": None,
    }
    if reason is not None:
        values["reason"] = reason
    session.execute(
        update(StripeEvent)
        .where(key_is_one_of(session, StripeEvent, keys))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
