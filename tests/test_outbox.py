"""The outbox against the fake Stripe over real HTTP and real PostgreSQL: orders → invoices,
contracts → subscriptions, exactly once in effect, payment status back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge import connection, handlers, outbox
from stripe_bridge.context import Context
from stripe_bridge.event import Event
from stripe_bridge.models import Customer, OutboxRow, StripeEvent, VelesEvent, VelesOrder
from stripe_bridge.sync import run_sync
from stripe_bridge.uow import UnitOfWork
from tests.fake_stripe import FakeStripe
from tests.support import (
    TEST_KEY,
    admin_get,
    admin_headers,
    all_rows,
    event,
    post_event,
    post_veles,
    relay_for,
    run_jobs,
    veles_event,
    wait_until,
)

PRODUCTS = {"vp_seats": "Seats", "vp_support": "Support", "vp_onboarding": "Onboarding"}


class SimulatedCrash(BaseException):
    """Raised by the relay's step hook: the process 'dies' between two steps."""


class WatchedWakeup(threading.Event):
    """A relay's wake-up that also tells when a pusher has started waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.set()
        return super().wait(timeout)


@pytest.fixture
def world(connected: Context, client: TestClient, fake_stripe: FakeStripe) -> dict[str, Any]:
    """Connected; three Veles products name-matched to Stripe products; Veles customer v_acme
    linked to a Stripe customer; Veles customer v_new with no Stripe customer."""
    stripe_products = {
        veles_id: fake_stripe.seed("product", name=name) for veles_id, name in PRODUCTS.items()
    }
    acme = fake_stripe.seed("customer", name="Acme", email="ap@acme.example")
    for veles_id, name in PRODUCTS.items():
        post_veles(client, veles_event("product.upserted", {"id": veles_id, "name": name}))
    post_veles(
        client,
        veles_event(
            "customer.upserted", {"id": "v_acme", "name": "Acme", "email": "ap@acme.example"}
        ),
    )
    post_veles(
        client,
        veles_event(
            "customer.upserted", {"id": "v_new", "name": "Newco", "email": "hi@newco.example"}
        ),
    )
    run_jobs(connected)
    run_sync(connected, "default", "products")
    run_sync(connected, "default", "customers")
    fake_stripe.reset_faults()
    return {"products": {k: v["id"] for k, v in stripe_products.items()}, "acme": acme["id"]}


def order_event(
    order_id: str, customer: str = "v_acme", lines: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    lines = lines or [
        {"product_id": "vp_seats", "description": "Seats", "quantity": 10, "unit_amount": 1500},
        {"product_id": "vp_support", "description": "Support", "quantity": 1, "unit_amount": 50000},
        {"product_id": "vp_onboarding", "quantity": 2, "unit_amount": 12500},
    ]
    return veles_event(
        "order.committed",
        {"id": order_id, "customer_id": customer, "currency": "usd", "lines": lines},
    )


def commit_order(client: TestClient, bridge: Context, payload: dict[str, Any]) -> None:
    assert post_veles(client, payload).status_code == 202
    run_jobs(bridge)


def invoices_for(fake: FakeStripe, order_id: str) -> list[dict[str, Any]]:
    return [i for i in fake.objects("invoice") if i["metadata"].get("veles_order_id") == order_id]


def items_for(fake: FakeStripe, invoice_id: str) -> list[dict[str, Any]]:
    return [i for i in fake.objects("invoiceitem") if i.get("invoice") == invoice_id]


def order(client: TestClient, order_id: str) -> dict[str, Any]:
    return dict(admin_get(client, f"orders/{order_id}"))


def assert_one_complete_invoice(fake: FakeStripe, order_id: str, customer: str) -> dict[str, Any]:
    [invoice] = invoices_for(fake, order_id)
    items = items_for(fake, invoice["id"])
    assert sorted((i["quantity"], i["amount"]) for i in items) == [
        (1, 50000),
        (2, 25000),
        (10, 15000),
    ]
    assert (invoice["status"], invoice["customer"], invoice["amount_due"]) == (
        "open",
        customer,
        90000,
    )
    return invoice


def test_an_order_with_three_lines_becomes_one_finalized_invoice(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1"))

    assert relay_for(bridge).drain() == 1

    invoice = assert_one_complete_invoice(fake_stripe, "ord_1", world["acme"])
    products = [
        i["pricing"]["price_details"]["product"] for i in items_for(fake_stripe, invoice["id"])
    ]
    assert sorted(products) == sorted(world["products"].values())
    shown = order(client, "ord_1")
    assert (shown["stripe_invoice_id"], shown["invoice_status"], shown["payment_status"]) == (
        invoice["id"],
        "open",
        "unpaid",
    )
    assert [row["status"] for row in shown["outbox"]] == ["sent"]
    keys = {r.idempotency_key for r in fake_stripe.requests if r.method == "POST"}
    row_id = all_rows(bridge, OutboxRow)[0].id
    assert {
        f"veles-outbox-{row_id}-invoice",
        f"veles-outbox-{row_id}-item-0",
        f"veles-outbox-{row_id}-finalize",
    } <= keys


def test_the_same_event_twice_makes_one_invoice(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    payload = order_event("ord_1")
    commit_order(client, bridge, payload)
    commit_order(client, bridge, payload)
    again = order_event("ord_1")  # the same order under another event id
    commit_order(client, bridge, again)

    relay_for(bridge).drain()

    assert len(invoices_for(fake_stripe, "ord_1")) == 1
    assert len(all_rows(bridge, OutboxRow)) == 1
    with bridge.session_factory() as session:
        failed = session.get(VelesEvent, ("default", again["id"]))
        assert (failed.status, failed.last_error.split(": ", 1)[-1]) == (
            "failed",
            "order ord_1 is already committed",
        )


@pytest.mark.parametrize(
    "after_window", [False, True], ids=["within-24h", "after-idempotency-window"]
)
@pytest.mark.parametrize("step", ["customer", "invoice", "item-0", "item-1", "item-2", "finalize"])
def test_a_relay_killed_after_any_step_resumes_into_one_invoice(
    world: dict[str, Any],
    client: TestClient,
    bridge: Context,
    fake_stripe: FakeStripe,
    step: str,
    after_window: bool,
) -> None:
    commit_order(client, bridge, order_event("ord_1"))

    def crash(done: str) -> None:
        if done == step:
            raise SimulatedCrash(done)

    with pytest.raises(SimulatedCrash):
        relay_for(bridge, after_step=crash).drain()
    [row] = all_rows(bridge, OutboxRow)
    assert row.status == "in_flight"
    if after_window:
        fake_stripe.expire_idempotency_keys()
    with bridge.session_factory.begin() as session:  # the dead relay's lease runs out
        session.execute(
            update(OutboxRow).values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )

    assert relay_for(bridge).drain() == 1

    assert_one_complete_invoice(fake_stripe, "ord_1", world["acme"])
    assert all_rows(bridge, OutboxRow)[0].status == "sent"


def test_500_and_429_are_retried_into_one_invoice(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1"))
    fake_stripe.fail_next(2, status=500, path="/v1/invoices")
    fake_stripe.fail_next(2, status=429, path="/v1/invoiceitems", headers={"Retry-After": "0"})

    relay_for(bridge).drain()

    assert_one_complete_invoice(fake_stripe, "ord_1", world["acme"])
    assert [
        r.status for r in fake_stripe.requests if r.path == "/v1/invoices" and r.method == "POST"
    ] == [500, 500, 200]


def test_stripe_down_for_longer_leaves_the_row_to_retry_with_backoff(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1"))
    fake_stripe.fail_next(5, status=503, path="/v1/invoices")

    relay_for(bridge).drain()

    [row] = all_rows(bridge, OutboxRow)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > datetime.now(UTC)
    assert "Stripe unavailable" in row.last_error
    with bridge.session_factory.begin() as session:
        session.execute(update(OutboxRow).values(next_attempt_at=datetime.now(UTC)))
    relay_for(bridge).drain()
    assert_one_complete_invoice(fake_stripe, "ord_1", world["acme"])


def contract_event(event_type: str, contract_id: str = "ctr_1", **data: Any) -> dict[str, Any]:
    body = {
        "id": contract_id,
        "customer_id": "v_acme",
        "currency": "usd",
        "interval": "month",
        "start_date": datetime.now(UTC).date().isoformat(),
        "lines": [{"product_id": "vp_seats", "quantity": 5, "unit_amount": 1500}],
    }
    body.update(data)
    if event_type == "contract.cancelled":
        body = {"id": contract_id, **data}
    return veles_event(event_type, body)


def test_a_400_makes_the_row_dead_and_later_rows_of_the_contract_wait(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, contract_event("contract.activated"))
    commit_order(
        client,
        bridge,
        contract_event(
            "contract.amended",
            lines=[{"product_id": "vp_seats", "quantity": 8, "unit_amount": 1500}],
        ),
    )
    commit_order(client, bridge, order_event("ord_other"))
    fake_stripe.fail_next(1, status=400, path="/v1/subscriptions")

    relay_for(bridge).drain()

    activate, amend, other = all_rows(bridge, OutboxRow)
    assert activate.status == "dead"
    assert "stripe_rejected" in activate.last_error or "create subscription" in activate.last_error
    assert (amend.status, amend.attempts) == ("pending", 0)  # waits behind the dead row
    assert other.status == "sent"  # another aggregate is not held up

    with bridge.session_factory.begin() as session:  # the operator replays the dead row
        session.execute(
            update(OutboxRow).where(OutboxRow.id == activate.id).values(status="pending")
        )
    relay_for(bridge).drain()

    assert [r.status for r in all_rows(bridge, OutboxRow)] == ["sent", "sent", "sent"]
    [subscription] = fake_stripe.objects("subscription")
    assert [i["quantity"] for i in subscription["items"]["data"]] == [8]


def test_a_product_with_no_stripe_link_is_a_dead_letter_with_the_reason(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    unlinked = veles_event("product.upserted", {"id": "vp_unlinked", "name": "Not In Stripe"})
    commit_order(client, bridge, unlinked)
    commit_order(
        client,
        bridge,
        order_event(
            "ord_1", lines=[{"product_id": "vp_unlinked", "quantity": 1, "unit_amount": 100}]
        ),
    )

    relay_for(bridge).drain()

    [row] = all_rows(bridge, OutboxRow)
    assert row.status == "dead"
    assert "vp_unlinked have no Stripe product" in row.last_error
    assert invoices_for(fake_stripe, "ord_1") == []
    assert [r.method for r in fake_stripe.requests if r.method == "POST"] == []


def test_two_relays_in_threads_over_200_orders_make_exactly_one_invoice_each(
    world: dict[str, Any], bridge: Context, fake_stripe: FakeStripe
) -> None:
    with bridge.session_factory.begin() as session:
        for n in range(200):
            outbox.record_order(
                session,
                "default",
                {
                    "id": f"ord_{n:03}",
                    "customer_id": "v_acme",
                    "currency": "usd",
                    "lines": [{"product_id": "vp_seats", "quantity": 1, "unit_amount": 100 + n}],
                },
            )
    done: list[int] = []
    threads = [
        threading.Thread(target=lambda: done.append(relay_for(bridge).drain())) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert sum(done) == 200
    assert all(count > 0 for count in done)  # both relays took a share
    per_order: dict[str, int] = {}
    for invoice in fake_stripe.objects("invoice"):
        order_id = invoice["metadata"]["veles_order_id"]
        per_order[order_id] = per_order.get(order_id, 0) + 1
    assert per_order == {f"ord_{n:03}": 1 for n in range(200)}
    assert len(fake_stripe.objects("invoiceitem")) == 200
    assert {r.status for r in all_rows(bridge, OutboxRow)} == {"sent"}


def test_contract_activate_amend_cancel_shapes_the_subscription(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(
        client,
        bridge,
        contract_event(
            "contract.activated",
            lines=[
                {"product_id": "vp_seats", "quantity": 5, "unit_amount": 1500},
                {"product_id": "vp_support", "quantity": 1, "unit_amount": 50000},
            ],
        ),
    )
    relay_for(bridge).drain()
    [subscription] = fake_stripe.objects("subscription")
    assert subscription["metadata"] == {"veles_contract_id": "ctr_1"}
    assert sorted(
        (i["price"]["unit_amount"], i["quantity"], i["price"]["recurring"]["interval"])
        for i in subscription["items"]["data"]
    ) == [(1500, 5, "month"), (50000, 1, "month")]

    commit_order(
        client,
        bridge,
        contract_event(
            "contract.amended",
            lines=[
                {"product_id": "vp_seats", "quantity": 12, "unit_amount": 1500},
                {"product_id": "vp_onboarding", "quantity": 1, "unit_amount": 9900},
            ],
        ),
    )
    relay_for(bridge).drain()
    subscription = fake_stripe.get("subscription", subscription["id"])
    assert sorted(
        (i["price"]["product"], i["quantity"]) for i in subscription["items"]["data"]
    ) == sorted([(world["products"]["vp_seats"], 12), (world["products"]["vp_onboarding"], 1)])

    commit_order(client, bridge, contract_event("contract.cancelled", at_period_end=True))
    relay_for(bridge).drain()
    subscription = fake_stripe.get("subscription", subscription["id"])
    assert (subscription["status"], subscription["cancel_at_period_end"]) == ("active", True)
    contract = client.get("/admin/api/contracts/ctr_1", headers=admin_headers()).json()
    assert (contract["stripe_subscription_id"], contract["status"]) == (
        subscription["id"],
        "cancelled",
    )
    assert [r["status"] for r in contract["outbox"]] == ["sent", "sent", "sent"]


def test_cancelling_now_cancels_the_subscription_at_once(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, contract_event("contract.activated"))
    commit_order(client, bridge, contract_event("contract.cancelled", at_period_end=False))

    relay_for(bridge).drain()

    [subscription] = fake_stripe.objects("subscription")
    assert (subscription["status"], subscription["canceled_at"] is not None) == ("canceled", True)
    assert [r.status for r in all_rows(bridge, OutboxRow)] == ["sent", "sent"]


@pytest.mark.parametrize(
    ("offset", "param"), [(-30, "backdate_start_date"), (30, "billing_cycle_anchor")]
)
def test_the_contract_start_date_is_honoured(
    world: dict[str, Any],
    client: TestClient,
    bridge: Context,
    fake_stripe: FakeStripe,
    offset: int,
    param: str,
) -> None:
    start = (datetime.now(UTC) + timedelta(days=offset)).date()
    commit_order(client, bridge, contract_event("contract.activated", start_date=start.isoformat()))

    relay_for(bridge).drain()

    [create] = [
        r for r in fake_stripe.requests if r.method == "POST" and r.path == "/v1/subscriptions"
    ]
    assert int(create.params[param]) == int(
        datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    )


def test_a_customer_with_no_stripe_link_gets_one_created_once(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1", customer="v_new"))
    commit_order(client, bridge, order_event("ord_2", customer="v_new"))
    commit_order(client, bridge, contract_event("contract.activated", customer_id="v_new"))

    done: list[int] = []
    threads = [
        threading.Thread(target=lambda: done.append(relay_for(bridge).drain())) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    created = [
        c
        for c in fake_stripe.objects("customer")
        if c["metadata"].get("veles_customer_id") == "v_new"
    ]
    assert len(created) == 1
    assert {i["customer"] for i in fake_stripe.objects("invoice")} == {created[0]["id"]}
    with bridge.session_factory() as session:
        link = session.get(Customer, ("default", created[0]["id"]))
        assert (link.veles_customer_id, link.match_status, link.match_manual) == (
            "v_new",
            "matched",
            True,
        )


def test_payment_status_flows_back_onto_the_order(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1"))
    relay_for(bridge).drain()
    invoice = invoices_for(fake_stripe, "ord_1")[0]

    def webhook(event_type: str, status: str, created: int) -> None:
        post_event(client, event(event_type, {**invoice, "status": status}, created=created))
        run_jobs(bridge)

    webhook("invoice.payment_failed", "open", created=2_000_000_000)
    assert order(client, "ord_1")["payment_status"] == "failed"
    webhook("invoice.paid", "paid", created=2_000_000_100)
    assert (order(client, "ord_1")["payment_status"], order(client, "ord_1")["invoice_status"]) == (
        "paid",
        "paid",
    )
    webhook("invoice.finalized", "open", created=2_000_000_050)  # late and older: no effect
    assert order(client, "ord_1")["payment_status"] == "paid"


def test_voided_and_uncollectible_invoices_show_on_the_order(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    commit_order(client, bridge, order_event("ord_1"))
    commit_order(client, bridge, order_event("ord_2"))
    relay_for(bridge).drain()
    for order_id, event_type, status in (
        ("ord_1", "invoice.voided", "void"),
        ("ord_2", "invoice.marked_uncollectible", "uncollectible"),
    ):
        invoice = invoices_for(fake_stripe, order_id)[0]
        post_event(client, event(event_type, {**invoice, "status": status}, created=2_000_000_000))
    run_jobs(bridge)

    assert order(client, "ord_1")["payment_status"] == "void"
    assert order(client, "ord_2")["payment_status"] == "uncollectible"


def test_a_draft_invoice_deleted_in_stripe_leaves_the_live_set_and_the_order_shows_it(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    """Given an order whose invoice is still a draft (its push stopped before finalizing), when
    Stripe deletes the draft (`invoice.deleted`), the mirror marks it deleted, the invoices
    list says so, and the order no longer shows a draft invoice; a late draft event changes
    nothing."""
    commit_order(client, bridge, order_event("ord_1"))
    draft = {
        "id": "in_draft1",
        "object": "invoice",
        "status": "draft",
        "customer": "cus_1",
        "currency": "eur",
        "amount_due": 1000,
        "metadata": {"veles_order_id": "ord_1"},
    }
    post_event(client, event("invoice.created", draft, created=2_000_000_000))
    run_jobs(bridge)
    assert order(client, "ord_1")["invoice_status"] == "draft"

    deleted = event("invoice.deleted", draft, created=2_000_000_010)
    late = event("invoice.updated", draft, created=2_000_000_005)
    for payload in (deleted, late):
        assert post_event(client, payload).status_code == 200
    run_jobs(bridge)

    shown = order(client, "ord_1")
    assert (shown["invoice_status"], shown["payment_status"]) == ("deleted", "void")
    listed = client.get("/admin/api/invoices", headers=admin_headers()).json()["data"]
    assert [(item["id"], item["deleted"]) for item in listed] == [("in_draft1", True)]
    with bridge.session_factory() as session:
        assert session.scalars(
            select(StripeEvent.status).where(StripeEvent.id.in_([deleted["id"], late["id"]]))
        ).all() == ["processed", "processed"]


def test_nothing_is_pushed_while_disconnected_and_everything_after_reconnecting(
    world: dict[str, Any], client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    with bridge.session_factory.begin() as session:
        connection.disconnect(session, "default")
    commit_order(client, bridge, order_event("ord_1"))
    before = len(fake_stripe.requests)

    assert relay_for(bridge).drain() == 0
    assert len(fake_stripe.requests) == before  # not one call to Stripe
    assert all_rows(bridge, OutboxRow)[0].status == "pending"

    with bridge.session_factory.begin() as session:
        connection.connect(session, bridge.box, bridge.gateway, "default", TEST_KEY)
    assert relay_for(bridge).drain() == 1
    assert all_rows(bridge, OutboxRow)[0].status == "sent"
    assert_one_complete_invoice(fake_stripe, "ord_1", world["acme"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customer_id": "v_nobody"}, "unknown Veles customer v_nobody"),
        (
            {"lines": [{"product_id": "vp_ghost", "quantity": 1, "unit_amount": 1}]},
            "unknown Veles product vp_ghost",
        ),
        (
            {"lines": [{"product_id": "vp_seats", "quantity": -1, "unit_amount": 1}]},
            "quantity must be an integer ≥ 1",
        ),
        (
            {"lines": [{"product_id": "vp_seats", "quantity": 1, "unit_amount": -5}]},
            "unit_amount must be an integer ≥ 0",
        ),
        ({"currency": "dollars"}, "currency must be a three-letter ISO code"),
    ],
)
def test_an_order_that_cannot_be_valid_fails_with_the_reason_and_writes_nothing(
    world: dict[str, Any], client: TestClient, bridge: Context, change: dict[str, Any], reason: str
) -> None:
    payload = order_event("ord_bad")
    payload["data"].update(change)

    commit_order(client, bridge, payload)

    with bridge.session_factory() as session:
        failed = session.get(VelesEvent, ("default", payload["id"]))
        assert failed.status == "failed"
        assert reason in failed.last_error
        assert session.get(VelesOrder, ("default", "ord_bad")) is None
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 0


def test_an_order_without_lines_is_refused_at_the_door(
    world: dict[str, Any], client: TestClient
) -> None:
    payload = order_event("ord_bad")
    payload["data"]["lines"] = []

    response = post_veles(client, payload)

    assert response.status_code == 400
    assert "lines" in response.json()["error"]["message"]


def test_the_python_api_writes_in_the_callers_transaction(
    world: dict[str, Any], bridge: Context
) -> None:
    data = {
        "id": "ord_py",
        "customer_id": "v_acme",
        "currency": "EUR",
        "lines": [{"product_id": "vp_seats", "quantity": 1, "unit_amount": 1}],
    }
    with bridge.session_factory() as session:
        outbox.record_order(session, "default", data, dedupe_key="caller-1")
        session.rollback()  # the caller's business change failed: nothing stays
    assert all_rows(bridge, OutboxRow) == []

    with bridge.session_factory.begin() as session:
        row = outbox.record_order(session, "default", data, dedupe_key="caller-1")
        assert row is not None and row.payload["currency"] == "eur"
    with bridge.session_factory.begin() as session:
        assert (
            outbox.record_order(session, "default", data, dedupe_key="caller-1") is None
        )  # a duplicate
    assert len(all_rows(bridge, OutboxRow)) == 1


def test_a_contract_with_two_lines_of_one_product_is_refused(db_session: Session) -> None:
    # Given: the Veles customer and product the contract names (their handlers, on the session)
    uow = UnitOfWork(db_session, "default")
    for veles_id, event_type, data in (
        ("vev_customer", "customer.upserted", {"id": "v_acme", "name": "Acme"}),
        ("vev_product", "product.upserted", {"id": "vp_seats", "name": "Seats"}),
    ):
        handlers.VELES_HANDLERS[event_type](
            Event(veles_id, event_type, 1_750_000_000, False, None, data, None), uow
        )
    line = {"product_id": "vp_seats", "quantity": 1, "unit_amount": 100}
    data = {
        "id": "ctr_x",
        "customer_id": "v_acme",
        "currency": "usd",
        "interval": "month",
        "start_date": "2026-01-01",
        "lines": [line, line],
    }

    with pytest.raises(outbox.InvalidChange, match="one line per product"):
        outbox.record_contract_activated(db_session, "default", data)


def test_the_relay_is_woken_by_the_commit_not_the_poll(
    world: dict[str, Any], bridge: Context, fake_stripe: FakeStripe
) -> None:
    from dataclasses import replace

    from stripe_bridge.outbox.relay import relay_options

    relay = relay_for(bridge, replace(relay_options(bridge.settings), poll_interval=60.0))
    relay.wakeup = wakeup = WatchedWakeup()
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop, 1), daemon=True)
    thread.start()
    try:
        # the relay has drained and waits: on NOTIFY, or 60 s
        assert relay.listening.wait(10) and wakeup.waited.wait(10)
        with bridge.session_factory.begin() as session:
            outbox.record_order(
                session,
                "default",
                {
                    "id": "ord_woken",
                    "customer_id": "v_acme",
                    "currency": "usd",
                    "lines": [{"product_id": "vp_seats", "quantity": 1, "unit_amount": 100}],
                },
            )
        wait_until(lambda: invoices_for(fake_stripe, "ord_woken"), 10)
    finally:
        stop.set()
        thread.join(timeout=30)

    assert len(invoices_for(fake_stripe, "ord_woken")) == 1
