"""POST /webhooks/stripe: every answer, at the HTTP level, with the database and queue behind it."""

from __future__ import annotations

import time

import orjson
from freezegun import freeze_time
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.models import Customer, StripeEvent
from stripe_bridge.web.app import create_app
from tests.support import (
    OTHER_SECRET,
    SECRET,
    all_rows,
    count_rows,
    event,
    own_bridge,
    own_client,
    post_event,
    queued_event_ids,
    queued_jobs,
    run_jobs,
    signed_headers,
)

CUSTOMER = {"id": "cus_A", "object": "customer", "name": "Acme", "email": "a@acme.example"}


def test_verified_event_is_stored_enqueued_and_acknowledged(
    client: TestClient, bridge: Context
) -> None:
    payload = event("customer.created", CUSTOMER)

    response = post_event(client, payload)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    [row] = all_rows(bridge, StripeEvent)
    assert (row.id, row.type, row.status, row.object_id) == (
        payload["id"],
        "customer.created",
        "received",
        "cus_A",
    )
    assert row.api_version == "2025-03-31.basil"
    assert row.livemode is False
    assert orjson.loads(row.payload) == payload
    assert queued_event_ids(bridge) == [payload["id"]]


def test_duplicate_delivery_is_acknowledged_and_enqueues_nothing(
    client: TestClient, bridge: Context
) -> None:
    payload = event("customer.created", CUSTOMER)
    post_event(client, payload)

    response = post_event(client, payload)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": True}
    assert len(all_rows(bridge, StripeEvent)) == 1
    assert queued_event_ids(bridge) == [payload["id"]]


def test_missing_signature_is_refused_and_nothing_stored(
    client: TestClient, bridge: Context
) -> None:
    body = orjson.dumps(event("customer.created", CUSTOMER))

    response = client.post("/webhooks/stripe", content=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "missing signature header"
    assert all_rows(bridge, StripeEvent) == []


def test_wrong_secret_is_refused(client: TestClient, bridge: Context) -> None:
    response = post_event(client, event("customer.created", CUSTOMER), secret="whsec_someone_else")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "signature does not match"
    assert all_rows(bridge, StripeEvent) == []


def test_tampered_body_is_refused(client: TestClient, bridge: Context) -> None:
    body = orjson.dumps(event("customer.created", CUSTOMER))
    headers = signed_headers(body)

    response = client.post(
        "/webhooks/stripe", content=body.replace(b"Acme", b"Evil"), headers=headers
    )

    assert response.status_code == 400
    assert all_rows(bridge, StripeEvent) == []


def test_malformed_signature_header_is_refused(client: TestClient, bridge: Context) -> None:
    body = orjson.dumps(event("customer.created", CUSTOMER))

    response = client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": "garbage"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "malformed signature header"
    assert all_rows(bridge, StripeEvent) == []


def test_signature_header_with_non_ascii_bytes_is_refused_not_a_server_error(
    client: TestClient, bridge: Context
) -> None:
    # found by the bad-input fault scenario: the SDK's compare_digest raised TypeError (500)
    body = orjson.dumps(event("customer.created", CUSTOMER))
    header = f"t={int(time.time())},v1=f00990777\u00e0\u00a7\u00a7".encode()

    response = client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header},  # type: ignore[dict-item]
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "malformed signature header"
    assert all_rows(bridge, StripeEvent) == []


def test_signature_at_the_tolerance_edge_is_accepted_and_one_second_later_refused(
    client: TestClient, bridge: Context
) -> None:
    signed_at = 1_760_000_000
    fresh = event("customer.created", CUSTOMER)
    stale = event("customer.created", CUSTOMER)

    with freeze_time("2025-10-09 08:58:20"):  # signed_at + 300 s
        assert int(time.time()) == signed_at + 300
        at_edge = post_event(client, fresh, timestamp=signed_at)
    with freeze_time("2025-10-09 08:58:21"):  # signed_at + 301 s
        too_late = post_event(client, stale, timestamp=signed_at)

    assert at_edge.status_code == 200
    assert too_late.status_code == 400
    assert too_late.json()["error"]["message"] == "timestamp outside the tolerance window"
    assert [row.id for row in all_rows(bridge, StripeEvent)] == [fresh["id"]]


def test_either_of_two_rolling_secrets_verifies(
    database_url: str, redis_namespace: str, bridge: Context
) -> None:
    with own_client(
        database_url, redis_namespace, STRIPE_WEBHOOK_SECRET=f"{SECRET}, {OTHER_SECRET}"
    ) as client:
        old = post_event(client, event("customer.created", CUSTOMER), secret=SECRET)
        new = post_event(client, event("customer.created", CUSTOMER), secret=OTHER_SECRET)
        other = post_event(client, event("customer.created", CUSTOMER), secret="whsec_third")

    assert (old.status_code, new.status_code, other.status_code) == (200, 200, 400)
    assert len(all_rows(bridge, StripeEvent)) == 2


def test_body_that_is_not_json_is_refused(client: TestClient, bridge: Context) -> None:
    body = b"{not json"

    response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "body is not valid JSON"
    assert all_rows(bridge, StripeEvent) == []


def test_json_that_is_not_a_stripe_event_is_refused(client: TestClient, bridge: Context) -> None:
    for body in (b"[]", b'{"id": "evt_1"}', b'{"id": "nope", "type": "x", "created": 1}'):
        response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "bad_request"
    assert all_rows(bridge, StripeEvent) == []


def test_body_over_one_mebibyte_is_refused_with_413(client: TestClient, bridge: Context) -> None:
    payload = event("customer.created", {**CUSTOMER, "metadata": {"blob": "x" * (1024 * 1024)}})
    body = orjson.dumps(payload)

    response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))

    assert response.status_code == 413
    assert all_rows(bridge, StripeEvent) == []


def test_body_over_the_limit_without_content_length_is_refused(
    client: TestClient, bridge: Context
) -> None:
    body = orjson.dumps(event("customer.created", {**CUSTOMER, "note": "y" * (1024 * 1024 + 10)}))

    def chunks():  # streamed: no Content-Length header
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = client.post("/webhooks/stripe", content=chunks(), headers=signed_headers(body))

    assert response.status_code == 413
    assert all_rows(bridge, StripeEvent) == []


def test_event_that_cannot_be_stored_is_answered_503(
    database_url: str, redis_namespace: str
) -> None:
    unreachable = database_url.rsplit("/", 1)[0] + "/sb_no_such_database"
    with own_client(unreachable, redis_namespace) as client:
        response = post_event(client, event("customer.created", CUSTOMER))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


def test_event_of_the_other_mode_is_stored_then_ignored_with_the_reason(
    client: TestClient, bridge: Context
) -> None:
    response = post_event(client, event("customer.created", CUSTOMER, livemode=True))
    run_jobs(bridge)

    assert response.status_code == 200
    [row] = all_rows(bridge, StripeEvent)
    assert row.status == "ignored"
    assert row.reason == "mode mismatch: live event, bridge is in test mode"
    with bridge.session_factory() as session:
        assert session.get(Customer, ("default", "cus_A")) is None  # never applied


def test_live_key_makes_test_events_the_mismatch(database_url: str, redis_namespace: str) -> None:
    with own_bridge(database_url, redis_namespace, STRIPE_API_KEY="sk_live_abc123") as live:
        with TestClient(create_app(live)) as client:
            post_event(client, event("customer.created", CUSTOMER, livemode=False))
            post_event(client, event("customer.created", CUSTOMER, livemode=True))
        run_jobs(live)
        rows = all_rows(live, StripeEvent)

    assert sorted((row.livemode, row.status) for row in rows) == [
        (False, "ignored"),
        (True, "processed"),
    ]


def test_unknown_event_type_is_stored_as_ignored_and_not_an_error(
    client: TestClient, bridge: Context
) -> None:
    response = post_event(client, event("charge.refunded", {"id": "ch_1", "object": "charge"}))

    assert response.status_code == 200
    [row] = all_rows(bridge, StripeEvent)
    assert (row.status, row.reason) == ("ignored", "unhandled event type charge.refunded")
    assert queued_jobs(bridge) == 0


def test_no_configured_secret_refuses_everything(database_url: str, redis_namespace: str) -> None:
    with own_bridge(database_url, redis_namespace, STRIPE_WEBHOOK_SECRET=None) as unconfigured:
        with TestClient(create_app(unconfigured)) as client:
            response = post_event(client, event("customer.created", CUSTOMER))
        count = count_rows(unconfigured, StripeEvent)

    assert response.status_code == 400
    assert count == 0


def test_an_event_whose_created_overflows_the_inbox_is_refused_not_a_5xx(
    client: TestClient, bridge: Context
) -> None:
    response = post_event(client, {**event("customer.created", CUSTOMER), "created": 2**63 + 1})

    assert response.status_code == 400
    assert "created" in response.json()["error"]["message"]
    assert all_rows(bridge, StripeEvent) == []
    assert post_event(client, event("customer.created", CUSTOMER)).status_code == 200
