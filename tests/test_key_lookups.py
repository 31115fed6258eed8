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
from stripe_bridge.matching.linking import preload_pools
from stripe_bridge.matching.rules import Keys
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
    keys = [("default", event_id) for event_id in stored]
    rows = received_locked(db_session, keys)
    assert [(row[0], row[1]) for row in rows] == keys
    statement = lookup(db_session, lambda: received_locked(db_session, keys))
    assert rows_read(db_session.connection(), *statement) <= BATCH


def test_a_claim_of_several_workspaces_reads_only_their_keys(
    db_session: Session, stored: list[str]
) -> None:
    """Half the batch in `default`, half in `other` (same ids): each key finds its own row."""
    keys = [("other", event_id) for event_id in stored[50:]] + [
        ("default", event_id) for event_id in stored[:50]
    ]
    rows = received_locked(db_session, keys)
    assert [(row[0], row[1]) for row in rows] == sorted(keys)
    statement = lookup(db_session, lambda: received_locked(db_session, keys))
    assert rows_read(db_session.connection(), *statement) <= BATCH


def test_recording_the_outcome_reads_only_the_batch(db_session: Session, stored: list[str]) -> None:
    keys = [("default", event_id) for event_id in stored]
    statement = lookup(db_session, lambda: _record(db_session, keys, PROCESSED, None))
    assert rows_read(db_session.connection(), *statement) <= BATCH


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
    wanted = [("default", stripe_id, veles_id) for stripe_id, veles_id in pairs]

    def preload() -> None:
        preload_links(
            db_session, {"default": uow}, **{"invoices": [], "subscriptions": [], kind: wanted}
        )

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


def test_a_batchs_matching_candidates_are_found_by_key(db_session: Session) -> None:
    """20,000 Veles customers and products in `default` and the same in `other`; a batch of
    customers and products of both workspaces reads each candidate through its key's index,
    and each workspace's pool holds only its own candidates."""
    for workspace in ("default", "other"):
        db_session.execute(
            text(
                "INSERT INTO veles_customers (workspace_id, id, name, email_key, domain_key,"
                " name_key) SELECT :ws, 'vc_' || g, 'Co ' || g, 'a@co' || g || '.com',"
                " 'co' || g || '.com', 'co ' || g FROM generate_series(1, :count) g"
            ),
            {"ws": workspace, "count": STORED},
        )
        db_session.execute(
            text(
                "INSERT INTO veles_products (workspace_id, id, name, name_key) SELECT :ws,"
                " 'vp_' || g, 'Plan ' || g, 'plan ' || g FROM generate_series(1, :count) g"
            ),
            {"ws": workspace, "count": STORED},
        )
    customers = [("default", Keys(f"a@co{n}.com", None, None)) for n in range(1, 26)]
    customers += [("other", Keys(None, f"co{n}.com", f"co {n + 1}")) for n in range(101, 126)]
    products = [("default", f"plan {n}") for n in range(1, 26)]
    products += [("other", f"plan {n}") for n in range(201, 226)] + [("other", None)]

    found = lookups(db_session, lambda: preload_pools(db_session, customers, products), "veles_")
    assert len(found) == 4  # email, domain, name, product names: each for both workspaces
    for statement in found:
        table = "veles_products" if "FROM veles_products" in statement[0] else "veles_customers"
        assert rows_read(db_session.connection(), *statement, table=table) <= BATCH

    pools = preload_pools(db_session, customers, products)
    assert sorted(pools) == ["default", "other"]
    assert sorted(pools["default"].customers) == sorted(
        (f"vc_{n}", Keys(f"a@co{n}.com", f"co{n}.com", f"co {n}")) for n in range(1, 26)
    )
    # by domain co101…co125 and by name co 102…co 126: each candidate once
    other_ids = sorted(veles_id for veles_id, _keys in pools["other"].customers)
    assert other_ids == sorted(f"vc_{n}" for n in range(101, 127))
    assert sorted(pools["default"].products) == sorted(
        (f"vp_{n}", f"plan {n}") for n in range(1, 26)
    )
    assert sorted(veles_id for veles_id, _key in pools["other"].products) == sorted(
        f"vp_{n}" for n in range(201, 226)
    )
    assert pools["other"].covers(Keys(None, "co101.com", "co 102"))
    assert not pools["default"].covers(Keys(None, "co101.com", None))
