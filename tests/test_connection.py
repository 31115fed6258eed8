"""The Stripe connection against the fake Stripe over real HTTP: connect, update the key,
disconnect, encryption at rest, retries."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from stripe_bridge import logs
from stripe_bridge.cli.connection import connect_from_settings
from stripe_bridge.context import Context
from stripe_bridge.models import Connection, Customer, StripeEvent
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    LIVE_KEY,
    OTHER_ACCOUNT_KEY,
    ROTATED_KEY,
    SECRET,
    TEST_KEY,
    admin_get,
    admin_headers,
    count_rows,
    event,
    own_bridge,
    own_client,
    post_event,
    run_jobs,
)


def put_connection(client: TestClient, api_key: str, webhook_secret: str | None = None) -> Any:
    body: dict[str, Any] = {"api_key": api_key}
    if webhook_secret:
        body["webhook_secret"] = webhook_secret
    return client.put("/admin/api/connection", json=body, headers=admin_headers())


def customer_event(
    cus_id: str = "cus_1", name: str = "Acme", created: int = 1_750_000_000
) -> dict[str, Any]:
    return event(
        "customer.updated", {"id": cus_id, "name": name, "email": "a@acme.example"}, created=created
    )


def test_connect_checks_the_key_with_stripe_and_stores_the_account(
    client: TestClient, fake_stripe: FakeStripe
) -> None:
    response = put_connection(client, TEST_KEY)

    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["status"], status["account_id"], status["account_name"], status["mode"]) == (
        "connected",
        ACCOUNT_ID,
        "Context Test Co",
        "test",
    )
    assert status["api_key_last4"] == TEST_KEY[-4:]
    assert status["connected_at"] is not None
    assert TEST_KEY not in response.text
    assert [r.path for r in fake_stripe.requests] == ["/v1/account"]


def test_a_key_stripe_rejects_is_refused_with_its_message_and_nothing_stored(
    client: TestClient, bridge: Context
) -> None:
    response = put_connection(client, "sk_test_51NobodyKnowsThisKey0000")

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("Stripe refused the key: ")
    assert "Invalid API Key" in message
    assert "NobodyKnows" not in message
    with bridge.session_factory() as session:
        assert session.get(Connection, "default") is None


def test_a_malformed_key_is_refused_before_calling_stripe(
    client: TestClient, fake_stripe: FakeStripe
) -> None:
    response = put_connection(client, "pk_test_publishable")

    assert response.status_code == 400
    assert fake_stripe.requests == []


def test_without_an_encryption_key_connect_is_refused_before_calling_stripe(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> None:
    """On PostgreSQL a key can only be stored encrypted: with no BRIDGE_SECRET_KEY the
    connect fails with that reason, and Stripe is not asked about the key first."""
    fake_stripe.add_account("sk_test_nokey")
    with own_client(
        database_url, redis_namespace, BRIDGE_SECRET_KEY=None, STRIPE_API_BASE=fake_stripe.url
    ) as client:
        response = put_connection(client, "sk_test_nokey")

    assert response.status_code == 500, response.text
    assert "BRIDGE_SECRET_KEY" in response.json()["error"]["message"]
    assert fake_stripe.requests == []


def test_a_live_key_connects_in_live_mode(client: TestClient) -> None:
    status = put_connection(client, LIVE_KEY).json()

    assert (status["mode"], status["account_id"]) == ("live", "acct_1BridgeLiveAcct")


def test_update_key_of_the_same_account_keeps_everything(
    client: TestClient, bridge: Context
) -> None:
    connected = put_connection(client, TEST_KEY).json()
    post_event(client, customer_event())
    run_jobs(bridge)

    updated = put_connection(client, ROTATED_KEY)

    assert updated.status_code == 200, updated.text
    status = updated.json()
    assert status["api_key_last4"] == ROTATED_KEY[-4:]
    assert (status["account_id"], status["connected_at"]) == (ACCOUNT_ID, connected["connected_at"])
    assert count_rows(bridge, Customer) == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [(OTHER_ACCOUNT_KEY, "belongs to acct_1SomeoneElse00"), (LIVE_KEY, "live key")],
    ids=["other-account", "other-mode"],
)
def test_update_key_of_another_account_or_mode_is_refused(
    client: TestClient, key: str, message: str
) -> None:
    put_connection(client, TEST_KEY)

    with_cli = client.put("/admin/api/connection", json={"api_key": key}, headers=admin_headers())

    assert with_cli.status_code == 409
    assert message in with_cli.json()["error"]["message"]
    assert admin_get(client, "connection")["api_key_last4"] == TEST_KEY[-4:]


def test_stored_keys_and_secrets_are_encrypted_at_rest(client: TestClient, bridge: Context) -> None:
    put_connection(client, TEST_KEY, webhook_secret="whsec_stored_secret_value")

    with bridge.engine.connect() as raw:
        row = raw.execute(select(Connection.__table__)).mappings().one()
    stored = b"".join(
        bytes(value) for value in row.values() if isinstance(value, bytes | memoryview)
    )
    assert TEST_KEY.encode() not in stored
    assert b"whsec_stored_secret_value" not in stored
    assert row["api_key_last4"] == TEST_KEY[-4:]
    assert row["api_key_encrypted"] and row["webhook_secrets_encrypted"]


def test_a_stored_webhook_secret_verifies_and_rolls_with_the_previous_one(
    client: TestClient,
) -> None:
    put_connection(client, TEST_KEY, webhook_secret="whsec_first")
    put_connection(client, ROTATED_KEY, webhook_secret="whsec_second")

    def delivered(secret: str) -> int:
        return int(post_event(client, customer_event(), secret=secret).status_code)

    # the app has not read the connection yet: its first webhook reads the secrets just stored
    assert (delivered("whsec_second"), delivered("whsec_first"), delivered(SECRET)) == (
        200,
        200,
        400,
    )


def test_disconnect_ignores_events_refuses_sync_keeps_data_and_reconnect_resumes(
    client: TestClient, bridge: Context
) -> None:
    put_connection(client, TEST_KEY)
    post_event(client, customer_event(name="Before", created=100))
    run_jobs(bridge)

    response = client.delete("/admin/api/connection", headers=admin_headers())
    assert (response.status_code, response.json()["status"]) == (200, "disconnected")
    assert response.json()["api_key_last4"] is None
    late = customer_event(name="During", created=200)
    assert post_event(client, late).status_code == 200
    run_jobs(bridge)
    sync = client.post("/admin/api/sync/customers", headers=admin_headers())

    assert sync.status_code == 409
    with bridge.session_factory() as session:
        ignored = session.get(StripeEvent, ("default", late["id"]))
        assert (ignored.status, ignored.reason) == ("ignored", "disconnected")
        assert session.get(Customer, ("default", "cus_1")).name == "Before"

    assert put_connection(client, TEST_KEY).json()["status"] == "connected"
    post_event(client, customer_event(name="After", created=300))
    run_jobs(bridge)
    with bridge.session_factory() as session:
        assert session.get(Customer, ("default", "cus_1")).name == "After"


def test_an_event_queued_before_disconnect_is_not_applied_after_it(
    client: TestClient, bridge: Context
) -> None:
    put_connection(client, TEST_KEY)
    queued = customer_event(name="Queued")
    post_event(client, queued)  # stored and enqueued, not yet applied

    client.delete("/admin/api/connection", headers=admin_headers())
    run_jobs(bridge)

    with bridge.session_factory() as session:
        row = session.get(StripeEvent, ("default", queued["id"]))
        assert (row.status, row.reason) == ("ignored", "disconnected")
        assert session.get(Customer, ("default", "cus_1")) is None


def test_connecting_another_account_is_refused_once_data_belongs_to_one(client: TestClient) -> None:
    put_connection(client, TEST_KEY)
    client.delete("/admin/api/connection", headers=admin_headers())

    response = put_connection(client, OTHER_ACCOUNT_KEY)

    assert response.status_code == 409
    assert "mix two Stripe accounts" in response.json()["error"]["message"]


def test_stripe_calls_retry_on_429_and_500_but_not_on_400(
    client: TestClient, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(2, status=429, path="/v1/account", headers={"Retry-After": "0"})
    fake_stripe.fail_next(1, status=500, path="/v1/account")

    assert put_connection(client, TEST_KEY).status_code == 200
    assert [r.status for r in fake_stripe.requests] == [429, 429, 500, 200]

    fake_stripe.reset()
    fake_stripe.fail_next(1, status=400, path="/v1/account")
    assert put_connection(client, ROTATED_KEY).status_code == 400
    assert [r.status for r in fake_stripe.requests] == [400]


def test_should_retry_false_stops_retries_even_on_500(
    client: TestClient, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(
        3, status=500, path="/v1/account", headers={"Stripe-Should-Retry": "false"}
    )

    response = put_connection(client, TEST_KEY)

    assert response.status_code == 400
    assert len(fake_stripe.requests) == 1


def test_stripe_down_after_every_retry_answers_503(
    client: TestClient, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(10, status=503, path="/v1/account")

    response = put_connection(client, TEST_KEY)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert len(fake_stripe.requests) == 5  # BRIDGE_STRIPE_MAX_ATTEMPTS default


def test_environment_key_bootstraps_the_connection_and_respects_a_disconnect(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> None:
    with own_bridge(
        database_url,
        redis_namespace,
        STRIPE_API_BASE=fake_stripe.url,
        STRIPE_API_KEY=TEST_KEY,
        STRIPE_WEBHOOK_SECRET="whsec_env_one,whsec_env_two",
    ) as bridge:
        connect_from_settings(bridge.session_factory, bridge.box, bridge.gateway, bridge.settings)
        with bridge.session_factory() as session:
            row = session.get(Connection, "default")
            assert (row.status, row.account_id, row.api_key_last4) == (
                "connected",
                ACCOUNT_ID,
                TEST_KEY[-4:],
            )
        from stripe_bridge import connection, endpoints

        with bridge.session_factory.begin() as session:
            assert endpoints.webhook_secrets(session.get(Connection, "default"), bridge.box) == (
                "whsec_env_one",
                "whsec_env_two",
            )
            connection.disconnect(session, "default")
        connect_from_settings(
            bridge.session_factory, bridge.box, bridge.gateway, bridge.settings
        )  # e.g. a restart with the key still in the environment
        with bridge.session_factory() as session:
            assert session.get(Connection, "default").status == "disconnected"


def test_no_secret_reaches_the_logs(
    client: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    fake_stripe.fail_next(1, status=500, path="/v1/account")

    put_connection(client, "sk_test_51RejectedKeyZzzz")
    put_connection(client, TEST_KEY, webhook_secret="whsec_logged_nowhere")
    put_connection(client, ROTATED_KEY)
    client.post("/admin/api/sync/customers", headers=admin_headers())
    run_jobs(bridge)
    client.delete("/admin/api/connection", headers=admin_headers())

    text = stream.getvalue()
    assert "stripe connected" in text and "stripe disconnected" in text
    for secret in (
        TEST_KEY,
        ROTATED_KEY,
        "sk_test_51RejectedKeyZzzz",
        "whsec_logged_nowhere",
        "RejectedKey",
    ):
        assert secret not in text
    for line in text.splitlines():
        orjson.loads(line)  # JSON lines only
