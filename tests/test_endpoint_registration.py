"""Key mode with BRIDGE_PUBLIC_URL: the operator pastes one key; the bridge registers its own
webhook endpoint in the workspace's Stripe account, keeps the signing secret, receives the
events Stripe delivers there, keeps the endpoint through a key update and deletes it on
disconnect. The bridge runs as a real HTTP server here, so that the fake Stripe's deliveries
reach it over the network as Stripe's would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from stripe import StripeClient

from stripe_bridge.context import Context
from stripe_bridge.handlers import STRIPE_HANDLERS
from stripe_bridge.stripe_api import API_VERSION
from stripe_bridge.web.app import create_app
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    ADMIN_TOKEN,
    ROTATED_KEY,
    TEST_KEY,
    free_port,
    own_bridge,
    run_jobs,
    wait_until,
)


@pytest.fixture
def served(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[tuple[httpx.Client, Context]]:
    """The bridge's web role on a free port, with BRIDGE_PUBLIC_URL naming it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with own_bridge(
        database_url, redis_namespace, STRIPE_API_BASE=fake_stripe.url, BRIDGE_PUBLIC_URL=url
    ) as bridge:
        config = uvicorn.Config(create_app(bridge), port=port, log_config=None, access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        assert wait_until(lambda: server.started)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            yield client, bridge
        server.should_exit = True
        thread.join(10)


def workspace(client: httpx.Client, workspace_id: str) -> None:
    assert client.post("/admin/api/workspaces", json={"id": workspace_id}).status_code == 201


def test_one_key_connects_and_the_bridge_receives_the_accounts_events(
    served: tuple[httpx.Client, Context], fake_stripe: FakeStripe
) -> None:
    client, bridge = served
    workspace(client, "acme")

    connected = client.put("/admin/api/workspaces/acme/connection", json={"api_key": TEST_KEY})

    assert connected.status_code == 200, connected.text
    status = connected.json()
    [endpoint] = fake_stripe.objects("webhook_endpoint", account=ACCOUNT_ID)
    assert status["webhook_endpoint_id"] == endpoint["id"]
    assert status["webhook_secrets"] == "stored"
    assert endpoint["url"] == f"{client.base_url}/webhooks/stripe/acme"
    assert endpoint["enabled_events"] == sorted(STRIPE_HANDLERS)
    assert endpoint["api_version"] == API_VERSION

    # Stripe sends the account's events there, signed with the secret only the bridge holds
    stripe = StripeClient(TEST_KEY, base_addresses={"api": fake_stripe.url})
    stripe.v1.customers.create(params={"name": "Delivered Ltd", "email": "a@delivered.example"})
    deliveries = fake_stripe.deliver_pending()
    assert [(d.event_type, d.status) for d in deliveries] == [("customer.created", 200)]
    run_jobs(bridge)
    [row] = client.get("/admin/api/workspaces/acme/customers").json()["data"]
    assert row["name"] == "Delivered Ltd"
    assert client.get("/admin/api/customers").json()["data"] == []  # not default's


def test_a_key_update_keeps_the_endpoint_and_disconnect_deletes_it(
    served: tuple[httpx.Client, Context], fake_stripe: FakeStripe
) -> None:
    client, _bridge = served
    workspace(client, "acme")
    first = client.put("/admin/api/workspaces/acme/connection", json={"api_key": TEST_KEY}).json()

    updated = client.put("/admin/api/workspaces/acme/connection", json={"api_key": ROTATED_KEY})
    disconnected = client.delete("/admin/api/workspaces/acme/connection")

    assert updated.json()["webhook_endpoint_id"] == first["webhook_endpoint_id"]
    assert updated.json()["api_key_last4"] == ROTATED_KEY[-4:]
    assert disconnected.status_code == 200
    assert disconnected.json()["webhook_endpoint_id"] is None
    assert fake_stripe.objects("webhook_endpoint", account=ACCOUNT_ID) == []
    # reconnecting registers a fresh endpoint (the old secret went with the old endpoint)
    again = client.put("/admin/api/workspaces/acme/connection", json={"api_key": TEST_KEY})
    [endpoint] = fake_stripe.objects("webhook_endpoint", account=ACCOUNT_ID)
    assert again.json()["webhook_endpoint_id"] == endpoint["id"] != first["webhook_endpoint_id"]


def test_a_key_that_may_not_manage_endpoints_is_refused_naming_the_permission(
    served: tuple[httpx.Client, Context], fake_stripe: FakeStripe
) -> None:
    client, _bridge = served
    workspace(client, "acme")
    restricted = "rk_test_51NoWebhookWriteKey0000"
    fake_stripe.add_restricted_key(restricted, ACCOUNT_ID, {"account": "read", "webhook": "read"})

    refused = client.put("/admin/api/workspaces/acme/connection", json={"api_key": restricted})
    by_hand = client.put(
        "/admin/api/workspaces/acme/connection",
        json={"api_key": restricted, "webhook_secret": "whsec_given_by_hand_0123"},
    )

    assert refused.status_code == 400
    error: dict[str, Any] = refused.json()["error"]
    assert error["code"] == "missing_permission"
    assert "rak_webhook_write" in error["message"]
    assert by_hand.status_code == 200  # the operator may give the secret instead
    assert by_hand.json()["webhook_endpoint_id"] is None
    assert by_hand.json()["status"] == "connected"


def test_an_endpoint_left_by_an_earlier_attempt_is_replaced_not_doubled(
    served: tuple[httpx.Client, Context], fake_stripe: FakeStripe
) -> None:
    client, _bridge = served
    workspace(client, "acme")
    stripe = StripeClient(TEST_KEY, base_addresses={"api": fake_stripe.url})
    orphan = stripe.v1.webhook_endpoints.create(
        params={"url": f"{client.base_url}/webhooks/stripe/acme", "enabled_events": ["*"]}
    )

    client.put("/admin/api/workspaces/acme/connection", json={"api_key": TEST_KEY})

    endpoints = fake_stripe.objects("webhook_endpoint", account=ACCOUNT_ID)
    assert [e["id"] for e in endpoints] != [orphan.id] and len(endpoints) == 1
