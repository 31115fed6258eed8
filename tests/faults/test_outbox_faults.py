"""Scenario 2, the outbox under Stripe faults: Veles customers, products, committed orders and
activated contracts posted to `POST /veles/events`, while about 30 % of Stripe writes are
answered 500, 503 or 429 (with `Retry-After`), a few are answered only after the client's
timeout (they still happen: the lost-response case), and the relay is SIGKILLed three times
at random moments (and restarted each time).

Then: each order has exactly one finalized invoice in the fake with exactly its lines, each
contract exactly one subscription with its items, no stray invoice items, a Stripe customer
created once for each Veles customer that had none, and no dead outbox row."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from stripe_bridge.db import make_engine
from stripe_bridge.models import Customer, OutboxRow, Product
from tests.fake_stripe import FakeStripe, RequestRecord
from tests.faults import figures
from tests.faults.cluster import Cluster, wait_for
from tests.faults.sender import Delivery, Sender
from tests.support import ACCOUNT_ID, TEST_KEY, VELES_SECRET, veles_event

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PRODUCTS = 6
CUSTOMERS = figures.size(12, 60)  # every other one has a Stripe customer to match
ORDERS = figures.size(40, 200)
CONTRACTS = figures.size(10, 50)
SPREAD_SECONDS = 15.0
RELAY_KILLS = 3
SETTLE_SECONDS = figures.size(150, 600)


def veles_delivery(event_type: str, data: dict[str, Any]) -> Delivery:
    payload = veles_event(event_type, data, created=int(time.time()))
    return Delivery("/veles/events", orjson.dumps(payload), "Veles-Signature", VELES_SECRET)


def deliver(cluster: Cluster, deliveries: list[Delivery], spread: float = 0.0) -> None:
    tally = Sender(cluster.roles.web_url).deliver_all(deliveries, spread)
    assert not tally.gave_up, f"{len(tally.gave_up)} Veles events never answered 2xx"


def stripe_faults(fake: FakeStripe, rng: random.Random) -> None:
    """~10 % of writes 500, ~10 % 503, ~10 % 429 with Retry-After; ~3 % answered after the
    client's timeout (2 s). A fault is injected before the request executes; a late answer
    executes (the idempotency key then replays it to the retry)."""

    def write(share: float) -> Callable[[RequestRecord], bool]:
        return lambda record: record.method == "POST" and rng.random() < share

    fake.delay_when(write(0.03), 3.0)
    fake.fail_when(write(0.10), status=500)
    fake.fail_when(write(0.10 / 0.90), status=503)
    fake.fail_when(write(0.10 / 0.80), status=429, headers={"Retry-After": "1"})


def kill_relay(
    cluster: Cluster, at: list[float], started: float, log: list[str], errors: list[BaseException]
) -> None:
    try:
        for moment in at:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            cluster.roles.kill("relay")
            log.append(f"{time.monotonic() - started:5.1f} s  SIGKILL relay")
            time.sleep(1.0)
            cluster.roles.start("relay", "relay")
    except BaseException as exc:
        errors.append(exc)


def world(rng: random.Random, products: dict[str, str]) -> dict[str, Any]:
    """Veles customers, orders (1-4 lines) and contracts (1-2 lines); every customer has one."""
    customers = [f"vc_{n:04d}" for n in range(CUSTOMERS)]
    orders, contracts = {}, {}
    for n in range(ORDERS):
        lines = [
            {
                "product_id": vp,
                "description": f"line {k}",
                "quantity": rng.randint(1, 20),
                "unit_amount": rng.randint(100, 10_000),
            }
            for k, vp in enumerate(rng.sample(sorted(products), rng.randint(1, 4)))
        ]
        orders[f"ord_{n:04d}"] = {
            "id": f"ord_{n:04d}",
            "customer_id": customers[n % CUSTOMERS],
            "currency": "usd",
            "lines": lines,
        }
    today = datetime.now(UTC).date().isoformat()
    for n in range(CONTRACTS):
        lines = [
            {
                "product_id": vp,
                "quantity": rng.randint(1, 50),
                "unit_amount": rng.randint(500, 5_000),
            }
            for vp in rng.sample(sorted(products), rng.randint(1, 2))
        ]
        contracts[f"con_{n:04d}"] = {
            "id": f"con_{n:04d}",
            "customer_id": customers[(n * 7) % CUSTOMERS],
            "currency": "usd",
            "interval": "month",
            "start_date": today,
            "lines": lines,
        }
    return {"customers": customers, "orders": orders, "contracts": contracts}


@pytest.mark.timeout(figures.size(300, 1500))
def test_orders_and_contracts_reach_stripe_exactly_once_through_faults_and_relay_kills(
    cluster_factory: Callable[..., Cluster], fake_stripe: FakeStripe
) -> None:
    rng = random.Random(20261201)
    # Given: the roles connected to the fake (migrate connects with STRIPE_API_KEY); Stripe
    # products named like the Veles products (the scheduler's first sync name-matches them),
    # and Stripe customers for every other Veles customer (matched by email)
    cluster = cluster_factory(STRIPE_API_KEY=TEST_KEY)
    products = {
        f"vp_{n}": fake_stripe.seed("product", account=ACCOUNT_ID, name=f"Fault product {n}")["id"]
        for n in range(PRODUCTS)
    }
    state = world(rng, products)
    stripe_customer = {
        vc: fake_stripe.seed(
            "customer", account=ACCOUNT_ID, name=f"Company {vc}", email=f"ap@{vc}.example"
        )["id"]
        for vc in state["customers"][::2]
    }
    cluster.start_roles()
    deliver(
        cluster,
        [
            *(
                veles_delivery("product.upserted", {"id": vp, "name": f"Fault product {vp[3:]}"})
                for vp in products
            ),
            *(
                veles_delivery(
                    "customer.upserted",
                    {"id": vc, "name": f"Company {vc}", "email": f"ap@{vc}.example"},
                )
                for vc in state["customers"]
            ),
        ],
    )
    engine = make_engine(cluster.pg.url, pool_size=1)
    try:

        def linked() -> bool | None:
            with engine.connect() as db:
                p = db.scalar(select(func.count()).where(Product.veles_product_id.is_not(None)))
                c = db.scalar(select(func.count()).where(Customer.veles_customer_id.is_not(None)))
            return (p, c) == (PRODUCTS, len(stripe_customer)) or None

        wait_for("products and customers linked", 60, linked, cluster.tails)

        # When: orders and contracts are committed while Stripe fails and the relay is killed
        stripe_faults(fake_stripe, rng)
        log: list[str] = []
        errors: list[BaseException] = []
        started = time.monotonic()
        kills = sorted(rng.uniform(2, SPREAD_SECONDS + 5) for _ in range(RELAY_KILLS))
        killer = threading.Thread(
            target=kill_relay, args=(cluster, kills, started, log, errors), daemon=True
        )
        killer.start()
        events = [
            *(veles_delivery("order.committed", o) for o in state["orders"].values()),
            *(veles_delivery("contract.activated", c) for c in state["contracts"].values()),
        ]
        rng.shuffle(events)
        deliver(cluster, events, SPREAD_SECONDS)
        killer.join(timeout=60)
        assert not killer.is_alive() and not errors, f"relay kills failed: {errors}"

        # Then: every outbox row is pushed (bounded wait), none dead
        expected_rows = ORDERS + CONTRACTS

        def settled() -> Counter[str] | None:
            with engine.connect() as db:
                counts = Counter(
                    dict(
                        db.execute(
                            select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
                        ).all()
                    )
                )
            done = sum(counts.values()) == expected_rows and counts["sent"] + counts["dead"] == (
                expected_rows
            )
            return counts if done else None

        rows = wait_for("outbox settled", SETTLE_SECONDS, settled, cluster.tails)
    finally:
        engine.dispose()
    fake_stripe.reset_faults()

    invoices = [i for i in fake_stripe.objects("invoice") if i["metadata"].get("veles_order_id")]
    items = fake_stripe.objects("invoiceitem")
    subscriptions = [
        s for s in fake_stripe.objects("subscription") if s["metadata"].get("veles_contract_id")
    ]
    created_customers = Counter(
        c["metadata"].get("veles_customer_id") for c in fake_stripe.objects("customer")
    )
    created_customers.pop(None, None)
    per_order = Counter(i["metadata"]["veles_order_id"] for i in invoices)
    per_contract = Counter(s["metadata"]["veles_contract_id"] for s in subscriptions)
    customer_of = {vc: stripe_customer.get(vc) for vc in state["customers"]}
    for c in fake_stripe.objects("customer"):
        if vc := c["metadata"].get("veles_customer_id"):
            customer_of[vc] = c["id"]

    wrong: list[str] = []
    for invoice in invoices:
        order = state["orders"][invoice["metadata"]["veles_order_id"]]
        got = sorted(
            (i["pricing"]["price_details"]["product"], i["quantity"], i["amount"])
            for i in items
            if i["invoice"] == invoice["id"]
        )
        want = sorted(
            (products[line["product_id"]], line["quantity"], line["quantity"] * line["unit_amount"])
            for line in order["lines"]
        )
        if (got, invoice["status"], invoice["customer"]) != (
            want,
            "open",
            customer_of[order["customer_id"]],
        ):
            wrong.append(f"{order['id']}: {got} {invoice['status']} vs {want}")
    for sub in subscriptions:
        contract = state["contracts"][sub["metadata"]["veles_contract_id"]]
        got = sorted(
            (i["price"]["product"], i["quantity"], i["price"]["unit_amount"])
            for i in sub["items"]["data"]
        )
        want = sorted(
            (products[line["product_id"]], line["quantity"], line["unit_amount"])
            for line in contract["lines"]
        )
        if (got, sub["customer"]) != (want, customer_of[contract["customer_id"]]):
            wrong.append(f"{contract['id']}: {got} vs {want}")
    invoice_ids = {i["id"] for i in invoices}
    stray = [i["id"] for i in items if i["invoice"] not in invoice_ids]
    new_customers = set(state["customers"]) - set(stripe_customer)
    figures.record(
        "outbox",
        orders=ORDERS,
        invoices=len(invoices),
        duplicates=sum(n - 1 for n in per_order.values()),
        missing=ORDERS - len(per_order),
        contracts=CONTRACTS,
        subscriptions=len(subscriptions),
        dead_rows=rows["dead"],
        wrong=len(wrong),
        stray_items=len(stray),
        stripe_writes=sum(1 for r in fake_stripe.requests if r.method == "POST"),
        faults_answered=sum(1 for r in fake_stripe.requests if (r.status or 0) >= 429),
    )
    print("\n".join(["relay kills:", *log, f"outbox: {dict(rows)}"]))
    cluster.roles.assert_running()
    assert rows["dead"] == 0, f"{rows['dead']} dead outbox rows\n{cluster.tails()}"
    assert per_order == Counter(dict.fromkeys(state["orders"], 1)), "not one invoice per order"
    assert per_contract == Counter(dict.fromkeys(state["contracts"], 1)), (
        "not one subscription per contract"
    )
    assert not wrong, f"{len(wrong)} invoices/subscriptions differ, e.g. {wrong[:3]}"
    assert not stray, f"{len(stray)} stray invoice items"
    assert created_customers == Counter(dict.fromkeys(new_customers, 1)), created_customers
