"""Operators: dead letters of every kind from real failures, replay, discard, recover, pruning,
health and metrics."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.errors import NotFound, PermanentError
from stripe_bridge.event import Event
from stripe_bridge.jobs import BULK_QUEUE
from stripe_bridge.models import Customer, OutboxRow, StripeEvent, VelesEvent, VelesOrder
from stripe_bridge.operators import deadletters
from stripe_bridge.operators.maintenance import prune
from tests.fake_stripe import FakeStripe
from tests.support import (
    admin_get,
    admin_headers,
    count_rows,
    event,
    own_client,
    post_event,
    post_veles,
    queued_event_ids,
    queued_jobs,
    relay_for,
    run_jobs,
    store_events,
    veles_event,
)


def dead(client: TestClient, **params: str) -> list[dict[str, Any]]:
    return list(admin_get(client, "dead-letters", **params)["data"])


def replay(client: TestClient, ref: str) -> Any:
    return client.post(f"/admin/api/dead-letters/{ref}/replay", headers=admin_headers())


def broken(event: Event, session: Session) -> None:
    raise PermanentError("handler bug: cannot read this customer")


@pytest.fixture
def three_dead_letters(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> dict[str, Any]:
    """One of each kind, each from a real failure:
    a Stripe event whose handler fails, a Veles order for an unknown customer, and an outbox row
    whose product has no Stripe link."""
    real_handler = connected.handlers["customer.updated"]
    connected.handlers["customer.updated"] = broken
    acme = fake_stripe.seed("customer", name="Acme", email="a@acme.example")
    stripe_event = event(
        "customer.updated",
        {"id": acme["id"], "name": "Acme", "email": acme["email"]},
        created=1_750_000_100,
    )
    post_event(client, stripe_event)
    post_veles(client, veles_event("customer.upserted", {"id": "v_acme", "name": "Acme"}))
    post_veles(client, veles_event("product.upserted", {"id": "vp_1", "name": "Widget"}))
    run_jobs(connected)
    lines = [{"product_id": "vp_1", "quantity": 2, "unit_amount": 700}]
    orphan = veles_event(
        "order.committed",
        {"id": "ord_orphan", "customer_id": "v_later", "currency": "usd", "lines": lines},
    )
    good = veles_event(
        "order.committed",
        {"id": "ord_1", "customer_id": "v_acme", "currency": "usd", "lines": lines},
    )
    post_veles(client, orphan)
    post_veles(client, good)
    run_jobs(connected)
    relay_for(connected).drain()  # vp_1 has no Stripe product yet: the row is dead
    connected.handlers["customer.updated"] = real_handler  # "the bug is fixed"
    with connected.session_factory() as session:
        row_id = session.scalar(select(OutboxRow.id))
    return {
        "event": stripe_event["id"],
        "veles": orphan["id"],
        "outbox": row_id,
        "customer": acme["id"],
    }


def test_every_kind_of_dead_letter_is_listed_with_its_failure(
    three_dead_letters: dict[str, Any], client: TestClient
) -> None:
    letters = {letter["kind"]: letter for letter in dead(client)}

    assert set(letters) == {"event", "veles", "outbox"}
    event_letter, veles_letter, outbox_letter = (
        letters["event"],
        letters["veles"],
        letters["outbox"],
    )
    assert (event_letter["id"], event_letter["type"], event_letter["subject"]) == (
        f"event:{three_dead_letters['event']}",
        "customer.updated",
        three_dead_letters["customer"],
    )
    assert event_letter["error_type"] == "stripe_bridge.errors.PermanentError"
    assert "handler bug" in event_letter["error"]
    assert (veles_letter["type"], veles_letter["subject"]) == ("order.committed", "ord_orphan")
    assert "unknown Veles customer v_later" in veles_letter["error"]
    assert (outbox_letter["id"], outbox_letter["type"], outbox_letter["subject"]) == (
        f"outbox:{three_dead_letters['outbox']}",
        "order.invoice",
        "order:ord_1",
    )
    assert "vp_1 have no Stripe product" in outbox_letter["error"]
    for letter in letters.values():
        assert letter["attempts"] == 1 and letter["replays"] == 0
        assert letter["first_failed_at"] == letter["last_failed_at"] is not None
        assert "traceback" not in letter
    assert [x["kind"] for x in dead(client, kind="outbox")] == ["outbox"]
    assert [x["kind"] for x in dead(client, type="order.committed")] == ["veles"]
    status = client.get("/admin/api/connection", headers=admin_headers()).json()
    assert status["status"] == "connected"


def test_each_dead_letter_replays_to_success_once(
    three_dead_letters: dict[str, Any],
    connected: Context,
    client: TestClient,
    fake_stripe: FakeStripe,
) -> None:
    post_veles(client, veles_event("customer.upserted", {"id": "v_later", "name": "Later Co"}))
    product = fake_stripe.seed("product", name="Widget")
    run_jobs(connected)
    from stripe_bridge.sync import run_sync

    run_sync(connected, "default", "products")  # the product now name-matches vp_1

    for kind in ("event", "veles", "outbox"):
        key = three_dead_letters[kind]
        response = replay(client, f"{kind}:{key}")
        assert (response.status_code, response.json()) == (202, {"replayed": [f"{kind}:{key}"]})
    run_jobs(connected)
    relay_for(connected).drain()

    assert dead(client) == []
    with connected.session_factory() as session:
        assert (
            session.get(StripeEvent, ("default", three_dead_letters["event"])).status == "processed"
        )
        assert session.get(Customer, ("default", three_dead_letters["customer"])).name == "Acme"
        assert (
            session.get(VelesEvent, ("default", three_dead_letters["veles"])).status == "processed"
        )
        assert session.get(VelesOrder, ("default", "ord_orphan")) is not None
        row = session.get(OutboxRow, ("default", three_dead_letters["outbox"]))
        assert (row.status, row.replays) == ("sent", 1)
    invoices = [
        i for i in fake_stripe.objects("invoice") if i["metadata"]["veles_order_id"] == "ord_1"
    ]
    assert len(invoices) == 1
    assert {
        i["pricing"]["price_details"]["product"] for i in fake_stripe.objects("invoiceitem")
    } == {product["id"]}

    again = replay(client, f"outbox:{three_dead_letters['outbox']}")
    assert again.status_code == 404
    assert "not a dead letter (it is sent)" in again.json()["error"]["message"]
    relay_for(connected).drain()
    assert (
        len(
            [
                i
                for i in fake_stripe.objects("invoice")
                if i["metadata"]["veles_order_id"] == "ord_1"
            ]
        )
        == 1
    )


def test_a_replay_that_fails_again_is_a_dead_letter_again_with_the_fresh_error(
    three_dead_letters: dict[str, Any], connected: Context, client: TestClient
) -> None:
    connected.handlers["customer.updated"] = lambda event, session: (_ for _ in ()).throw(
        PermanentError("still broken, differently")
    )
    replay(client, f"event:{three_dead_letters['event']}")
    run_jobs(connected)

    [letter] = dead(client, kind="event")
    assert "still broken, differently" in letter["error"]
    # attempts count the tries since the last replay: each replay gets every attempt again
    assert (letter["replays"], letter["attempts"]) == (1, 1)
    assert letter["last_failed_at"] > letter["first_failed_at"]


def test_a_superseded_event_replays_without_overwriting_newer_state(
    connected: Context, client: TestClient
) -> None:
    real = connected.handlers["customer.updated"]
    connected.handlers["customer.updated"] = broken
    older = event("customer.updated", {"id": "cus_1", "name": "Old Name"}, created=1_750_000_000)
    post_event(client, older)
    run_jobs(connected)
    connected.handlers["customer.updated"] = real
    post_event(
        client,
        event("customer.updated", {"id": "cus_1", "name": "New Name"}, created=1_750_000_900),
    )
    run_jobs(connected)

    assert replay(client, f"event:{older['id']}").status_code == 202
    run_jobs(connected)

    with connected.session_factory() as session:
        assert session.get(StripeEvent, ("default", older["id"])).status == "processed"
        assert session.get(Customer, ("default", "cus_1")).name == "New Name"


def test_a_dead_outbox_row_blocks_its_contract_until_replayed(
    connected: Context, client: TestClient, fake_stripe: FakeStripe
) -> None:
    post_veles(client, veles_event("customer.upserted", {"id": "v_acme", "name": "Acme"}))
    post_veles(client, veles_event("product.upserted", {"id": "vp_1", "name": "Seats"}))
    run_jobs(connected)
    terms = {
        "customer_id": "v_acme",
        "currency": "usd",
        "interval": "month",
        "start_date": datetime.now(UTC).date().isoformat(),
    }
    post_veles(
        client,
        veles_event(
            "contract.activated",
            {
                "id": "ctr_1",
                **terms,
                "lines": [{"product_id": "vp_1", "quantity": 1, "unit_amount": 900}],
            },
        ),
    )
    run_jobs(connected)
    post_veles(
        client,
        veles_event(
            "contract.amended",
            {
                "id": "ctr_1",
                **terms,
                "lines": [{"product_id": "vp_1", "quantity": 4, "unit_amount": 900}],
            },
        ),
    )
    run_jobs(connected)

    relay_for(connected).drain()
    statuses = [
        row["status"]
        for row in client.get("/admin/api/contracts/ctr_1", headers=admin_headers()).json()[
            "outbox"
        ]
    ]
    assert statuses == ["dead", "pending"]

    fake_stripe.seed("product", name="Seats")
    from stripe_bridge.sync import run_sync

    run_sync(connected, "default", "products")
    response = client.post(
        "/admin/api/dead-letters/replay", json={"kind": "outbox"}, headers=admin_headers()
    )
    assert response.status_code == 202 and len(response.json()["replayed"]) == 1
    relay_for(connected).drain()

    contract = client.get("/admin/api/contracts/ctr_1", headers=admin_headers()).json()
    assert [row["status"] for row in contract["outbox"]] == ["sent", "sent"]
    [subscription] = fake_stripe.objects("subscription")
    assert [item["quantity"] for item in subscription["items"]["data"]] == [4]


def test_discard_records_the_reason_and_removes_the_letter(
    three_dead_letters: dict[str, Any], connected: Context, client: TestClient
) -> None:
    ref = f"veles:{three_dead_letters['veles']}"
    with connected.session_factory.begin() as session:
        from stripe_bridge.operators import deadletters

        deadletters.discard(session, "default", ref, "order was deleted in Veles")

    assert ref not in [letter["id"] for letter in dead(client)]
    with connected.session_factory() as session:
        row = session.get(VelesEvent, ("default", three_dead_letters["veles"]))
        assert (row.status, row.discard_reason) == ("discarded", "order was deleted in Veles")
    assert replay(client, ref).status_code == 404


def test_pruning_removes_old_finished_work_and_keeps_dead_letters(
    three_dead_letters: dict[str, Any], connected: Context, client: TestClient
) -> None:
    post_event(client, event("customer.updated", {"id": "cus_2", "name": "Fine"}))
    run_jobs(connected)
    old = datetime.now(UTC) - timedelta(days=40)
    with connected.session_factory.begin() as session:
        for model in (StripeEvent, VelesEvent):
            session.execute(update(model).values(received_at=old))
        session.execute(update(OutboxRow).values(created_at=old))

    pruned = prune(connected)

    assert pruned.stripe_events == 1  # the processed one; the failed one stays
    assert pruned.veles_events == 3  # customer, product, and the good order were processed
    assert pruned.outbox_rows == 0  # the only row is dead
    assert {letter["kind"] for letter in dead(client)} == {"event", "veles", "outbox"}


def test_recover_fills_a_gap_in_the_inbox_from_the_events_api(
    connected: Context, client: TestClient, fake_stripe: FakeStripe, cli: Any
) -> None:
    delivered = fake_stripe.seed("customer", name="Delivered", emit_event=True)
    missed = fake_stripe.seed("customer", name="Never Delivered", emit_event=True)
    [delivered_event] = [
        e for e in fake_stripe.objects("event") if e["data"]["object"]["id"] == delivered["id"]
    ]
    post_event(client, delivered_event)
    run_jobs(connected)

    code, out, _ = cli(
        "recover", "--since", (datetime.now(UTC) - timedelta(days=1)).date().isoformat(), "--json"
    )
    run_jobs(connected)

    assert code == 0
    assert json.loads(out) == {"listed": 2, "stored": 1, "already_had": 1}
    with connected.session_factory() as session:
        assert session.get(Customer, ("default", missed["id"])).name == "Never Delivered"
    code, out, _ = cli(
        "recover", "--since", (datetime.now(UTC) - timedelta(days=1)).date().isoformat(), "--json"
    )
    assert json.loads(out)["stored"] == 0
    requests = [r for r in fake_stripe.requests if r.path == "/v1/events"]
    assert all(len(r.params.get("types", [])) <= 20 for r in requests)


def test_recover_refuses_a_date_beyond_stripes_30_days(connected: Context, cli: Any) -> None:
    code, _out, err = cli(
        "recover", "--since", (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
    )

    assert code == 1
    assert "30 days" in err and err.count("\n") == 1


def test_cli_lists_shows_replays_and_discards_dead_letters(
    three_dead_letters: dict[str, Any], cli: Any
) -> None:
    code, out, _ = cli("dead-letters", "list", "--json")
    assert code == 0
    assert len(json.loads(out)) == 3

    code, out, _ = cli("dead-letters", "list", "--kind", "event")
    assert code == 0 and "customer.updated" in out and "handler bug" in out

    code, out, _ = cli("dead-letters", "show", f"event:{three_dead_letters['event']}")
    assert code == 0
    assert "Traceback (most recent call last)" in out and "PermanentError" in out

    code, out, _ = cli("replay", "--all", "--kind", "veles", "--dry-run")
    assert (code, out.splitlines()[0]) == (0, "would replay 1 dead letter(s)")

    code, out, err = cli("replay", f"event:{three_dead_letters['event']}", "--kind", "event")
    assert code == 1 and "--kind and --type go with --all" in err

    code, out, _ = cli("replay", f"event:{three_dead_letters['event']}", "--json")
    assert json.loads(out) == {
        "replayed": [f"event:{three_dead_letters['event']}"],
        "dry_run": False,
    }

    code, out, _ = cli(
        "dead-letters",
        "discard",
        f"outbox:{three_dead_letters['outbox']}",
        "--reason",
        "sent by hand",
    )
    assert code == 0
    code, out, _ = cli("dead-letters", "list", "--json")
    assert [letter["kind"] for letter in json.loads(out)] == ["veles"]

    code, out, err = cli("dead-letters", "show", "outbox:99999")
    assert code == 1 and "not a dead letter" in err


def test_readyz_names_an_unreachable_broker(database_url: str, redis_namespace: str) -> None:
    with own_client(
        database_url, redis_namespace, BRIDGE_REDIS_URL="redis://127.0.0.1:1/0"
    ) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")


def test_readyz_names_an_unreachable_database(database_url: str, redis_namespace: str) -> None:
    with own_client("postgresql+psycopg://postgres@127.0.0.1:1/none", redis_namespace) as client:
        response = client.get("/readyz")
        health = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")
    assert health.status_code == 200


def test_readyz_is_ready_when_everything_is(client: TestClient) -> None:
    response = client.get("/readyz")

    assert (response.status_code, response.json()["checks"]) == (
        200,
        {"database": "ok", "migrations": "ok", "broker": "ok"},
    )


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(text):
        found = (
            ",".join(sorted((match.group(1) or "{}")[1:-1].split(","))) if match.group(1) else ""
        )
        if found == wanted:
            return float(match.group(2))
    return 0.0


def test_metrics_change_as_work_happens(
    three_dead_letters: dict[str, Any], connected: Context, client: TestClient
) -> None:
    before = client.get("/metrics").text
    post_event(client, event("customer.updated", {"id": "cus_9", "name": "Metrics"}))
    post_event(
        client, event("customer.updated", {"id": "cus_9", "name": "x"}, event_id="evt_dup_1")
    )
    post_event(
        client, event("customer.updated", {"id": "cus_9", "name": "x"}, event_id="evt_dup_1")
    )
    client.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    run_jobs(connected)

    after = client.get("/metrics")

    assert after.status_code == 200
    text = after.text
    assert (
        metric(text, "bridge_webhooks_received_total", source="stripe", result="stored")
        - metric(before, "bridge_webhooks_received_total", source="stripe", result="stored")
        == 2
    )
    assert (
        metric(text, "bridge_webhooks_received_total", source="stripe", result="duplicate")
        - metric(before, "bridge_webhooks_received_total", source="stripe", result="duplicate")
        == 1
    )
    assert metric(
        text, "bridge_webhooks_received_total", source="stripe", result="bad_request"
    ) > metric(before, "bridge_webhooks_received_total", source="stripe", result="bad_request")
    assert (
        metric(
            text,
            "bridge_events_total",
            source="stripe",
            type="customer.updated",
            outcome="processed",
        )
        >= 2
    )
    assert metric(text, "bridge_dead_letters", kind="outbox") == 1
    assert metric(text, "bridge_dead_letters", kind="event") == 1
    assert metric(text, "bridge_outbox_rows", kind="order.invoice", status="dead") == 1
    assert metric(text, "bridge_stripe_connected") == 1
    assert metric(text, "bridge_stripe_calls_total", call="retrieve account", result="ok") >= 1
    assert "bridge_handler_seconds_bucket" in text


def test_replaying_many_stripe_events_sends_them_as_batch_jobs(
    bridge: Context, client: TestClient
) -> None:
    real = bridge.handlers["customer.created"]
    bridge.handlers["customer.created"] = broken
    payloads = [event("customer.created", {"id": f"cus_r{n}", "name": f"R{n}"}) for n in range(5)]
    for payload in payloads:
        post_event(client, payload)
    run_jobs(bridge)
    assert len(dead(client, kind="event")) == 5
    bridge.handlers["customer.created"] = real  # the bug is fixed

    response = client.post(
        "/admin/api/dead-letters/replay", json={"kind": "event"}, headers=admin_headers()
    )

    assert response.status_code == 202
    assert len(response.json()["replayed"]) == 5
    # one batch job carries all five, on the bulk queue: live deliveries go first
    assert (queued_jobs(bridge), queued_jobs(bridge, BULK_QUEUE)) == (0, 1)
    ids = queued_event_ids(bridge, BULK_QUEUE)
    assert sorted(ids) == sorted(payload["id"] for payload in payloads)
    run_jobs(bridge)
    assert dead(client) == []
    with bridge.session_factory() as session:
        names = {row.id: row.name for row in session.scalars(select(Customer))}
    assert names == {f"cus_r{n}": f"R{n}" for n in range(5)}


def test_a_large_replay_is_marked_a_chunk_a_transaction_and_sent_as_it_goes(
    bridge: Context, client: TestClient
) -> None:
    # Given: 1,100 dead Stripe events
    payloads = [
        event("customer.created", {"id": f"cus_d{n}", "name": f"D{n}"}) for n in range(1100)
    ]
    ids = store_events(bridge, payloads)
    with bridge.session_factory.begin() as session:
        session.execute(update(StripeEvent).values(status="failed", attempts=8, last_error="x"))
    commits: list[object] = []

    def on_commit(connection: object) -> None:
        commits.append(connection)

    sa_event.listen(bridge.engine, "commit", on_commit)
    try:
        # When: all are replayed, and a set naming one that is not a dead letter
        refused = client.post(
            "/admin/api/dead-letters/event:evt_nope/replay", headers=admin_headers()
        )
        with pytest.raises(NotFound):
            deadletters.replay(bridge, "default", [f"event:{ids[0]}", "event:evt_nope"])
        before = len(commits)
        response = client.post(
            "/admin/api/dead-letters/replay", json={"kind": "event"}, headers=admin_headers()
        )
        replay_commits = len(commits) - before
    finally:
        sa_event.remove(bridge.engine, "commit", on_commit)

    # Then: nothing was replayed by the refused ones; the replay took three transactions of
    # marks (500, 500, 100), not 1,100, and sent every event once as bulk jobs
    assert refused.status_code == 404
    assert response.status_code == 202
    assert sorted(response.json()["replayed"]) == sorted(f"event:{id_}" for id_ in ids)
    assert replay_commits == 3
    assert queued_jobs(bridge) == 0
    assert sorted(queued_event_ids(bridge, BULK_QUEUE)) == sorted(ids)
    run_jobs(bridge)
    assert dead(client) == []
    assert count_rows(bridge, Customer) == 1100
