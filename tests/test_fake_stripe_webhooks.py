"""The fake Stripe's webhook endpoints and its signed deliveries to them, through the SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from stripe_bridge.stripe_api import API_VERSION as PINNED_VERSION
from tests.fake_stripe import FakeStripe
from tests.webhook_receiver import Receiver

KEY = "sk_test_51WebhookFakeKey000wxyz"
ACCOUNT = "acct_1WebhookTest0001"
LIVE_KEY = "sk_live_51WebhookLiveKey00wxyz"
OLD_VERSION = "2025-03-31.basil"


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "enable_telemetry", False)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe()
    server.add_account(KEY, account_id=ACCOUNT)
    with server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def client(fake: FakeStripe) -> Iterator[stripe.StripeClient]:
    http_client = stripe.RequestsClient(timeout=10)
    yield stripe.StripeClient(
        KEY, base_addresses={"api": fake.url}, max_network_retries=0, http_client=http_client
    )
    http_client.close()


def endpoint(client: stripe.StripeClient, url: str, *events: str, **params: Any) -> Any:
    return client.v1.webhook_endpoints.create(
        params={"url": url, "enabled_events": list(events), **params}
    )


def test_an_endpoint_is_created_read_updated_listed_and_deleted(
    client: stripe.StripeClient, receiver: Receiver
) -> None:
    created = endpoint(
        client,
        receiver.url + "/stripe/webhook",
        "customer.created",
        "invoice.paid",
        description="bridge",
        metadata={"workspace": "w1"},
        api_version=OLD_VERSION,
    )
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    fetched = client.v1.webhook_endpoints.retrieve(created.id).to_dict()
    assert set(fetched) == {
        "id",
        "object",
        "api_version",
        "application",
        "created",
        "description",
        "enabled_events",
        "livemode",
        "metadata",
        "status",
        "url",
    }
    assert {k: v for k, v in created.to_dict().items() if k != "secret"} == fetched
    assert fetched["api_version"] == OLD_VERSION and fetched["status"] == "enabled"
    assert fetched["application"] is None and fetched["livemode"] is False

    updated = client.v1.webhook_endpoints.update(
        created.id,
        params={"disabled": True, "enabled_events": ["*"], "metadata": {"workspace": ""}},
    )
    assert (updated.status, updated.enabled_events, updated.metadata.to_dict()) == (
        "disabled",
        ["*"],
        {},
    )
    assert "secret" not in updated

    second = endpoint(client, receiver.url + "/two", "*")
    page = client.v1.webhook_endpoints.list(params={"limit": 1})
    assert [e.id for e in page.data] == [second.id] and page.has_more is True
    rest = client.v1.webhook_endpoints.list(params={"starting_after": second.id})
    assert [e.id for e in rest.data] == [created.id] and rest.has_more is False

    deleted = client.v1.webhook_endpoints.delete(created.id)
    assert deleted.to_dict() == {"id": created.id, "object": "webhook_endpoint", "deleted": True}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.retrieve(created.id)
    assert caught.value.http_status == 404
    assert caught.value.user_message == f"No such webhook endpoint: '{created.id}'"
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [second.id]


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"url": "https://x.example/h"}, "parameter_missing", "enabled_events"),
        ({"enabled_events": ["*"]}, "parameter_missing", "url"),
        ({"url": "https://x.example/h", "enabled_events": ["customer.made"]}, None, None),
        ({"url": "ftp://x.example/h", "enabled_events": ["*"]}, "url_invalid", "url"),
        ({"url": "https://x.example/h", "enabled_events": ["*"], "colour": "red"}, None, None),
        (
            {"url": "https://x.example/h", "enabled_events": ["*"], "api_version": "2099-01-01"},
            None,
            None,
        ),
    ],
)
def test_an_invalid_endpoint_is_refused(
    client: stripe.StripeClient, params: dict[str, Any], code: str | None, param: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create(params=params)
    assert caught.value.http_status == 400
    if code:
        assert (caught.value.code, caught.value.param) == (code, param)
    assert client.v1.webhook_endpoints.list().data == []


def test_live_mode_wants_https_and_an_account_holds_16_endpoints(fake: FakeStripe) -> None:
    fake.add_account(LIVE_KEY, account_id="acct_1WebhookLive0001")
    http_client = stripe.RequestsClient(timeout=10)
    live = stripe.StripeClient(
        LIVE_KEY, base_addresses={"api": fake.url}, max_network_retries=0, http_client=http_client
    )
    try:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            endpoint(live, "http://127.0.0.1:9/hook", "*")
        assert 'URLs in livemode must begin with "https://"' in str(caught.value.user_message)
        for n in range(16):
            endpoint(live, f"https://hooks.example/{n}", "*")
        with pytest.raises(stripe.InvalidRequestError):
            endpoint(live, "https://hooks.example/17", "*")
        assert len(fake.objects("webhook_endpoints", account="acct_1WebhookLive0001")) == 16
    finally:
        http_client.close()


def test_events_are_delivered_signed_to_the_endpoints_subscribed(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    exact = endpoint(client, receiver.url + "/exact", "customer.created")
    everything = endpoint(client, receiver.url + "/all", "*", api_version=OLD_VERSION)
    endpoint(client, receiver.url + "/products", "product.created")
    disabled = endpoint(client, receiver.url + "/off", "*")
    client.v1.webhook_endpoints.update(disabled.id, params={"disabled": True})

    customer = client.v1.customers.create(params={"email": "hook@acme.example"})
    event = client.v1.events.list().data[0]
    assert (event.type, event.pending_webhooks) == ("customer.created", 2)
    assert receiver.received == []  # nothing is sent until the test says so

    sent = fake.deliver_pending()
    assert sorted(d.endpoint_id for d in sent) == sorted([exact.id, everything.id])
    assert all(d.ok and d.status == 200 and d.event_id == event.id for d in sent)
    assert fake.deliveries == sent and fake.deliver_pending() == []
    secrets = {"/exact": exact.secret, "/all": everything.secret}
    for path, headers, body in receiver.received:
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secrets[path])
        assert verified.id == event.id and verified.data.object.id == customer.id
        assert json.loads(body)["api_version"] == (
            OLD_VERSION if path == "/all" else PINNED_VERSION
        )
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_wrong")
    assert client.v1.events.retrieve(event.id).pending_webhooks == 0


def test_a_failed_delivery_is_kept_and_can_be_sent_again(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    hook = endpoint(client, receiver.url + "/hook", "product.created")
    receiver.status = 500
    client.v1.products.create(params={"name": "Widget"})
    event_id = client.v1.events.list().data[0].id
    [failed] = fake.deliver_pending()
    assert (failed.status, failed.ok) == (500, False)
    assert client.v1.events.retrieve(event_id).pending_webhooks == 1

    receiver.status, receiver.location = 302, receiver.url + "/elsewhere"
    [redirected] = fake.resend(event_id)
    assert (redirected.status, redirected.ok) == (302, False)  # Stripe counts redirects as failures

    receiver.status, receiver.location = 204, None
    [retried] = fake.resend(event_id, hook.id)
    assert retried.ok and retried.endpoint_id == hook.id
    assert client.v1.events.retrieve(event_id).pending_webhooks == 0
    assert [d.status for d in fake.deliveries] == [500, 302, 204]
    assert [path for path, _, _ in receiver.received] == ["/hook"] * 3


def test_an_unreachable_endpoint_is_an_attempt_without_status(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    url = receiver.url + "/gone"
    receiver.close()
    endpoint(client, url, "customer.created")
    client.v1.customers.create()
    [attempt] = fake.deliver_pending()
    assert attempt.status is None and attempt.error and not attempt.ok


def test_deliveries_can_follow_each_request_on_their_own(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    endpoint(client, receiver.url + "/auto", "customer.created")
    fake.deliver_webhooks = True
    client.v1.customers.create()
    fake.wait_for_deliveries()
    assert [d.ok for d in fake.deliveries] == [True] and len(receiver.received) == 1


def test_a_deleted_endpoint_receives_nothing_queued_for_it(
    fake: FakeStripe, client: stripe.StripeClient, receiver: Receiver
) -> None:
    hook = endpoint(client, receiver.url + "/hook", "*")
    client.v1.customers.create()
    client.v1.webhook_endpoints.delete(hook.id)
    assert fake.deliver_pending() == [] and receiver.received == []
