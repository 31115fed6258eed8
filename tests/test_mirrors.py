"""Stripe events in over HTTP, applied by real Dramatiq jobs, mirrors out: both payload shapes,
every event type, any order, duplicates, same-second updates, deletes."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.models import Customer, Invoice, Price, Product, StripeEvent, Subscription
from tests.support import (
    EVENT_TYPES,
    deliver,
    event,
    load_fixture,
    mirror_row,
    post_event,
    run_jobs,
    statuses,
)

SHAPES = ("current", "classic")
CUS, PROD, SUB = "cus_QmR4ckT3stAcme01", "prod_QmR4ckT3stPro001", "sub_1QmR4ckT3stSub001"
PRICE, PLAN = "price_1QmR4ckT3stPro001", "plan_QmR4ckT3stPro001"
INV1, INV2 = "in_1QmR4ckT3stInv001", "in_1QmR4ckT3stInv002"
INV3 = "in_1QmR4ckT3stInv003"  # a draft, deleted (Stripe deletes drafts)


def subscription_item(shape: str, quantity: int) -> dict[str, Any]:
    price = PRICE if shape == "current" else PLAN  # classic items carry the plan
    return {"id": "si_QmR4ckT3stItem01", "price": price, "product": PROD, "quantity": quantity}


def expected(shape: str, event_type: str) -> tuple[type[Any], str, dict[str, Any]]:
    """What the mirror holds after one event of the fixture story, the same in both shapes."""
    family, _, action = event_type.rpartition(".")
    deleted = action == "deleted"
    if family == "customer":
        name = "Acme Corp" if action == "created" else "Acme Corporation"
        fields = {"name": name, "email": "billing@acme.example", "domain": "acme.example"}
        return Customer, CUS, {**fields, "deleted": deleted}
    if family == "product":
        return Product, PROD, {"name": "Pro Plan", "active": not deleted, "deleted": deleted}
    if family in ("price", "plan"):
        fields = {"product_id": PROD, "unit_amount": 4900, "currency": "usd", "type": "recurring"}
        fields |= {"recurring_interval": "month", "active": not deleted, "deleted": deleted}
        return Price, PRICE if family == "price" else PLAN, fields
    if family == "customer.subscription":
        status = {"deleted": "canceled", "paused": "paused"}.get(action, "active")
        quantity = 3 if action == "created" else 5
        fields = {"customer_id": CUS, "status": status, "deleted": deleted}
        fields |= {"items": [subscription_item(shape, quantity)], "cancel_at_period_end": False}
        return Subscription, SUB, fields
    invoice_status = {
        "created": "draft",
        "paid": "paid",
        "payment_succeeded": "paid",
        "voided": "void",
        "marked_uncollectible": "uncollectible",
    }.get(action, "open")
    if deleted:
        fields = {"customer_id": CUS, "status": "draft", "amount_due": 9800, "deleted": True}
        return Invoice, INV3, fields
    invoice_id = INV2 if action in ("voided", "marked_uncollectible") else INV1
    amount_due = 24500 if invoice_id == INV2 else 14700
    fields = {"customer_id": CUS, "subscription_id": SUB, "status": invoice_status}
    fields |= {"amount_due": amount_due, "currency": "usd", "deleted": False}
    fields["amount_paid"] = amount_due if invoice_status == "paid" else 0
    return Invoice, invoice_id, fields


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_in_both_shapes_updates_its_mirror(
    client: TestClient, bridge: Context, shape: str, event_type: str
) -> None:
    payload = load_fixture(shape, event_type)

    deliver(client, bridge, payload)

    model, object_id, fields = expected(shape, event_type)
    row = mirror_row(bridge, model, object_id)
    assert {key: getattr(row, key) for key in fields} == fields
    assert statuses(bridge) == {payload["id"]: "processed"}


def test_subscription_periods_come_from_the_items_or_the_top_level(
    client: TestClient, bridge: Context
) -> None:
    for shape in SHAPES:
        post_event(client, load_fixture(shape, "customer.subscription.updated"))
        run_jobs(bridge)
        row = mirror_row(bridge, Subscription, SUB)
        assert row.current_period_end.timestamp() == 1751328000, shape
        assert row.current_period_start is not None


def test_paid_at_comes_from_status_transitions_or_the_paid_event(
    client: TestClient, bridge: Context
) -> None:
    post_event(client, load_fixture("current", "invoice.paid"))
    run_jobs(bridge)
    assert mirror_row(bridge, Invoice, INV1).paid_at.timestamp() == 1748998830

    post_event(client, load_fixture("classic", "invoice.paid"))  # same second, no transitions
    run_jobs(bridge)
    assert mirror_row(bridge, Invoice, INV1).paid_at.timestamp() == 1748998830


def final_truth(shape: str) -> dict[tuple[type[Any], str], dict[str, Any]]:
    return {
        (Customer, CUS): {"name": "Acme Corporation", "deleted": True},
        (Product, PROD): {"active": False, "deleted": True},
        (Price, PRICE): {"active": False, "deleted": True},
        (Price, PLAN): {"active": False, "deleted": True},
        (Subscription, SUB): {
            "status": "canceled",
            "deleted": True,
            "items": [subscription_item(shape, 5)],
        },
        (Invoice, INV1): {"status": "paid", "amount_paid": 14700},
        (Invoice, INV2): {"status": "void", "amount_paid": 0},
        (Invoice, INV3): {"status": "draft", "deleted": True},
    }


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_story_ends_in_the_final_truth(
    client: TestClient, bridge: Context, shape: str, seed: int
) -> None:
    story = [load_fixture(shape, event_type) for event_type in EVENT_TYPES]
    deliveries = story + random.Random(seed).sample(story, 8)
    random.Random(seed).shuffle(deliveries)

    deliver(client, bridge, *deliveries)

    for (model, object_id), fields in final_truth(shape).items():
        row = mirror_row(bridge, model, object_id)
        assert {key: getattr(row, key) for key in fields} == fields, (model.__name__, object_id)
    assert set(statuses(bridge).values()) == {"processed"}


def test_shuffled_story_applied_one_job_at_a_time_in_reverse_ends_in_the_final_truth(
    client: TestClient, bridge: Context
) -> None:
    story = sorted(
        (load_fixture("current", event_type) for event_type in EVENT_TYPES),
        key=lambda payload: payload["created"],
        reverse=True,
    )
    for payload in story:
        post_event(client, payload)
        run_jobs(bridge)

    for (model, object_id), fields in final_truth("current").items():
        row = mirror_row(bridge, model, object_id)
        assert {key: getattr(row, key) for key in fields} == fields, (model.__name__, object_id)


def customer_update(name: str, previous: str, created: int) -> dict[str, Any]:
    obj = {"id": "cus_same", "object": "customer", "name": name, "email": "x@same.example"}
    return event("customer.updated", obj, created=created, previous_attributes={"name": previous})


@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_two_updates_in_the_same_second_keep_the_later_state(
    client: TestClient, bridge: Context, order: str
) -> None:
    first = customer_update("Second Name", previous="First Name", created=1_750_000_000)
    second = customer_update("Third Name", previous="Second Name", created=1_750_000_000)
    deliveries = [first, second] if order == "in_order" else [second, first]

    for payload in deliveries:
        post_event(client, payload)
        run_jobs(bridge)

    assert mirror_row(bridge, Customer, "cus_same").name == "Third Name"


def test_a_paid_invoice_does_not_go_back_to_open_within_the_same_second(
    client: TestClient, bridge: Context
) -> None:
    obj = {"id": "in_tie", "object": "invoice", "customer": "cus_1", "currency": "eur"}
    paid = event(
        "invoice.paid", {**obj, "status": "paid", "amount_paid": 100}, created=1_750_000_000
    )
    finalized = event("invoice.finalized", {**obj, "status": "open"}, created=1_750_000_000)

    for payload in (paid, finalized):
        post_event(client, payload)
        run_jobs(bridge)

    assert mirror_row(bridge, Invoice, "in_tie").status == "paid"


def test_an_older_event_never_overwrites_newer_state(client: TestClient, bridge: Context) -> None:
    newer = customer_update("New", previous="Old", created=1_750_000_100)
    older = customer_update("Old", previous="Older", created=1_750_000_000)

    for payload in (newer, older):
        post_event(client, payload)
        run_jobs(bridge)

    assert mirror_row(bridge, Customer, "cus_same").name == "New"
    assert set(statuses(bridge).values()) == {"processed"}


def test_a_deleted_customer_stays_deleted_against_a_late_update(
    client: TestClient, bridge: Context
) -> None:
    obj = {"id": "cus_gone", "object": "customer", "name": "Gone", "email": "g@gone.example"}
    deleted = event("customer.deleted", obj, created=1_750_000_000)
    late_earlier = event("customer.updated", {**obj, "name": "Late"}, created=1_749_999_000)
    late_same_second = event("customer.updated", {**obj, "name": "Later"}, created=1_750_000_000)

    for payload in (deleted, late_earlier, late_same_second):
        post_event(client, payload)
        run_jobs(bridge)

    row = mirror_row(bridge, Customer, "cus_gone")
    assert (row.deleted, row.name) == (True, "Gone")


def test_the_same_event_applied_twice_leaves_the_same_state(
    client: TestClient, bridge: Context
) -> None:
    payload = load_fixture("current", "customer.subscription.updated")
    post_event(client, payload)
    run_jobs(bridge)
    before = mirror_row(bridge, Subscription, SUB)

    bridge.broker.get_actor("apply_stripe_events").send([payload["id"]])  # a second job
    run_jobs(bridge)

    after = mirror_row(bridge, Subscription, SUB)
    assert (after.items, after.status, after.src_event_id) == (
        before.items,
        before.status,
        payload["id"],
    )
    with bridge.session_factory() as session:
        assert session.get(StripeEvent, ("default", payload["id"])).attempts == 1


# Three updates of one object in one second (Stripe's `created` has whole seconds): the third's
# snapshot is the latest, whatever order they arrive and are applied in.
SECOND = 1_750_000_500


def customer_story() -> tuple[type[Any], str, list[dict[str, Any]], dict[str, Any]]:
    base = {"id": "cus_tri", "object": "customer", "metadata": {}, "created": SECOND - 100}
    changes = [  # name Acme → Acme Corp, email a → b, email b → c
        ({"name": "Acme Corp", "email": "a@acme.example"}, {"name": "Acme"}),
        ({"name": "Acme Corp", "email": "b@acme.example"}, {"email": "a@acme.example"}),
        ({"name": "Acme Corp", "email": "c@acme.example"}, {"email": "b@acme.example"}),
    ]
    story = [
        event("customer.updated", {**base, **fields}, created=SECOND, previous_attributes=prev)
        for fields, prev in changes
    ]
    return Customer, "cus_tri", story, {"name": "Acme Corp", "email": "c@acme.example"}


def subscription_story() -> tuple[type[Any], str, list[dict[str, Any]], dict[str, Any]]:
    def items(quantity: int) -> dict[str, Any]:
        item = {"id": "si_tri", "object": "subscription_item", "quantity": quantity,
                "price": {"id": "price_tri", "object": "price", "product": "prod_tri"}}  # fmt: skip
        return {"object": "list", "data": [item]}

    base = {"id": "sub_tri", "object": "subscription", "customer": "cus_tri", "metadata": {}}
    changes = [  # trialing → active, quantity 1 → 2, quantity 2 → 3
        ({"status": "active", "items": items(1)}, {"status": "trialing"}),
        ({"status": "active", "items": items(2)}, {"items": items(1)}),
        ({"status": "active", "items": items(3)}, {"items": items(2)}),
    ]
    story = [
        event(
            "customer.subscription.updated",
            {**base, **fields},
            created=SECOND,
            previous_attributes=prev,
        )
        for fields, prev in changes
    ]
    item = {"id": "si_tri", "price": "price_tri", "product": "prod_tri", "quantity": 3}
    return Subscription, "sub_tri", story, {"status": "active", "items": [item]}


ORDERS = list(itertools.permutations(range(3)))


@pytest.mark.parametrize("make", [customer_story, subscription_story], ids=["customer", "sub"])
@pytest.mark.parametrize("order", ORDERS, ids=["".join("ABC"[i] for i in o) for o in ORDERS])
@pytest.mark.parametrize("mode", ["one_at_a_time", "one_batch", "backlog"])
def test_three_updates_in_one_second_end_in_the_latest_state_in_any_order(
    client: TestClient, bridge: Context, make: Any, order: tuple[int, ...], mode: str
) -> None:
    # Given: the story's events, delivered in `order`; ids sort in delivery order, which is the
    # order a batch applies them in
    model, object_id, story, latest = make()
    deliveries = [story[n] for n in order]
    for position, payload in enumerate(deliveries):
        payload["id"] = f"evt_tri{position}_{'ABC'[order[position]]}"

    # When: each applied as it arrives, or all stored first and applied by one batch job, or all
    # stored first and applied by a job each (several worker threads at once)
    for payload in deliveries:
        assert post_event(client, payload).status_code == 200
        if mode == "one_at_a_time":
            run_jobs(bridge)
    if mode == "one_batch":
        bridge.broker.flush_all()  # the per-delivery jobs: replaced by one job for them all
        bridge.jobs.send_events("default", [payload["id"] for payload in deliveries])
    run_jobs(bridge)

    # Then: the mirror holds the third update's snapshot, stamped with it
    row = mirror_row(bridge, model, object_id)
    assert {key: getattr(row, key) for key in latest} == latest
    assert row.src_event_id == story[2]["id"]
    assert row.src_prev == story[2]["data"]["previous_attributes"]
    assert set(statuses(bridge).values()) == {"processed"}
