"""Stored Stripe events applied in batches: one job, one transaction, the same mirrors, matches
and order feedback as one event a job; one bad or locked event never holds up the others."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge import connection, workspaces
from stripe_bridge.context import Context
from stripe_bridge.event import Event
from stripe_bridge.inbox.apply import Key
from stripe_bridge.inbox.batch import BATCH_SIZE
from stripe_bridge.inbox.door import classify, parse_event
from stripe_bridge.inbox.store import store
from stripe_bridge.models import (
    Customer,
    Invoice,
    Price,
    Product,
    StripeEvent,
    Subscription,
    VelesContract,
    VelesOrder,
)
from stripe_bridge.roles.scheduler import sweep
from tests.faults.stories import Truth
from tests.support import (
    EVENT_TYPES,
    event,
    inbox,
    load_fixture,
    post_event,
    post_veles,
    queued_event_ids,
    queued_jobs,
    row_of,
    run_jobs,
    statuses,
    store_events,
    veles_event,
)

T0 = 1_750_000_000
MIRROR_TABLES = ("customers", "invoices", "prices", "products", "subscriptions")
# bookkeeping that differs between two objects given the same story
NOT_COMPARED = {"id", "src_event_id", "updated_at"}


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Recorder:
    """What the bridge's engine did while a job ran."""

    commits: int = 0
    statements: list[tuple[str, int]] = field(default_factory=list)  # (SQL, rows it carried)

    def writes(self, verb: str, table: str) -> list[int]:
        """The rows each `verb` statement on `table` carried (an executemany carries several),
        e.g. writes('UPDATE', 'customers') == [3]: one statement for three rows."""
        prefix = {"UPDATE": f"UPDATE {table} ", "INSERT": f"INSERT INTO {table} "}[verb]
        return [rows for sql, rows in self.statements if sql.startswith(prefix)]


@contextmanager
def recording(bridge: Context) -> Iterator[Recorder]:
    recorder = Recorder()

    def on_commit(_connection: Connection) -> None:
        recorder.commits += 1

    def on_execute(
        _connection: Connection,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        rows = len(parameters) if executemany else 1
        recorder.statements.append((" ".join(statement.split()), rows))

    sa_event.listen(bridge.engine, "commit", on_commit)
    sa_event.listen(bridge.engine, "before_cursor_execute", on_execute)
    try:
        yield recorder
    finally:
        sa_event.remove(bridge.engine, "commit", on_commit)
        sa_event.remove(bridge.engine, "before_cursor_execute", on_execute)


def apply_in_one_job(bridge: Context, ids: Sequence[str]) -> Recorder:
    """Send `ids` as one batch job through the real actor, run it, and answer what it did."""
    bridge.jobs.send_events("default", ids)
    assert queued_jobs(bridge) == 1
    with recording(bridge) as recorder:
        run_jobs(bridge)
    return recorder


def columns(row: Any) -> dict[str, Any]:
    """Every column of a mirror row but the bookkeeping that differs between two objects."""
    return {
        attr.key: getattr(row, attr.key)
        for attr in row.__mapper__.column_attrs
        if attr.key not in NOT_COMPARED
    }


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def renamed(payload: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The same event with every object id (and reference) renamed: `old` → `new`."""
    return dict(orjson.loads(orjson.dumps(payload).replace(old.encode(), new.encode())))


# --- 1. one job, one transaction ------------------------------------------------------------

CUR, CLS = "QmR4ckT3st", "QmR4ckCl4s"  # object ids of the current story, and of the classic one


def newest(payloads: list[dict[str, Any]], object_id: str) -> str:
    """The id of the event that must have written `object_id`: deleted is terminal, else the
    latest second (the fixtures have no ties)."""
    mine = [p for p in payloads if p["data"]["object"]["id"] == object_id]
    deleted = [p for p in mine if p["type"].endswith(".deleted")]
    if deleted:
        return str(deleted[0]["id"])
    return str(max(mine, key=lambda p: p["created"])["id"])


def story_truth(tag: str, shape: str) -> dict[tuple[type[Any], str], dict[str, Any]]:
    """What each mirror holds after the whole fixture story of `shape` (object ids with `tag`)."""
    cus, prod, sub = f"cus_{tag}Acme01", f"prod_{tag}Pro001", f"sub_1{tag}Sub001"
    price, plan = f"price_1{tag}Pro001", f"plan_{tag}Pro001"
    inv1, inv2, inv3 = f"in_1{tag}Inv001", f"in_1{tag}Inv002", f"in_1{tag}Inv003"
    classic = shape == "classic"
    item = {
        "id": f"si_{tag}Item01",
        "price": plan if classic else price,
        "product": prod,
        "quantity": 5,
    }
    recurring = {"currency": "usd", "unit_amount": 4900, "type": "recurring"}
    recurring |= {"recurring_interval": "month", "recurring_interval_count": 1, "product_id": prod}
    return {
        (Customer, cus): {
            "name": "Acme Corporation",
            "email": "billing@acme.example",
            "domain": "acme.example",
            "deleted": True,
            "created": ts(1746061200),
            "livemode": False,
        },
        (Product, prod): {
            "name": "Pro Plan",
            "description": "Pro plan for growing teams, with priority support",
            "active": False,
            "deleted": True,
            "created": ts(1746057600),
        },
        (Price, price): {**recurring, "nickname": "Pro Monthly", "active": False, "deleted": True},
        (Price, plan): {
            **recurring,
            "nickname": None if classic else "Pro Monthly (legacy plan)",
            "active": False,
            "deleted": True,
        },
        (Subscription, sub): {
            "customer_id": cus,
            "status": "canceled",
            "items": [item],
            "deleted": True,
            "current_period_end": ts(1754006400),
            "canceled_at": ts(1753261200),
            "cancel_at_period_end": False,
        },
        (Invoice, inv1): {
            "customer_id": cus,
            "subscription_id": sub,
            "status": "paid",
            "amount_due": 14700,
            "amount_paid": 14700,
            "number": "ACME-0001",
            "currency": "usd",
        },
        (Invoice, inv2): {
            "customer_id": cus,
            "subscription_id": sub,
            "status": "void",
            "amount_due": 24500,
            "amount_paid": 0,
            "number": "ACME-0002",
        },
        (Invoice, inv3): {"status": "draft", "amount_due": 9800, "deleted": True},
    }


def test_a_mixed_batch_of_both_shapes_is_applied_by_one_job_in_one_transaction(
    bridge: Context,
) -> None:
    current = [load_fixture("current", event_type) for event_type in EVENT_TYPES]
    classic = [renamed(load_fixture("classic", event_type), CUR, CLS) for event_type in EVENT_TYPES]
    payloads = current + classic
    random.Random(7).shuffle(payloads)
    ids = store_events(bridge, payloads)
    assert len(ids) == 2 * len(EVENT_TYPES) == 52  # every fixture type in both shapes

    done = apply_in_one_job(bridge, ids)

    assert done.commits == 1  # one by one would commit once per event
    assert statuses(bridge) == dict.fromkeys(ids, "processed")
    assert {row.attempts for row in inbox(bridge).values()} == {1}
    for table in MIRROR_TABLES:  # each table's rows claimed (created, locked) in one statement
        assert done.writes("INSERT", table) == [1], table
    for tag, shape, story in ((CUR, "current", current), (CLS, "classic", classic)):
        for (model, object_id), fields in story_truth(tag, shape).items():
            row = row_of(bridge, model, object_id)
            assert row is not None, (shape, object_id)
            assert {key: getattr(row, key) for key in fields} == fields, (shape, object_id)
            assert row.src_event_id == newest(story, object_id), (shape, object_id)
    paid = row_of(bridge, Invoice, f"in_1{CUR}Inv001").paid_at
    assert paid == ts(1748998830)  # from status_transitions, not the event's second


def mirror_objects(payloads: list[dict[str, Any]]) -> dict[str, int]:
    """How many distinct objects of each mirror table the events touch."""
    tables = {"customer": "customers", "product": "products", "price": "prices"}
    tables |= {"plan": "prices", "subscription": "subscriptions", "invoice": "invoices"}
    objects = {(tables[p["data"]["object"]["object"]], p["data"]["object"]["id"]) for p in payloads}
    return {table: sum(1 for t, _ in objects if t == table) for table in MIRROR_TABLES}


@pytest.mark.parametrize("families", ["customers", "invoices", "all"])
def test_each_changed_mirror_row_is_written_once_by_one_executemany_per_table(
    bridge: Context, families: str
) -> None:
    story = [load_fixture("current", event_type) for event_type in EVENT_TYPES]
    if families != "all":
        story = [p for p in story if p["data"]["object"]["object"] == families[:-1]]
    ids = store_events(bridge, story)

    done = apply_in_one_job(bridge, ids)

    assert done.commits == 1
    assert set(statuses(bridge).values()) == {"processed"}
    written = {table: done.writes("UPDATE", table) for table in MIRROR_TABLES}
    assert written == {
        table: [count] if count else [] for table, count in mirror_objects(story).items()
    }


# --- 2. one object, many events, one batch ---------------------------------------------------


def customer_story(cus_id: str, tag: str) -> list[dict[str, Any]]:
    """Created, updated, a same-second pair linked by previous_attributes, and a late older
    update; the final truth does not depend on the order the events are applied in."""
    base = {"id": cus_id, "object": "customer", "metadata": {}, "created": T0}

    def customer(event_type: str, n: int, name: str, email: str, **kw: Any) -> dict[str, Any]:
        return event(
            event_type,
            {**base, "name": name, "email": email},
            event_id=f"evt_{tag}{n}",
            **kw,
        )

    return [
        customer("customer.created", 1, "Name 0", "a@one.example", created=T0),
        customer(
            "customer.updated",
            2,
            "Name 1",
            "b@two.example",
            created=T0 + 10,
            previous_attributes={"name": "Name 0", "email": "a@one.example"},
        ),
        customer(
            "customer.updated",
            3,
            "Name 2",
            "b@two.example",
            created=T0 + 20,
            previous_attributes={"name": "Name 1"},
        ),
        customer(
            "customer.updated",
            4,
            "Name 3",
            "c@three.example",
            created=T0 + 20,
            previous_attributes={"name": "Name 2", "email": "b@two.example"},
        ),
        customer("customer.updated", 5, "Stale", "old@stale.example", created=T0 + 5),
    ]


def deleted_story(cus_id: str, tag: str) -> list[dict[str, Any]]:
    """Deleted is terminal: a late update (older, or of the same second) does not bring it
    back, whichever is applied first."""
    obj = {"id": cus_id, "object": "customer", "metadata": {}, "created": T0}
    return [
        event(
            "customer.created",
            {**obj, "name": "Alive", "email": "x@alive.example"},
            created=T0,
            event_id=f"evt_{tag}1",
        ),
        event(
            "customer.updated",
            {**obj, "name": "Renamed", "email": "y@alive.example"},
            created=T0 + 10,
            event_id=f"evt_{tag}2",
        ),
        event(
            "customer.deleted",
            {**obj, "name": "Gone", "email": "z@gone.example"},
            created=T0 + 30,
            event_id=f"evt_{tag}3",
        ),
        event(
            "customer.updated",
            {**obj, "name": "Zombie", "email": "w@zombie.example"},
            created=T0 + 25,
            event_id=f"evt_{tag}4",
        ),
        event(
            "customer.updated",
            {**obj, "name": "Tie", "email": "t@tie.example"},
            created=T0 + 30,
            event_id=f"evt_{tag}5",
        ),
    ]


def invoice_story(in_id: str, tag: str) -> list[dict[str, Any]]:
    """An invoice paid in the same second it was finalized, and a late older update."""
    obj = {
        "id": in_id,
        "object": "invoice",
        "customer": "cus_x",
        "currency": "eur",
        "amount_due": 700,
        "created": T0,
    }
    return [
        event(
            "invoice.created",
            {**obj, "status": "draft", "amount_paid": 0},
            created=T0,
            event_id=f"evt_{tag}1",
        ),
        event(
            "invoice.finalized",
            {**obj, "status": "open", "number": "N-1", "amount_paid": 0},
            created=T0 + 10,
            event_id=f"evt_{tag}2",
        ),
        event(
            "invoice.paid",
            {
                **obj,
                "status": "paid",
                "number": "N-1",
                "amount_paid": 700,
                "status_transitions": {"paid_at": T0 + 10},
            },
            created=T0 + 10,
            event_id=f"evt_{tag}3",
        ),
        event(
            "invoice.updated",
            {**obj, "status": "draft", "amount_paid": 0},
            created=T0 + 5,
            event_id=f"evt_{tag}4",
        ),
    ]


STORIES = {
    "customer": (Customer, customer_story, {"name": "Name 3", "email": "c@three.example"}, 4),
    "deleted": (Customer, deleted_story, {"name": "Gone", "deleted": True}, 3),
    "invoice": (Invoice, invoice_story, {"status": "paid", "amount_paid": 700}, 3),
}


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "shuffled"])
@pytest.mark.parametrize("story", sorted(STORIES))
def test_many_events_of_one_object_in_one_batch_end_as_one_by_one(
    client: TestClient, bridge: Context, story: str, order: str
) -> None:
    model, make, truth, last = STORIES[story]
    # the batch applies its events in id order: the ids decide the order they are applied in
    plan = list(range(1, len(make("x", "x")) + 1))
    if order == "newest_first":
        plan.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(plan)
    batched = make("obj_batched", "")
    rank = {n: position for position, n in enumerate(plan)}
    for n, payload in enumerate(batched, start=1):
        payload["id"] = f"evt_b{rank[n]:02d}_{story}_{n}"
    singles = make("obj_single", f"s_{story}_")

    ids = store_events(bridge, batched)
    done = apply_in_one_job(bridge, [*ids, ids[0], ids[-1]])  # duplicated within the batch too
    for payload in singles + singles[:2]:  # one job per event; redeliveries are duplicates
        post_event(client, payload)
    run_jobs(bridge)

    assert done.commits == 1
    assert set(statuses(bridge).values()) == {"processed"}
    batch_row, single_row = (
        row_of(bridge, model, "obj_batched"),
        row_of(bridge, model, "obj_single"),
    )
    assert {key: getattr(batch_row, key) for key in truth} == truth
    assert columns(batch_row) == columns(single_row)
    assert batch_row.src_event_id == batched[last - 1]["id"]
    assert single_row.src_event_id == singles[last - 1]["id"]

    # the same batch sent again (a redelivered job) changes nothing
    bridge.jobs.send_events("default", ids)
    run_jobs(bridge)
    assert {row.attempts for row in inbox(bridge).values()} == {1}
    assert columns(row_of(bridge, model, "obj_batched")) == columns(batch_row)


# --- 3. one bad event ---------------------------------------------------------------------


def good_customer(n: int) -> dict[str, Any]:
    obj = {
        "id": f"cus_good{n}",
        "object": "customer",
        "name": f"Good {n}",
        "email": f"billing@good{n}.example",
        "created": T0,
    }
    return event("customer.created", obj, created=T0 + n)


@pytest.mark.parametrize(
    ("bad_object", "error"),
    [
        (
            {"id": "cus_bad", "object": "customer", "name": "Bad", "created": "yesterday"},
            "unix timestamp",
        ),
        ({"object": "customer", "name": "No Id"}, "data.object has no id"),
        (
            {
                "id": "cus_bad",
                "object": "customer",
                "name": "Bad",
                "metadata": ["not", "a", "mapping"],
            },
            "metadata: expected an object",
        ),
    ],
    ids=["bad-timestamp", "no-object-id", "bad-metadata"],
)
def test_one_malformed_event_fails_alone_and_the_rest_of_the_batch_is_applied(
    bridge: Context, bad_object: dict[str, Any], error: str
) -> None:
    good = [good_customer(n) for n in range(3)]
    product = event("product.created", {"id": "prod_good", "object": "product", "name": "Kit"})
    bad = event("customer.created", bad_object, created=T0 + 1)
    ids = store_events(bridge, [*good[:2], bad, good[2], product])

    apply_in_one_job(bridge, ids)

    rows = inbox(bridge)
    assert {event_id: row.status for event_id, row in rows.items()} == {
        **dict.fromkeys(ids, "processed"),
        bad["id"]: "failed",
    }
    assert error in (rows[bad["id"]].last_error or "")
    assert rows[bad["id"]].attempts == 1
    assert queued_jobs(bridge) == 0  # a permanent failure is not retried
    with bridge.session_factory() as session:  # nothing half-written for the bad one
        assert set(session.scalars(select(Customer.id))) == {f"cus_good{n}" for n in range(3)}
    for n in range(3):
        row = row_of(bridge, Customer, f"cus_good{n}")
        assert (row.name, row.email, row.domain) == (
            f"Good {n}",
            f"billing@good{n}.example",
            f"good{n}.example",
        )
    assert row_of(bridge, Product, "prod_good").name == "Kit"


def test_a_transient_failure_in_a_batch_is_retried_without_holding_up_the_others(
    bridge: Context,
) -> None:
    ids = store_events(bridge, [good_customer(n) for n in range(4)])
    flaky_id = min(ids)  # the batch applies it first
    real = bridge.handlers["customer.created"]
    calls: list[str] = []

    def flaky(event: Event, session: Session) -> None:
        calls.append(event.id)
        if event.id == flaky_id and calls.count(flaky_id) <= 2:
            raise OperationalError("SELECT 1", {}, Exception("connection reset"))
        real(event, session)

    bridge.handlers["customer.created"] = flaky

    apply_in_one_job(bridge, ids)

    # 1: the batch fails on it; 2: one by one, it fails again (recorded) and the others are
    # applied; 3: the job's retry, after its backoff, applies it alone
    rows = inbox(bridge)
    assert calls.count(flaky_id) == 3
    assert {event_id: row.status for event_id, row in rows.items()} == dict.fromkeys(
        ids, "processed"
    )
    assert (rows[flaky_id].attempts, rows[flaky_id].last_error) == (2, None)
    others = [event_id for event_id in ids if event_id != flaky_id]
    assert [rows[event_id].attempts for event_id in others] == [1, 1, 1]
    retried_at = rows[flaky_id].processed_at
    assert all(
        rows[event_id].processed_at < retried_at - timedelta(milliseconds=500)
        for event_id in others
    )
    assert sorted(row_of(bridge, Customer, f"cus_good{n}").name for n in range(4)) == [
        "Good 0",
        "Good 1",
        "Good 2",
        "Good 3",
    ]


# --- 4. a row another transaction holds ---------------------------------------------------


@contextmanager
def row_locked_elsewhere(
    bridge: Context, event_id: str, *, at_most: float = 5.0
) -> Iterator[threading.Thread]:
    """Another transaction, in its own thread, holds `event_id`'s inbox row (FOR UPDATE) until
    the block ends, or `at_most` seconds: a job that waited for it would see it released then
    (and the holder thread no longer alive), instead of hanging the test."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with bridge.engine.connect() as other:
            other.execute(
                text("SELECT id FROM stripe_events WHERE id = :id FOR UPDATE"), {"id": event_id}
            )
            held.set()
            release.wait(at_most)
            other.rollback()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10), "could not lock the row"
    try:
        yield holder
    finally:
        release.set()
        holder.join(10)


def test_an_event_locked_elsewhere_is_skipped_then_applied_when_sent_again(
    bridge: Context,
) -> None:
    ids = store_events(bridge, [good_customer(n) for n in range(4)])
    held = ids[1]

    with row_locked_elsewhere(bridge, held) as holder:
        done = apply_in_one_job(bridge, ids)
        waited = not holder.is_alive()
        after = statuses(bridge)

    assert not waited  # the batch skipped the row instead of waiting for it
    assert done.commits == 1
    assert after == {**dict.fromkeys(ids, "processed"), held: "received"}
    assert row_of(bridge, Customer, "cus_good1") is None
    assert row_of(bridge, Customer, "cus_good2").name == "Good 2"

    bridge.jobs.send_events("default", [held])  # sent again once the other transaction is over
    run_jobs(bridge)

    assert set(statuses(bridge).values()) == {"processed"}
    row = row_of(bridge, Customer, "cus_good1")
    assert (row.name, row.email) == ("Good 1", "billing@good1.example")
    assert inbox(bridge)[held].attempts == 1


def test_an_event_locked_elsewhere_is_skipped_also_when_the_batch_falls_back(
    bridge: Context,
) -> None:
    bad = event("customer.created", {"id": "cus_bad", "object": "customer", "created": "x"})
    ids = store_events(bridge, [good_customer(0), good_customer(1), bad])
    held = next(event_id for event_id in ids if event_id != bad["id"])

    with row_locked_elsewhere(bridge, held, at_most=2.0) as holder:
        apply_in_one_job(bridge, ids)
        waited = not holder.is_alive()
        after = statuses(bridge)

    assert after == {**dict.fromkeys(ids, "processed"), held: "received", bad["id"]: "failed"}
    assert not waited


# --- 5. mode and connection ---------------------------------------------------------------


def test_an_event_of_the_other_mode_in_a_batch_is_ignored_and_the_others_applied(
    bridge: Context,
) -> None:
    live = event(
        "customer.created", {"id": "cus_live", "object": "customer", "name": "Live"}, livemode=True
    )
    test_mode = [good_customer(n) for n in range(3)]
    ids = store_events(bridge, [test_mode[0], live, *test_mode[1:]])

    done = apply_in_one_job(bridge, ids)

    assert done.commits == 1
    rows = inbox(bridge)
    assert {event_id: (row.status, row.reason) for event_id, row in rows.items()} == {
        **{event_id: ("processed", None) for event_id in ids},
        live["id"]: ("ignored", "mode mismatch: live event, bridge is in test mode"),
    }
    assert rows[live["id"]].attempts == 1
    assert row_of(bridge, Customer, "cus_live") is None
    assert [row_of(bridge, Customer, f"cus_good{n}").name for n in range(3)] == [
        "Good 0",
        "Good 1",
        "Good 2",
    ]


def test_a_batch_while_disconnected_is_ignored_entirely(connected: Context) -> None:
    with connected.session_factory.begin() as session:
        connection.disconnect(session, "default")
    ids = store_events(connected, [good_customer(n) for n in range(3)])

    apply_in_one_job(connected, ids)

    rows = inbox(connected)
    assert {(row.status, row.reason) for row in rows.values()} == {("ignored", "disconnected")}
    assert all(row_of(connected, Customer, f"cus_good{n}") is None for n in range(3))


# --- 6. matching ------------------------------------------------------------------------------

VELES_CUSTOMERS = [
    ("v_acme", "Acme", "billing@acme.example", None),
    ("v_globex", "Globex", "ops@globex.example", None),
    ("v_initech", "Initech", None, None),
    ("v_hooli", "Hooli", None, "hooli.example"),
    ("v_umb_eu", "Umbrella Europe", "eu@umbrella.example", None),
    ("v_umb_us", "Umbrella US", "us@umbrella.example", None),
]
VELES_PRODUCTS = [
    ("vp_pro", "Pro Plan"),
    ("vp_team_a", "Team Plan"),
    ("vp_team_b", "TEAM  plan"),
    ("vp_ent", "Enterprise"),
]
# Stripe customer → its events (name, email, metadata), applied in this order; then the match
CUSTOMER_CASES: dict[
    str, tuple[list[tuple[str | None, str | None, dict[str, str]]], tuple[Any, ...]]
] = {
    "email": (
        [("Someone", "Billing@Acme.example", {})],
        ("matched", "v_acme", "email", ["v_acme"]),
    ),
    "domain": (
        [("Whoever", "cfo@globex.example", {})],
        ("matched", "v_globex", "domain", ["v_globex"]),
    ),
    "name": (
        [("Initech, Inc.", "initech@gmail.com", {})],
        ("matched", "v_initech", "name", ["v_initech"]),
    ),
    "site": (
        [("Whoever", "x@gmail.com", {"website": "https://www.hooli.example/about"})],
        ("matched", "v_hooli", "domain", ["v_hooli"]),
    ),
    "ambiguous": (
        [("Umbrella", "ap@umbrella.example", {})],
        ("not_matched", None, None, ["v_umb_eu", "v_umb_us"]),
    ),
    "none": ([("Nobody", "nobody@nowhere.example", {})], ("not_matched", None, None, [])),
    "no-keys": ([(None, None, {})], ("not_matched", None, None, [])),
    "moving": (
        [
            ("Moving", "billing@acme.example", {}),  # → v_acme by email
            ("Moving", "cfo@globex.example", {}),  # → v_globex by domain
            ("Initech LLC", "someone@gmail.com", {}),  # → v_initech by name
        ],
        ("matched", "v_initech", "name", ["v_initech"]),
    ),
}
# Stripe product → its events (name, active), applied in this order; then the match
PRODUCT_CASES: dict[str, tuple[list[tuple[str, bool]], tuple[Any, ...]]] = {
    "exact": ([("PRO plan", True)], ("name_match", "vp_pro", ["vp_pro"])),
    "twins": ([("Team Plan", True)], ("not_matched", None, ["vp_team_a", "vp_team_b"])),
    "inactive": ([("Enterprise", False)], ("not_matched", None, ["vp_ent"])),
    "unknown": ([("Gadget", True)], ("not_matched", None, [])),
    "moving": (
        [("Gizmo", True), ("Enterprise", True), ("Pro Plan", True)],
        ("name_match", "vp_pro", ["vp_pro"]),
    ),
}


def matching_events(suffix: str, prefix: str) -> list[dict[str, Any]]:
    """Every case's events, with ids that sort in each object's chronological order."""
    payloads: list[dict[str, Any]] = []
    for case, (steps, _) in CUSTOMER_CASES.items():
        for n, (name, email, metadata) in enumerate(steps):
            obj = {
                "id": f"cus_{case}{suffix}",
                "object": "customer",
                "name": name,
                "email": email,
                "metadata": metadata,
                "created": T0,
            }
            event_type = "customer.created" if n == 0 else "customer.updated"
            payloads.append(
                event(event_type, obj, created=T0 + n, event_id=f"evt_{prefix}c_{case}_{n}")
            )
    for case, (product_steps, _) in PRODUCT_CASES.items():
        for n, (name, active) in enumerate(product_steps):
            obj = {
                "id": f"prod_{case}{suffix}",
                "object": "product",
                "name": name,
                "active": active,
                "created": T0,
            }
            event_type = "product.created" if n == 0 else "product.updated"
            payloads.append(
                event(event_type, obj, created=T0 + n, event_id=f"evt_{prefix}p_{case}_{n}")
            )
    deleted = {
        "id": f"cus_deleted{suffix}",
        "object": "customer",
        "name": "Acme",
        "email": "billing@acme.example",
    }
    payloads.append(event("customer.deleted", deleted, event_id=f"evt_{prefix}c_deleted"))
    return payloads


def match_of(bridge: Context, model: type[Any], object_id: str) -> tuple[Any, ...]:
    row = row_of(bridge, model, object_id)
    if model is Customer:
        return (row.match_status, row.veles_customer_id, row.match_method, row.match_candidates)
    return (row.match_status, row.veles_product_id, row.match_candidates)


def test_matching_in_a_batch_gives_the_same_links_as_one_event_a_job(
    client: TestClient, bridge: Context
) -> None:
    for veles_id, name, email, domain in VELES_CUSTOMERS:
        data = {"id": veles_id, "name": name, "email": email, "domain": domain}
        assert post_veles(client, veles_event("customer.upserted", data)).status_code == 202
    for veles_id, name in VELES_PRODUCTS:
        data = {"id": veles_id, "name": name}
        assert post_veles(client, veles_event("product.upserted", data)).status_code == 202
    run_jobs(bridge)

    ids = store_events(bridge, matching_events("_b", "b_"))
    done = apply_in_one_job(bridge, ids)
    singles = matching_events("_s", "s_")
    for step in sorted({payload["created"] for payload in singles}):  # each object's order
        for payload in singles:
            if payload["created"] == step:
                post_event(client, payload)  # one job per event
        run_jobs(bridge)

    assert done.commits == 1
    assert set(statuses(bridge).values()) == {"processed"}
    for case, (_, expected) in CUSTOMER_CASES.items():
        assert match_of(bridge, Customer, f"cus_{case}_b") == expected, case
        assert match_of(bridge, Customer, f"cus_{case}_s") == expected, case
    for case, (_, expected) in PRODUCT_CASES.items():
        assert match_of(bridge, Product, f"prod_{case}_b") == expected, case
        assert match_of(bridge, Product, f"prod_{case}_s") == expected, case
    gone = ("not_matched", None, None, [])
    assert match_of(bridge, Customer, "cus_deleted_b") == gone
    assert match_of(bridge, Customer, "cus_deleted_s") == gone
    with bridge.session_factory() as session:
        for model in (Customer, Product):
            rows = {row.id: columns(row) for row in session.scalars(select(model))}
            for object_id, batched in rows.items():
                if object_id.endswith("_b"):
                    assert batched == rows[object_id[:-2] + "_s"], object_id


# --- 7. orders and contracts ----------------------------------------------------------------


@pytest.fixture
def veles_deals(client: TestClient, bridge: Context) -> None:
    """Orders ord_meta and ord_failed (their invoices carry veles_order_id), ord_linked (the
    bridge knows its invoice in_linked); contracts ctr_meta (veles_contract_id on the
    subscription) and ctr_linked (the bridge knows its subscription sub_linked)."""
    post_veles(client, veles_event("customer.upserted", {"id": "v_acme", "name": "Acme"}))
    post_veles(client, veles_event("product.upserted", {"id": "vp_seats", "name": "Seats"}))
    run_jobs(bridge)
    lines = [{"product_id": "vp_seats", "quantity": 2, "unit_amount": 1500}]
    for order_id in ("ord_meta", "ord_linked", "ord_failed"):
        data = {"id": order_id, "customer_id": "v_acme", "currency": "usd", "lines": lines}
        assert post_veles(client, veles_event("order.committed", data)).status_code == 202
    for contract_id in ("ctr_meta", "ctr_linked"):
        data = {
            "id": contract_id,
            "customer_id": "v_acme",
            "currency": "usd",
            "interval": "month",
            "start_date": "2026-01-01",
            "lines": lines,
        }
        assert post_veles(client, veles_event("contract.activated", data)).status_code == 202
    run_jobs(bridge)
    with bridge.session_factory.begin() as session:
        session.execute(
            update(VelesOrder)
            .where(VelesOrder.id == "ord_linked")
            .values(stripe_invoice_id="in_linked")
        )
        session.execute(
            update(VelesContract)
            .where(VelesContract.id == "ctr_linked")
            .values(stripe_subscription_id="sub_linked")
        )


def invoice_events(
    invoice_id: str, steps: list[tuple[str, str, int]], metadata: dict[str, str]
) -> list[dict[str, Any]]:
    obj = {
        "id": invoice_id,
        "object": "invoice",
        "customer": "cus_acme",
        "currency": "usd",
        "amount_due": 3000,
        "metadata": metadata,
        "created": T0,
    }
    return [
        event(
            event_type,
            {**obj, "status": status, "amount_paid": 3000 if status == "paid" else 0},
            created=T0 + offset,
        )
        for event_type, status, offset in steps
    ]


def subscription_events(
    subscription_id: str, steps: list[tuple[str, str, int]], metadata: dict[str, str]
) -> list[dict[str, Any]]:
    obj = {
        "id": subscription_id,
        "object": "subscription",
        "customer": "cus_acme",
        "metadata": metadata,
        "created": T0,
        "items": {"data": []},
    }
    return [
        event(event_type, {**obj, "status": status}, created=T0 + offset)
        for event_type, status, offset in steps
    ]


@pytest.mark.parametrize("order", ["as_listed", "oldest_first", "newest_first"])
def test_invoice_and_subscription_events_in_a_batch_carry_the_furthest_status_back(
    bridge: Context, veles_deals: None, order: str
) -> None:
    payloads = [
        *invoice_events(
            "in_meta",
            [
                ("invoice.paid", "paid", 30),
                ("invoice.created", "draft", 0),
                ("invoice.payment_failed", "open", 20),
                ("invoice.finalized", "open", 10),
            ],
            {"veles_order_id": "ord_meta"},
        ),
        *invoice_events(
            "in_linked",
            [
                ("invoice.finalized", "open", 10),
                ("invoice.voided", "void", 40),
                ("invoice.created", "draft", 0),
            ],
            {},
        ),
        *invoice_events(
            "in_failed",
            [
                ("invoice.payment_failed", "open", 20),
                ("invoice.created", "draft", 0),
                ("invoice.finalized", "open", 10),
            ],
            {"veles_order_id": "ord_failed"},
        ),
        *subscription_events(
            "sub_meta",
            [
                ("customer.subscription.updated", "past_due", 20),
                ("customer.subscription.created", "incomplete", 0),
                ("customer.subscription.updated", "active", 10),
            ],
            {"veles_contract_id": "ctr_meta"},
        ),
        *subscription_events(
            "sub_linked",
            [
                ("customer.subscription.deleted", "canceled", 50),
                ("customer.subscription.created", "active", 0),
                ("customer.subscription.updated", "past_due", 30),
            ],
            {},
        ),
    ]
    if order != "as_listed":
        payloads.sort(key=lambda p: p["created"], reverse=order == "newest_first")
    for n, payload in enumerate(payloads):  # the batch applies its events in id order
        payload["id"] = f"evt_{n:03d}_{payload['id']}"
    ids = store_events(bridge, payloads)

    done = apply_in_one_job(bridge, ids)

    assert done.commits == 1
    assert set(statuses(bridge).values()) == {"processed"}
    with bridge.session_factory() as session:
        orders = {
            row.id: (row.stripe_invoice_id, row.invoice_status, row.payment_status)
            for row in session.scalars(select(VelesOrder))
        }
        contracts = {
            row.id: (row.stripe_subscription_id, row.subscription_status)
            for row in session.scalars(select(VelesContract))
        }
    assert orders == {
        "ord_meta": ("in_meta", "paid", "paid"),
        "ord_linked": ("in_linked", "void", "void"),
        "ord_failed": ("in_failed", "open", "failed"),
    }
    assert contracts == {
        "ctr_meta": ("sub_meta", "past_due"),
        "ctr_linked": ("sub_linked", "canceled"),
    }
    assert row_of(bridge, Invoice, "in_meta").status == "paid"
    assert row_of(bridge, Subscription, "sub_linked").deleted is True


# --- concurrent batches ------------------------------------------------------------------


def test_concurrent_batches_sharing_objects_neither_deadlock_nor_lose_an_update(
    bridge: Context,
) -> None:
    payloads: list[dict[str, Any]] = []
    for n in range(8):
        for step in range(4):
            customer = {
                "id": f"cus_c{n}",
                "object": "customer",
                "name": f"C{n} v{step}",
                "email": f"c{n}.v{step}@c{n}.example",
                "created": T0,
            }
            product = {
                "id": f"prod_c{n}",
                "object": "product",
                "name": f"P{n} v{step}",
                "created": T0,
            }
            invoice = {
                "id": f"in_c{n}",
                "object": "invoice",
                "customer": f"cus_c{n}",
                "currency": "usd",
                "amount_due": 100 * (step + 1),
                "status": "open",
                "created": T0,
            }
            kind = "created" if step == 0 else "updated"
            payloads += [
                event(f"customer.{kind}", customer, created=T0 + step),
                event(f"product.{kind}", product, created=T0 + step),
                event(
                    "invoice.finalized" if step == 0 else "invoice.updated",
                    invoice,
                    created=T0 + step,
                ),
            ]
    random.Random(5).shuffle(payloads)
    ids = store_events(bridge, payloads)
    batches = [ids[start::6] for start in range(6)]  # every batch touches most objects

    for batch in batches:
        bridge.broker.get_actor("apply_stripe_events").send(batch)
    with recording(bridge) as done:
        run_jobs(bridge)  # four worker threads

    assert done.commits == len(batches)  # a deadlock would have sent a batch one by one
    assert statuses(bridge) == dict.fromkeys(ids, "processed")
    with bridge.session_factory() as session:
        customers = dict(session.execute(select(Customer.id, Customer.email)).all())
        products = dict(session.execute(select(Product.id, Product.name)).all())
        invoices = dict(session.execute(select(Invoice.id, Invoice.amount_due)).all())
    assert customers == {f"cus_c{n}": f"c{n}.v3@c{n}.example" for n in range(8)}
    assert products == {f"prod_c{n}": f"P{n} v3" for n in range(8)}
    assert invoices == {f"in_c{n}": 400 for n in range(8)}


# --- 9. the sweeper ---------------------------------------------------------------------------


def test_the_sweeper_sends_more_than_a_batch_as_several_jobs_each_event_once(
    bridge: Context,
) -> None:
    count = 2 * BATCH_SIZE + 37
    payloads = [
        event(
            "customer.created",
            {
                "id": f"cus_swept{n:03}",
                "object": "customer",
                "name": f"Swept {n}",
                "email": f"n{n}@swept.example",
            },
        )
        for n in range(count)
    ]
    ids = store_events(bridge, payloads)
    with bridge.session_factory.begin() as session:  # stored, and their job lost, 10 min ago
        session.execute(
            update(StripeEvent).values(received_at=datetime.now(UTC) - timedelta(minutes=10))
        )

    assert sweep(bridge) == count
    assert sweep(bridge) == 0  # just sent: not due again yet

    queued = queued_event_ids(bridge)
    assert sorted(queued) == sorted(ids)  # every id exactly once
    assert queued_jobs(bridge) == 3
    run_jobs(bridge)

    assert statuses(bridge) == dict.fromkeys(ids, "processed")
    with bridge.session_factory() as session:
        names = dict(session.execute(select(Customer.id, Customer.name)).all())
    assert names == {f"cus_swept{n:03}": f"Swept {n}" for n in range(count)}


def test_an_order_linked_by_an_earlier_event_of_the_batch_gets_the_later_events_status(
    bridge: Context, veles_deals: None
) -> None:
    """The first event names the order in its metadata and links it; a later event of the same
    batch no longer carries the metadata and must find the order through that link."""
    [finalized] = invoice_events(
        "in_relinked", [("invoice.finalized", "open", 10)], {"veles_order_id": "ord_meta"}
    )
    [paid] = invoice_events("in_relinked", [("invoice.paid", "paid", 30)], {})
    finalized["id"], paid["id"] = "evt_001_finalized", "evt_002_paid"
    ids = store_events(bridge, [finalized, paid])

    done = apply_in_one_job(bridge, ids)

    assert done.commits == 1
    with bridge.session_factory() as session:
        order = session.get(VelesOrder, ("default", "ord_meta"))
        assert order is not None
        assert (order.stripe_invoice_id, order.invoice_status, order.payment_status) == (
            "in_relinked",
            "paid",
            "paid",
        )


# --- the fault suite's generated stories, without the faults -------------------------------


def story_state(kind: str, obj: Any) -> dict[str, Any]:
    """The fields a generated story writes, from its last snapshot or from a mirror row."""
    if isinstance(obj, dict):
        if kind == "customer":
            return {"name": obj["name"], "email": obj["email"]}
        if kind == "subscription":
            quantities = [item["quantity"] for item in obj["items"]["data"]]
            return {"status": obj["status"], "quantity": quantities}
        return {"status": obj["status"], "amount_due": obj["amount_due"]}
    if kind == "customer":
        return {"name": obj.name, "email": obj.email}
    if kind == "subscription":
        return {"status": obj.status, "quantity": [item["quantity"] for item in obj.items]}
    return {"status": obj.status, "amount_due": obj.amount_due}


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_stories_shuffled_into_concurrent_batches_end_in_their_last_snapshot(
    bridge: Context, seed: int
) -> None:
    # Given: the inbound fault scenario's stories (many updates of one object in one second),
    # with random event ids (a batch applies in id order), stored in random order
    rng = random.Random(seed)
    truth = Truth(600, seed=seed)
    payloads = truth.events
    for payload in payloads:
        payload["id"] = f"evt_{rng.getrandbits(64):016x}"
    rng.shuffle(payloads)
    ids = store_events(bridge, payloads)

    # When: they are applied by batch jobs of random sizes, several at once
    while ids:
        size = rng.randint(1, 40)
        bridge.jobs.send_events("default", ids[:size])
        ids = ids[size:]
    run_jobs(bridge)

    # Then: every mirror row holds its story's last snapshot
    models = {"customer": Customer, "subscription": Subscription, "invoice": Invoice}
    wrong = {}
    for story in truth.stories:
        row = row_of(bridge, models[story.kind], story.object_id)
        expected = story_state(story.kind, story.final)
        if story_state(story.kind, row) != expected:
            wrong[story.object_id] = (story_state(story.kind, row), expected)
    assert not wrong, f"{len(wrong)} rows differ, e.g. {dict(list(wrong.items())[:3])}"
    assert set(statuses(bridge).values()) == {"processed"}


def spread(bridge: Context, prefix: str, count: int, payloads: list[dict[str, Any]]) -> list[Key]:
    """`count` connected workspaces `<prefix>-NNN`, each with its own account, holding
    `payloads` stored as their doors store them: each object's events in one workspace
    (the objects dealt round them), so that the story of every object stays whole."""
    names = [f"{prefix}-{n:03d}" for n in range(count)]
    with bridge.session_factory.begin() as session:
        for n, workspace_id in enumerate(names):
            workspaces.create(session, workspace_id)
            account = {"id": f"acct_{prefix}{n:03d}", "settings": {}}
            connection.take(session, workspace_id, account, "test", platform=False)
    objects = sorted({payload["data"]["object"]["id"] for payload in payloads})
    batch = []
    for payload in payloads:
        incoming = parse_event(orjson.dumps(payload))
        classify(incoming, handled=bridge.handlers)
        incoming.workspace_id = names[objects.index(payload["data"]["object"]["id"]) % count]
        batch.append(incoming)
    with bridge.session_factory.begin() as session:
        store(session, StripeEvent, batch)
    return [incoming.key for incoming in batch]


def mirrors_of(bridge: Context, prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every mirror row of the workspaces `<prefix>-…`, by table and object id."""
    found = {}
    with bridge.session_factory() as session:
        for model in (Customer, Invoice, Price, Product, Subscription):
            for row in session.scalars(select(model).where(model.workspace_id.like(f"{prefix}-%"))):
                found[(model.__tablename__, row.id)] = columns(row) | {"workspace_id": None}
    return found


def test_a_job_of_many_workspaces_costs_the_statements_of_a_job_of_one(bridge: Context) -> None:
    """A batch spread over many workspaces (one or two events of each, as when deliveries
    come from hundreds of workspaces) runs the same statements as one of a single workspace:
    each claim, lock and lookup serves all its workspaces at once. The outcome is the same."""
    story = [load_fixture("current", event_type) for event_type in EVENT_TYPES]
    random.Random(3).shuffle(story)
    objects = len({payload["data"]["object"]["id"] for payload in story})
    assert objects == 8
    runs: dict[int, tuple[Recorder, dict[tuple[str, str], dict[str, Any]]]] = {}
    for count in (1, objects):  # all in one workspace; each object in a workspace of its own
        keys = spread(bridge, f"spread{count}", count, story)
        assert len({workspace_id for workspace_id, _id in keys}) == count
        bridge.jobs.send_keys(keys)
        assert queued_jobs(bridge) == 1
        with recording(bridge) as done:
            run_jobs(bridge)
        with bridge.session_factory() as session:
            outcome = session.execute(
                select(StripeEvent.status, StripeEvent.attempts)
                .where(StripeEvent.workspace_id.like(f"spread{count}-%"))
                .distinct()
            ).all()
        assert outcome == [("processed", 1)]
        runs[count] = (done, mirrors_of(bridge, f"spread{count}"))

    (one, one_mirrors), (many, many_mirrors) = runs[1], runs[objects]
    assert one.commits == many.commits == 1
    assert len(many.statements) == len(one.statements), [sql for sql, _ in many.statements]
    assert many_mirrors == one_mirrors
    assert len(one_mirrors) == sum(mirror_objects(story).values())
