"""Platform mode: with STRIPE_PLATFORM_KEY, a workspace is connected by the id of an account
connected to the platform; its calls carry `Stripe-Account`, and one Connect endpoint takes
every connected account's events, each routed by its `account` to its workspace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from freezegun import freeze_time
from sqlalchemy import select
from starlette.testclient import TestClient
from stripe import StripeClient

from stripe_bridge import oauth
from stripe_bridge.context import Context
from stripe_bridge.inbox.door import sign
from stripe_bridge.models import Connection, Customer, OutboxRow, StripeEvent
from stripe_bridge.sync import run_sync
from stripe_bridge.web.app import create_app
from tests.fake_stripe import FakeStripe
from tests.support import (
    VELES_SECRET,
    admin_headers,
    all_rows,
    count_rows,
    event,
    own_bridge,
    relay_for,
    run_jobs,
    signed_headers,
    veles_event,
)

PLATFORM_KEY = "sk_test_51VelesPlatformKey0000"
PLATFORM = "acct_1VelesPlatform00"
CONNECT_SECRET = "whsec_test_connect_endpoint_0123"


@pytest.fixture
def platform(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[tuple[TestClient, Context]]:
    fake_stripe.add_platform(PLATFORM_KEY, PLATFORM)
    for account in ("acct_1Connected0001", "acct_1Connected0002"):
        fake_stripe.connect_account(PLATFORM, account)
    with (
        own_bridge(
            database_url,
            redis_namespace,
            STRIPE_API_BASE=fake_stripe.url,
            STRIPE_PLATFORM_KEY=PLATFORM_KEY,
            STRIPE_CONNECT_WEBHOOK_SECRET=CONNECT_SECRET,
        ) as bridge,
        TestClient(create_app(bridge)) as client,
    ):
        for workspace_id in ("acme", "globex"):
            response = client.post(
                "/admin/api/workspaces", json={"id": workspace_id}, headers=admin_headers()
            )
            assert response.status_code == 201
        yield client, bridge


def connect(client: TestClient, workspace_id: str, account_id: str) -> Any:
    return client.put(
        f"/admin/api/workspaces/{workspace_id}/connection",
        json={"account_id": account_id},
        headers=admin_headers(),
    )


def post_connect(client: TestClient, payload: dict[str, Any], secret: str = CONNECT_SECRET) -> Any:
    body = orjson.dumps(payload)
    return client.post(
        "/webhooks/stripe/connect", content=body, headers=signed_headers(body, secret)
    )


def account_event(account: str, customer_id: str, name: str) -> dict[str, Any]:
    obj = {"id": customer_id, "object": "customer", "name": name, "email": None, "metadata": {}}
    return {**event("customer.created", obj), "account": account}


def test_a_workspace_connects_by_account_id(platform: tuple[TestClient, Context]) -> None:
    client, _bridge = platform

    connected = connect(client, "acme", "acct_1Connected0001")
    taken = connect(client, "globex", "acct_1Connected0001")
    stranger = connect(client, "globex", "acct_1NotOnThePlatform")

    assert connected.status_code == 200, connected.text
    body = connected.json()
    assert (body["status"], body["account_id"], body["platform"]) == (
        "connected",
        "acct_1Connected0001",
        True,
    )
    assert body["api_key_last4"] is None  # no key of its own is stored
    assert taken.status_code == 409
    assert stranger.status_code == 400
    assert "cannot act for acct_1NotOnThePlatform" in stranger.json()["error"]["message"]


def test_connect_events_are_routed_by_their_account(platform: tuple[TestClient, Context]) -> None:
    client, bridge = platform
    connect(client, "acme", "acct_1Connected0001")
    connect(client, "globex", "acct_1Connected0002")

    answers = [
        post_connect(client, account_event("acct_1Connected0001", "cus_same", "Acme's")),
        post_connect(client, account_event("acct_1Connected0002", "cus_same", "Globex's")),
        post_connect(client, account_event("acct_1Nobody", "cus_x", "Nobody's")),
        post_connect(client, account_event("acct_1Connected0001", "cus_y", "Y"), "whsec_wrong"),
    ]
    run_jobs(bridge)

    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    names = {(row.workspace_id, row.name) for row in all_rows(bridge, Customer)}
    assert names == {("acme", "Acme's"), ("globex", "Globex's")}
    [unknown] = [row for row in all_rows(bridge, StripeEvent) if row.account == "acct_1Nobody"]
    assert (unknown.workspace_id, unknown.status, unknown.reason) == (
        "default",
        "ignored",
        "unknown_account",
    )
    # `default`'s own token holders must not read another account's data: only the envelope
    kept = orjson.loads(unknown.payload)
    assert (kept["id"], kept["type"], kept["account"]) == (unknown.id, unknown.type, "acct_1Nobody")
    assert "Nobody's" not in unknown.payload.decode() and "data" not in kept
    assert count_rows(bridge, StripeEvent) == 3


def test_calls_for_a_workspace_carry_its_account(
    platform: tuple[TestClient, Context], fake_stripe: FakeStripe
) -> None:
    client, bridge = platform
    connect(client, "acme", "acct_1Connected0001")
    stripe = StripeClient(PLATFORM_KEY, base_addresses={"api": fake_stripe.url})
    for name in ("One", "Two"):
        stripe.v1.customers.create(
            params={"name": name}, options={"stripe_account": "acct_1Connected0001"}
        )
    stripe.v1.customers.create(
        params={"name": "Elsewhere"}, options={"stripe_account": "acct_1Connected0002"}
    )

    result = run_sync(bridge, "acme", "customers")

    assert result.seen == 2
    listed = [r for r in fake_stripe.requests if r.path == "/v1/customers" and r.method == "GET"]
    assert {r.account for r in listed} == {"acct_1Connected0001"}
    assert {row.name for row in all_rows(bridge, Customer)} == {"One", "Two"}


def test_connecting_by_account_needs_the_platform_key(
    client: TestClient,
) -> None:
    response = client.put(
        "/admin/api/connection", json={"account_id": "acct_1Connected0001"}, headers=admin_headers()
    )

    assert response.status_code == 400
    assert "STRIPE_PLATFORM_KEY" in response.json()["error"]["message"]


def test_the_cli_connects_by_account(
    cli: Any, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_stripe.add_platform(PLATFORM_KEY, PLATFORM)
    fake_stripe.connect_account(PLATFORM, "acct_1Connected0001")
    without = cli("connect", "--account", "acct_1Connected0001")
    monkeypatch.setenv("STRIPE_PLATFORM_KEY", PLATFORM_KEY)
    assert cli("workspaces", "create", "acme")[0] == 0

    code, out, err = cli("--workspace", "acme", "connect", "--account", "acct_1Connected0001")

    assert without[0] == 1 and "STRIPE_PLATFORM_KEY" in without[2]
    assert code == 0, err
    assert "connected" in out and "through the platform" in out


PUBLIC_URL = "https://bridge.example"
CLIENT_ID = "ca_VelesAppClientId0001"
# a platform of its own (the fake keeps platforms across tests, with their apps)
APP_KEY = "sk_test_51VelesAppPlatformKey00"
APP_PLATFORM = "acct_1VelesAppPlatfrm"


@pytest.fixture
def app_install(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[tuple[TestClient, Context]]:
    """Platform mode as a Stripe App: its client id, and the bridge's public address."""
    callback = f"{PUBLIC_URL}/oauth/stripe/callback"
    fake_stripe.add_platform(APP_KEY, APP_PLATFORM, client_id=CLIENT_ID, redirect_uris=(callback,))
    with (
        own_bridge(
            database_url,
            redis_namespace,
            STRIPE_API_BASE=fake_stripe.url,
            STRIPE_PLATFORM_KEY=APP_KEY,
            STRIPE_APP_CLIENT_ID=CLIENT_ID,
            BRIDGE_PUBLIC_URL=PUBLIC_URL,
        ) as bridge,
        TestClient(create_app(bridge)) as client,
    ):
        assert (
            client.post(
                "/admin/api/workspaces", json={"id": "acme"}, headers=admin_headers()
            ).status_code
            == 201
        )
        yield client, bridge


def install(client: TestClient, fake_stripe: FakeStripe, account: str) -> Any:
    """The workspace admin opens the install link, picks `account`; Stripe redirects back."""
    link = client.get("/admin/api/workspaces/acme/oauth/install", headers=admin_headers())
    assert link.status_code == 200, link.text
    redirect = fake_stripe.approve_install(link.json()["url"], account)
    assert redirect.startswith(f"{PUBLIC_URL}/oauth/stripe/callback?")
    return client.get(redirect.removeprefix(PUBLIC_URL))


def test_the_app_install_connects_the_workspace_and_its_tokens_refresh(
    app_install: tuple[TestClient, Context], fake_stripe: FakeStripe
) -> None:
    client, bridge = app_install

    answer = install(client, fake_stripe, "acct_1Installed0001")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "connected": True,
        "workspace_id": "acme",
        "account_id": "acct_1Installed0001",
    }
    status = client.get("/admin/api/workspaces/acme/connection", headers=admin_headers()).json()
    assert (status["status"], status["account_id"]) == ("connected", "acct_1Installed0001")
    with bridge.session_factory() as session:
        row = session.get(Connection, "acme")
        assert row is not None and row.oauth_refresh_encrypted is not None
        first_token = bridge.box.open(row.api_key_encrypted or b"")
        assert first_token.encode() not in row.oauth_refresh_encrypted  # stored encrypted
    # the access token is the workspace's key: a sync runs with it
    assert run_sync(bridge, "acme", "customers").status == "completed"

    # Then: within ten minutes of its expiry, the scheduler's tick gets the next token
    with freeze_time(timedelta(minutes=55)):
        assert oauth.refresh_due(bridge.session_factory, bridge.box, bridge.gateway) == 1
    with bridge.session_factory() as session:
        row = session.get(Connection, "acme")
        assert row is not None and bridge.box.open(row.api_key_encrypted or b"") != first_token
    assert run_sync(bridge, "acme", "customers").status == "completed"  # the new token works


def test_a_callback_the_bridge_did_not_start_is_refused(
    app_install: tuple[TestClient, Context], fake_stripe: FakeStripe
) -> None:
    client, _bridge = app_install
    forged = fake_stripe.install_link(APP_PLATFORM, state="forged-state")
    redirect = fake_stripe.approve_install(forged, "acct_1Installed0002")
    denied = fake_stripe.approve_install(forged, approve=False)

    assert client.get(redirect.removeprefix(PUBLIC_URL)).status_code == 400
    assert client.get(denied.removeprefix(PUBLIC_URL)).status_code == 400
    status = client.get("/admin/api/workspaces/acme/connection", headers=admin_headers()).json()
    assert status["status"] == "not_connected"


def test_only_the_operator_connects_by_account_id(platform: tuple[TestClient, Context]) -> None:
    client, _bridge = platform
    token = client.post("/admin/api/workspaces/acme/tokens", headers=admin_headers()).json()
    tenant = {"Authorization": f"Bearer {token['token']}"}

    response = client.put(
        "/admin/api/workspaces/acme/connection",
        json={"account_id": "acct_1Connected0001"},
        headers=tenant,
    )

    # a workspace token proves no hold on an account of the platform: installing the app does
    assert response.status_code == 401
    assert connect(client, "acme", "acct_1Connected0001").status_code == 200  # the operator


def test_an_order_of_a_platform_workspace_is_pushed_into_its_account(
    platform: tuple[TestClient, Context], fake_stripe: FakeStripe
) -> None:
    client, bridge = platform
    connect(client, "acme", "acct_1Connected0001")
    stripe = StripeClient(PLATFORM_KEY, base_addresses={"api": fake_stripe.url})
    on_acme = {"stripe_account": "acct_1Connected0001"}
    stripe.v1.products.create(params={"name": "Seats"}, options=on_acme)
    assert run_sync(bridge, "acme", "products").seen == 1
    for event_type, data in (
        ("customer.upserted", {"id": "v_1", "name": "Hooli", "email": "h@hooli.example"}),
        ("product.upserted", {"id": "vp_1", "name": "Seats"}),
        (
            "order.committed",
            {
                "id": "ord_1",
                "customer_id": "v_1",
                "currency": "usd",
                "lines": [{"product_id": "vp_1", "quantity": 1, "unit_amount": 900}],
            },
        ),
    ):
        body = orjson.dumps({**veles_event(event_type, data), "workspace_id": "acme"})
        headers = {"Veles-Signature": sign(body, VELES_SECRET, int(time.time()))}
        assert client.post("/veles/events", content=body, headers=headers).status_code == 202
        run_jobs(bridge)

    assert relay_for(bridge).drain() == 1

    [invoice] = fake_stripe.objects("invoice", account="acct_1Connected0001")
    assert invoice["metadata"]["veles_order_id"] == "ord_1"
    writes = [r for r in fake_stripe.requests if r.method == "POST" and r.path.startswith("/v1/")]
    assert writes and {r.account for r in writes} == {"acct_1Connected0001"}


def test_an_expired_app_token_holds_pushes_back_until_it_is_refreshed(
    app_install: tuple[TestClient, Context],
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the scheduler down past the access token's hour, Stripe would answer 401 to every
    call: the pushes wait for the refresh instead of dying (nothing to replay by hand)."""
    client, bridge = app_install
    monkeypatch.setattr(fake_stripe, "clock", lambda: time.time())  # frozen below with ours
    install(client, fake_stripe, "acct_1Installed0001")
    stripe = StripeClient(APP_KEY, base_addresses={"api": fake_stripe.url})
    stripe.v1.products.create(
        params={"name": "Seats"}, options={"stripe_account": "acct_1Installed0001"}
    )
    assert run_sync(bridge, "acme", "products").seen == 1
    order = {
        "id": "ord_1",
        "customer_id": "v_1",
        "currency": "usd",
        "lines": [{"product_id": "vp_1", "quantity": 1, "unit_amount": 900}],
    }
    for event_type, data in (
        ("customer.upserted", {"id": "v_1", "name": "Hooli", "email": "h@hooli.example"}),
        ("product.upserted", {"id": "vp_1", "name": "Seats"}),
        ("order.committed", order),
    ):
        body = orjson.dumps({**veles_event(event_type, data), "workspace_id": "acme"})
        headers = {"Veles-Signature": sign(body, VELES_SECRET, int(time.time()))}
        assert client.post("/veles/events", content=body, headers=headers).status_code == 202
        run_jobs(bridge)
    calls = len(fake_stripe.requests)

    with freeze_time(timedelta(hours=2)):  # no tick refreshed the token meanwhile
        relay_for(bridge).drain()
        with bridge.session_factory() as session:
            [row] = session.scalars(select(OutboxRow))
            assert (row.status, row.attempts) == ("pending", 1), row.last_error
            assert "access token expired" in (row.last_error or ""), row.last_error
        assert len(fake_stripe.requests) == calls  # nothing sent with a dead token
        assert oauth.refresh_due(bridge.session_factory, bridge.box, bridge.gateway) == 1

    with freeze_time(timedelta(hours=2, minutes=10)):
        assert relay_for(bridge).drain() == 1
    [invoice] = fake_stripe.objects("invoice", account="acct_1Installed0001")
    assert invoice["metadata"]["veles_order_id"] == "ord_1"
