"""What a batch locks and loads before its handlers run, and how its mirror rows go out.

In the order the one-event path takes it: matching locks, then each table's rows (tables in name
order, rows in id order, one statement each), then the Veles records they may match or update;
afterwards the changed mirror rows are written with one executemany per table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, inspect, update
from sqlalchemy.orm import Session

from stripe_bridge.event import Event
from stripe_bridge.handlers.base import Claim, claim_rows
from stripe_bridge.handlers.orders import preload_links
from stripe_bridge.matching.linking import matching_lock, preload_pools
from stripe_bridge.matching.rules import Keys, derive_domain, normalise_product_name
from stripe_bridge.models import Customer, Invoice, Product, Subscription, Versioned
from stripe_bridge.uow import UnitOfWork


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
        matching_lock(uow.session, name)
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


_WRITE_STATEMENTS: dict[type[Any], tuple[Any, list[tuple[str, str]]]] = {}


def _write_statement(model: type[Any]) -> tuple[Any, list[tuple[str, str]]]:
    """`UPDATE <table> SET <every column> WHERE id = …` for executemany, and the (attribute,
    parameter) pairs that fill it from a row."""
    if model not in _WRITE_STATEMENTS:
        table = model.__table__
        pairs: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for attr in inspect(model).column_attrs:
            column = attr.columns[0]
            if column.name != "id":
                pairs.append((attr.key, f"v_{column.name}"))
                values[column.name] = bindparam(f"v_{column.name}", type_=column.type)
        statement = update(table).where(table.c.id == bindparam("v_id")).values(values)
        _WRITE_STATEMENTS[model] = (statement, pairs)
    return _WRITE_STATEMENTS[model]


def write_mirrors(session: Session, claimed: Iterable[Versioned]) -> None:
    """The mirror rows the handlers changed, written with one executemany per table (the ORM's
    flush would send one UPDATE per distinct set of changed columns), then let go by the
    session so that its flush does not write them again."""
    changed: dict[type[Any], list[Any]] = defaultdict(list)
    for row in claimed:
        if inspect(row).modified:
            changed[type(row)].append(row)
    for model, rows in changed.items():
        statement, pairs = _write_statement(model)
        params = [
            {"v_id": row.id, **{param: getattr(row, key) for key, param in pairs}} for row in rows
        ]
        session.execute(statement, params)
        for row in rows:
            session.expunge(row)
