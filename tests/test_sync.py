"""Sync from Stripe's list API against the fake over real HTTP: pages, resume, locks, cadence."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.errors import Conflict
from stripe_bridge.event import Event
from stripe_bridge.models import (
    Connection,
    Customer,
    Price,
    Product,
    Subscription,
    SyncRun,
    utcnow,
)
from stripe_bridge.roles.scheduler import Scheduler
from stripe_bridge.stripe_api import StripeRejected
from stripe_bridge.sync import SyncBusy, run_sync
from tests.fake_stripe import FakeStripe
from tests.support import (
    TEST_KEY,
    admin_headers,
    count_rows,
    event,
    post_event,
    post_veles,
    run_jobs,
    veles_event,
    wait_until,
)


def seed_customers(
    fake: FakeStripe, count: int, *, created: int = 1_700_000_000
) -> list[dict[str, Any]]:
    return [
        fake.seed(
            "customer",
            name=f"Customer {n:03}",
            email=f"billing@c{n:03}.example",
            created=created + n,
        )
        for n in range(count)
    ]


def list_requests(fake: FakeStripe, path: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "GET" and r.path == path]


def test_sync_of_260_customers_walks_every_page_once(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    seed_customers(fake_stripe, 260)

    result = run_sync(connected, "default", "customers")

    assert (result.status, result.seen, result.resumed) == ("completed", 260, False)
    assert count_rows(connected, Customer) == 260
    pages = list_requests(fake_stripe, "/v1/customers")
    assert [int(r.params["limit"]) for r in pages] == [100, 100, 100]
    assert [r.params.get("starting_after") is None for r in pages] == [True, False, False]
    with connected.session_factory() as session:
        row = session.get(Connection, "default")
        assert row.customers_last_synced_at is not None
        assert row.products_last_synced_at is None


def test_a_page_is_applied_in_id_order_like_a_batch_job_locks_its_rows(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    """Batch jobs lock mirror rows in id order; a sync page (one transaction) must too, or the
    two can deadlock. Stripe lists newest first, which is not id order."""
    seeded = seed_customers(fake_stripe, 150)
    real = connected.handlers["customer.updated"]
    applied: list[str] = []

    def recording(event: Event, session: Session) -> None:
        applied.append(event.object["id"])
        real(event, session)

    connected.handlers["customer.updated"] = recording

    run_sync(connected, "default", "customers")

    pages = [applied[:100], applied[100:]]
    assert [len(page) for page in pages] == [100, 50]
    assert all(page == sorted(page) for page in pages)
    assert sorted(applied) == sorted(customer["id"] for customer in seeded)


def test_synced_customers_are_matched_like_webhook_ones(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> None:
    post_veles(client, veles_event("customer.upserted", {"id": "v7", "name": "Customer 007 Inc"}))
    run_jobs(connected)
    seed_customers(fake_stripe, 10)

    run_sync(connected, "default", "customers")

    with connected.session_factory() as session:
        linked = session.scalars(select(Customer).where(Customer.veles_customer_id == "v7")).all()
    assert [row.name for row in linked] == ["Customer 007"]


def test_an_interrupted_sync_resumes_from_its_cursor(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    seed_customers(fake_stripe, 250)
    fake_stripe.fail_next(1, status=400, path="/v1/customers")  # fails the first page request…
    with pytest.raises(StripeRejected):
        run_sync(connected, "default", "customers")
    fake_stripe.reset_faults()

    calls: list[int] = []

    def page_two_fails(record: Any) -> bool:
        calls.append(1)
        return record.path == "/v1/customers" and len(calls) == 2

    fake_stripe.fail_when(page_two_fails, status=400)
    with pytest.raises(StripeRejected):
        run_sync(connected, "default", "customers")  # page 1 committed, page 2 refused
    fake_stripe.reset_faults()
    assert count_rows(connected, Customer) == 100
    with connected.session_factory() as session:
        last = session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert (last.status, last.seen) == ("failed", 100)
        cursor = last.cursor

    result = run_sync(connected, "default", "customers")

    assert (result.status, result.resumed, result.seen) == ("completed", True, 250)
    assert count_rows(connected, Customer) == 250
    resumed_from = list_requests(fake_stripe, "/v1/customers")[-2].params.get("starting_after")
    assert cursor == f"customers:{resumed_from}"


def test_two_syncs_of_the_same_kind_never_overlap(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    seed_customers(fake_stripe, 5)
    fake_stripe.set_delay(1.0, path="/v1/customers")
    first: list[Any] = []
    thread = threading.Thread(
        target=lambda: first.append(run_sync(connected, "default", "customers"))
    )
    thread.start()
    assert wait_until(lambda: count_rows(connected, SyncRun, SyncRun.status == "running") == 1)

    with pytest.raises(SyncBusy, match="already running"):
        run_sync(connected, "default", "customers")
    products = run_sync(connected, "default", "products")  # another kind may run meanwhile

    thread.join(timeout=10)
    assert first[0].status == "completed"
    assert products.status == "completed"


def test_a_run_whose_process_died_is_taken_over(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    seed_customers(fake_stripe, 3)
    with connected.session_factory.begin() as session:
        stale = utcnow() - timedelta(hours=1)
        session.add(
            SyncRun(
                workspace_id="default",
                kind="customers",
                status="running",
                pass_started_at=stale,
                started_at=stale,
                heartbeat_at=stale,
            )
        )

    result = run_sync(connected, "default", "customers")

    assert result.status == "completed"
    with connected.session_factory() as session:
        statuses = session.scalars(select(SyncRun.status).order_by(SyncRun.id)).all()
    assert statuses == ["interrupted", "completed"]


def test_customers_missing_from_a_complete_list_are_marked_deleted(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> None:
    post_event(
        client,
        event(
            "customer.created",
            {"id": "cus_gone", "name": "Gone", "created": 1_600_000_000},
            created=1_600_000_000,
        ),
    )
    run_jobs(connected)
    seed_customers(fake_stripe, 3)

    run_sync(connected, "default", "customers")

    with connected.session_factory() as session:
        gone = session.get(Customer, ("default", "cus_gone"))
        assert (gone.deleted, gone.name) == (True, "Gone")
    assert count_rows(connected, Customer, Customer.deleted.is_(False)) == 3


def test_products_sync_brings_products_and_their_prices(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    product = fake_stripe.seed("product", name="Pro Plan")
    fake_stripe.seed("price", product=product["id"], unit_amount=4900, currency="usd")

    result = run_sync(connected, "default", "products")

    assert result.seen == 2
    with connected.session_factory() as session:
        assert session.get(Product, ("default", product["id"])).name == "Pro Plan"
        [price] = session.scalars(select(Price)).all()
        assert (price.product_id, price.unit_amount) == (product["id"], 4900)


def test_subscriptions_sync_includes_canceled_ones(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    customer = fake_stripe.seed("customer", name="Sub Co")
    fake_stripe.seed("subscription", customer=customer["id"], status="active")
    fake_stripe.seed("subscription", customer=customer["id"], status="canceled")

    run_sync(connected, "default", "subscriptions")

    assert count_rows(connected, Subscription) == 2
    assert list_requests(fake_stripe, "/v1/subscriptions")[0].params.get("status") == "all"


def test_a_sync_never_overwrites_a_newer_webhook(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> None:
    stripe_customer = fake_stripe.seed("customer", name="Old Name")
    future = int(time.time()) + 3600
    post_event(
        client,
        event(
            "customer.updated", {"id": stripe_customer["id"], "name": "New Name"}, created=future
        ),
    )
    run_jobs(connected)

    run_sync(connected, "default", "customers")

    with connected.session_factory() as session:
        assert session.get(Customer, ("default", stripe_customer["id"])).name == "New Name"


def test_sync_is_refused_while_disconnected(connected: Context) -> None:
    with connected.session_factory.begin() as session:
        connection.disconnect(session, "default")

    with pytest.raises(Conflict, match="disconnected"):
        run_sync(connected, "default", "customers")


def test_sync_stops_when_disconnected_mid_run(connected: Context, fake_stripe: FakeStripe) -> None:
    seed_customers(fake_stripe, 250)

    def disconnect_after_first_page(resource: str, seen: int) -> None:
        with connected.session_factory.begin() as session:
            connection.disconnect(session, "default")

    from stripe_bridge import sync

    with pytest.raises(Conflict, match="disconnected"):
        sync.run_sync(connected, "default", "customers", progress=disconnect_after_first_page)
    assert count_rows(connected, Customer) == 100


def test_admin_api_queues_a_sync_and_reports_progress(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> None:
    seed_customers(fake_stripe, 12)

    queued = client.post("/admin/api/sync/customers", headers=admin_headers())
    run_jobs_with_sync(connected)
    progress = client.get("/admin/api/sync", headers=admin_headers()).json()["data"]

    assert (queued.status_code, queued.json()) == (202, {"kind": "customers", "queued": True})
    assert [(run["kind"], run["status"], run["seen"]) for run in progress] == [
        ("customers", "completed", 12)
    ]
    assert client.post("/admin/api/sync/everything", headers=admin_headers()).status_code == 400


def run_jobs_with_sync(bridge: Context) -> None:
    from stripe_bridge.jobs import SYNC_QUEUE

    run_jobs(bridge)
    bridge.broker.join(SYNC_QUEUE, timeout=30_000, interval=10)
    run_jobs(bridge)


def test_the_cadence_fires_every_interval_while_connected(connected: Context) -> None:
    scheduler = Scheduler(connected)
    with freeze_time("2026-01-01 12:00:00") as frozen:
        assert sorted(scheduler.due_syncs()) == [("default", "customers"), ("default", "products")]
        assert sorted(scheduler.tick()) == ["customers", "products"]
        assert scheduler.tick() == []  # enqueued, not started yet

        frozen.tick(timedelta(minutes=14, seconds=59))
        assert scheduler.due_syncs() == []
        frozen.tick(timedelta(seconds=1))
        assert sorted(scheduler.tick()) == ["customers", "products"]

        with connected.session_factory.begin() as session:
            connection.disconnect(session, "default")
        frozen.tick(timedelta(minutes=30))
        assert scheduler.due_syncs() == []


def test_the_cadence_counts_from_the_last_recorded_run(
    connected: Context, fake_stripe: FakeStripe
) -> None:
    with freeze_time("2026-01-01 12:00:00") as frozen:
        run_sync(connected, "default", "customers")
        frozen.tick(timedelta(minutes=10))
        assert Scheduler(connected).due_syncs() == [
            ("default", "products")
        ]  # a fresh scheduler (a restart)
        frozen.tick(timedelta(minutes=5))
        assert Scheduler(connected).due_syncs() == [  # the least recently synced first
            ("default", "products"),
            ("default", "customers"),
        ]


def test_cli_connect_sync_update_key_disconnect(cli: Any, fake_stripe: FakeStripe) -> None:
    seed_customers(fake_stripe, 120)

    code, out, _ = cli("connect", "--api-key", TEST_KEY, "--webhook-secret", "whsec_cli")
    assert code == 0
    assert "connected: Context Test Co" in out and TEST_KEY not in out

    code, out, _ = cli("sync", "customers")
    assert (code, out.splitlines()[0].split(" in ")[0]) == (0, "customers: 120 objects, completed")

    code, out, _ = cli("sync", "all", "--json")
    assert code == 0
    assert [(r["kind"], r["status"]) for r in orjson.loads(out)] == [
        ("customers", "completed"),
        ("products", "completed"),
        ("subscriptions", "completed"),
    ]

    code, out, _ = cli("update-key", "--api-key", "rk_test_51BridgeRotatedKeyEfgh", "--json")
    assert (code, orjson.loads(out)["api_key_last4"]) == (0, "Efgh")

    code, out, _ = cli("disconnect")
    assert (code, out.strip()) == (
        0,
        "disconnected from acct_1BridgeTestAcct; every record is kept",
    )

    code, out, err = cli("sync", "customers")
    assert code == 1
    assert err.strip() == "stripe-bridge: sync refused: the Stripe connection is disconnected"

    code, out, _ = cli("status", "--json")
    status = orjson.loads(out)
    assert (status["status"], status["customers_last_synced_at"] is not None) == (
        "disconnected",
        True,
    )


def test_cli_connect_with_a_rejected_key_exits_non_zero_with_one_line(cli: Any) -> None:
    code, out, err = cli("connect", "--api-key", "sk_test_51UnknownToStripe0000")

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and "Stripe refused the key" in err
