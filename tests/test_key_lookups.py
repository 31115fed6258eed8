"""A batch's inbox lookups by key read the batch's rows, not its workspace's.

Every primary key leads with the workspace. On a table PostgreSQL has not analyzed yet (a new
deployment; autovacuum off or not come round), `workspace_id = … AND id IN (…)` was planned with
`workspace_id = …` alone as the index condition: each batch of 100 read every row of the
workspace, and the worker slowed as the inbox grew. The lookups the apply path and the sweeper
make are checked here on 20,000 stored events by what their plans actually read (EXPLAIN
ANALYZE), whatever the statistics say."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from stripe_bridge.handlers.orders import preload_links
from stripe_bridge.inbox.apply import received_locked
from stripe_bridge.inbox.batch import _record
from stripe_bridge.inbox.store import mark_enqueued
from stripe_bridge.models import PROCESSED, StripeEvent
from stripe_bridge.uow import UnitOfWork

STORED = 20_000
BATCH = 100


@pytest.fixture
def stored(db_session: Session) -> list[str]:
    """20,000 received events in `default`, and in `other` 100 with the ids of the batch."""
    db_session.execute(
        text(
            "INSERT INTO stripe_events (workspace_id, id, type, created, object_id, payload,"
            " received_at, status, attempts, livemode) SELECT ws, 'evt_' || lpad(g::text, 6, '0'),"
            " 'customer.updated', g, 'cus_' || g, :payload, now(), 'received', 0, false"
            " FROM generate_series(1, :count) g, (VALUES ('default')) w(ws)"
            " UNION ALL SELECT 'other', 'evt_' || lpad(g::text, 6, '0'), 'customer.updated', g,"
            " 'cus_' || g, :payload, now(), 'received', 0, false FROM generate_series(7001, 7100) g"
        ),
        {"payload": orjson.dumps({"id": "evt"}), "count": STORED},
    )
    return [f"evt_{n:06d}" for n in range(7_001, 7_001 + BATCH)]


@contextmanager
def statements(connection: Connection) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    sa_event.listen(connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(connection, "before_cursor_execute", record)


def rows_read(
    connection: Connection, statement: str, parameters: Any, table: str = "stripe_events"
) -> int:
    """The most rows any scan of `table` in the statement's plan produced or threw away,
    measured by running it (inside the test's transaction)."""
    plan = connection.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
    ).scalar_one()

    def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", ()):
            yield from walk(child)

    scans = [
        node
        for node in walk(plan[0]["Plan"])
        if node.get("Relation Name") == table and "Scan" in node["Node Type"]
    ]
    assert scans, plan
    return max(
        (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        for node in scans
    )


def lookups(
    session: Session, call: Callable[[], object], table: str = "stripe_events"
) -> list[tuple[str, Any]]:
    connection = session.connection()
    with statements(connection) as seen:
        call()
    return [(sql, params) for sql, params in seen if table in sql]


def lookup(session: Session, call: Callable[[], object]) -> tuple[str, Any]:
    touching = lookups(session, call)
    assert len(touching) == 1, touching
    return touching[0]


def test_the_claim_reads_only_the_batch(db_session: Session, stored: list[str]) -> None:
    rows = received_locked(db_session, "default", stored)
    assert [row[0] for row in rows] == stored
    statement = lookup(db_session, lambda: received_locked(db_session, "default", stored))
    assert rows_read(db_session.connection(), *statement) <= BATCH


def test_recording_the_outcome_reads_only_the_batch(db_session: Session, stored: list[str]) -> None:
    uow = UnitOfWork(db_session, "default")
    statement = lookup(db_session, lambda: _record(uow, stored, PROCESSED, None))
    assert rows_read(db_session.connection(), *statement) <= BATCH
    statuses = db_session.execute(
        text(
            "SELECT workspace_id, status, count(*) FROM stripe_events"
            " WHERE status <> 'received' GROUP BY 1, 2"
        )
    ).all()
    # run twice (the call and its EXPLAIN ANALYZE), in default only: the other workspace's
    # events with the same ids are untouched
    assert statuses == [("default", PROCESSED, BATCH)]
    attempts = db_session.scalars(
        text("SELECT DISTINCT attempts FROM stripe_events WHERE status = 'processed'")
    ).all()
    assert attempts == [2]


def test_the_sweepers_mark_reads_only_the_batch(db_session: Session, stored: list[str]) -> None:
    keys = [("default", event_id) for event_id in stored[:50]] + [
        ("other", event_id) for event_id in stored[:50]
    ]
    statement = lookup(db_session, lambda: mark_enqueued(db_session, StripeEvent, keys))
    assert rows_read(db_session.connection(), *statement) <= BATCH
    marked = db_session.execute(
        text(
            "SELECT workspace_id, count(*) FROM stripe_events WHERE enqueued_at IS NOT NULL"
            " GROUP BY 1 ORDER BY 1"
        )
    ).all()
    assert marked == [("default", 50), ("other", 50)]


@pytest.mark.parametrize(
    ("table", "link_column", "kind"),
    [
        ("veles_orders", "stripe_invoice_id", "invoices"),
        ("veles_contracts", "stripe_subscription_id", "subscriptions"),
    ],
)
def test_a_batchs_orders_and_contracts_are_found_by_key(
    db_session: Session, table: str, link_column: str, kind: str
) -> None:
    """20,000 of the workspace's orders (contracts); a batch of 100 invoices (subscriptions),
    half naming their order in metadata, half known by the Stripe id the relay stored."""
    extra = "'month', '2026-01-01', " if table == "veles_contracts" else ""
    columns = (
        "workspace_id, id, customer_id, currency, "
        + ("interval, start_date, " if table == "veles_contracts" else "")
        + f"lines, status, {link_column}, created_at"
    )
    db_session.execute(
        text(
            f"INSERT INTO {table} ({columns}) SELECT 'default', 'v_' || lpad(g::text, 6, '0'),"
            f" 'cust', 'usd', {extra}'[]', 'pushed', 's_' || lpad(g::text, 6, '0'), now()"
            f" FROM generate_series(1, {STORED}) g"
        )
    )
    by_metadata = [(f"s_{n:06d}", f"v_{n:06d}") for n in range(7_001, 7_051)]
    by_stripe_id: list[tuple[str, str | None]] = [(f"s_{n:06d}", None) for n in range(7_051, 7_101)]
    pairs: list[tuple[str, str | None]] = [*by_metadata, *by_stripe_id]
    uow = UnitOfWork(db_session, "default")

    def preload() -> None:
        preload_links(uow, **{"invoices": [], "subscriptions": [], kind: pairs})

    found = lookups(db_session, preload, table)
    assert found
    for statement in found:
        assert rows_read(db_session.connection(), *statement, table=table) <= 2 * BATCH
    links = uow.links
    assert links is not None
    if kind == "invoices":
        assert sorted(links.orders) == [f"v_{n:06d}" for n in range(7_001, 7_101)]
        assert links.orders_by_invoice["s_007090"].id == "v_007090"
    else:
        assert sorted(links.contracts) == [f"v_{n:06d}" for n in range(7_001, 7_101)]
        assert links.contracts_by_subscription["s_007090"].id == "v_007090"
