"""The fake Stripe API, exercised through the real `stripe` SDK (as the bridge will use it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import stripe

from stripe_bridge.stripe_api import API_VERSION as PINNED_VERSION
from tests.fake_stripe import FakeStripe, add_interval, decode_params, mask_key
from tests.support import wait_until

KEY = "sk_test_51BridgeFakeKey0000abcd"
ROTATED_KEY = "rk_test_51BridgeRotated00001234"
ACCOUNT = "acct_1BridgeTest00001"


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK would otherwise write ~/.config/stripe/telemetry_id and report request timings.
    monkeypatch.setattr(stripe, "enable_telemetry", False)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe()
    server.add_account(KEY, account_id=ACCOUNT, display_name="Context Test Co.")
    with server:
        yield server


_http_clients: list[stripe.RequestsClient] = []


def make_client(fake: FakeStripe, key: str = KEY, retries: int = 0) -> stripe.StripeClient:
    """The SDK pointed at the fake; its HTTP sessions are closed after each test."""
    http_client = stripe.RequestsClient(timeout=10)
    _http_clients.append(http_client)
    return stripe.StripeClient(
        key, base_addresses={"api": fake.url}, max_network_retries=retries, http_client=http_client
    )


@pytest.fixture(autouse=True)
def close_http_clients() -> Iterator[None]:
    yield
    while _http_clients:
        _http_clients.pop().close()


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return make_client(fake)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.02)


def raw(
    fake: FakeStripe,
    method: str,
    path: str,
    key: str | None = KEY,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        fake.url + path,
        method=method,
        data=body.encode() if body is not None else None,
        headers=dict(headers or {}),
    )
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers.items()), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers.items()), json.loads(error.read())


def event_types(client: stripe.StripeClient, **params: Any) -> list[str]:
    return [e.type for e in client.v1.events.list(params={"limit": 100, **params}).data]


# ---------------------------------------------------------------- parameters and keys


def test_decoder_reads_the_sdk_encoding() -> None:
    pairs = [
        ("items[0][price_data][recurring][interval]", "month"),
        ("items[0][quantity]", "3"),
        ("items[1][price]", "price_1"),
        ("expand[0]", "customer"),
        ("expand[1]", "latest_invoice"),
        ("types[]", "a"),
        ("types[]", "b"),
        ("metadata[0]", "zero"),
        ("description", ""),
    ]
    assert decode_params(pairs) == {
        "items": [
            {"price_data": {"recurring": {"interval": "month"}}, "quantity": "3"},
            {"price": "price_1"},
        ],
        "expand": ["customer", "latest_invoice"],
        "types": ["a", "b"],
        "metadata": {"0": "zero"},
        "description": "",
    }


def test_keys_are_masked_like_stripe() -> None:
    assert mask_key("sk_test_1234abcd") == "sk_test_****abcd"
    assert mask_key("rk_live_0123456789wxyz") == "rk_live_**********wxyz"


def test_bad_key_is_401_and_rotated_keys_share_the_account(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(params={"email": "rotate@example.com"})
    with pytest.raises(stripe.AuthenticationError) as caught:
        make_client(fake, "sk_test_wrongwrongwrong9876").v1.customers.list()
    assert caught.value.http_status == 401
    assert caught.value.json_body == {
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid API Key provided: sk_test_" + "*" * 15 + "9876",
        }
    }

    fake.add_account(ROTATED_KEY, account_id=ACCOUNT)
    rotated = make_client(fake, ROTATED_KEY)
    assert [c.id for c in rotated.v1.customers.list().data] == [customer.id]
    assert rotated.v1.accounts.retrieve_current().id == ACCOUNT
    fake.revoke_key(KEY)
    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.customers.list()
    assert caught.value.json_body["error"]["code"] == "api_key_expired"
    status, _, body = raw(fake, "GET", "/v1/customers", key=None)
    assert status == 401 and "did not provide an API key" in body["error"]["message"]


def test_accounts_are_isolated(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.add_account(
        "sk_live_OtherAccount000000zzzz", account_id="acct_1Other", business_name="Other Ltd"
    )
    other = make_client(fake, "sk_live_OtherAccount000000zzzz")
    mine = client.v1.customers.create(options={"idempotency_key": "shared-key"})
    theirs = other.v1.customers.create(options={"idempotency_key": "shared-key"})
    assert mine.id != theirs.id and theirs.livemode is True and mine.livemode is False
    assert [c["id"] for c in fake.objects("customers", account="acct_1Other")] == [theirs.id]
    assert other.v1.accounts.retrieve_current().business_profile.name == "Other Ltd"
    with pytest.raises(stripe.InvalidRequestError):
        other.v1.customers.retrieve(mine.id)


# ---------------------------------------------------------------- customers and lists


def test_customer_crud_and_events(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        params={
            "email": "ops@acme.example",
            "name": "Acme",
            "metadata": {"veles_id": "V-1", "x": "1"},
        }
    )
    assert created.id.startswith("cus_") and created.object == "customer"
    assert created.livemode is False and created.invoice_settings.footer is None
    fetched = client.v1.customers.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()

    updated = client.v1.customers.update(
        created.id,
        params={"name": "Acme Corp", "metadata": {"x": "", "tier": "gold"}, "description": ""},
    )
    assert updated.name == "Acme Corp"
    assert updated.metadata.to_dict() == {"veles_id": "V-1", "tier": "gold"}
    listed = client.v1.customers.list(params={"email": "ops@acme.example"})
    assert [c.id for c in listed.data] == [created.id] and listed.url == "/v1/customers"

    deleted = client.v1.customers.delete(created.id)
    assert deleted.to_dict() == {"id": created.id, "object": "customer", "deleted": True}
    assert client.v1.customers.retrieve(created.id).deleted is True
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(created.id, params={"name": "ghost"})
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")

    assert event_types(client) == ["customer.deleted", "customer.updated", "customer.created"]
    change = client.v1.events.list(params={"type": "customer.updated"}).data[0]
    assert change.data.previous_attributes.to_dict() == {
        "name": "Acme",
        "metadata": {"x": "1", "tier": None},
    }
    assert change.request.idempotency_key  # the SDK sends one with every POST


def test_auto_paging_sees_each_of_250_customers_once(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    base = 1_700_000_000
    seeded = [
        fake.seed("customer", created=base + i // 3, email=f"c{i}@example.com") for i in range(250)
    ]
    # Newest first: created descending, then the later insertion first for equal created.
    expected = [c["id"] for c in reversed(seeded)]

    page = client.v1.customers.list(params={"limit": 100})
    assert len(page.data) == 100 and page.has_more is True
    seen = [c.id for c in page.auto_paging_iter()]
    assert seen == expected and len(set(seen)) == 250
    pages = [r for r in fake.requests if r.path == "/v1/customers"]
    assert [r.params.get("starting_after") for r in pages] == [None, expected[99], expected[199]]

    before = client.v1.customers.list(params={"ending_before": expected[50], "limit": 5})
    assert [c.id for c in before.data] == expected[45:50] and before.has_more is True
    window = client.v1.customers.list(
        params={"created": {"gte": base + 80, "lte": base + 81}, "limit": 100}
    )
    assert [c.id for c in window.data] == [c["id"] for c in reversed(seeded[240:246])]

    # A cursor that has left the list (deleted) still marks its place.
    client.v1.customers.delete(expected[10])
    after = client.v1.customers.list(params={"starting_after": expected[10], "limit": 3})
    assert [c.id for c in after.data] == expected[11:14]


def test_list_parameter_errors(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.list(params={"limit": 101})
    assert (caught.value.code, caught.value.param) == ("parameter_invalid_integer", "limit")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.list(params={"starting_after": "cus_unknown"})
    assert (caught.value.code, caught.value.param) == ("resource_missing", "starting_after")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"colour": "blue"})  # type: ignore[typeddict-unknown-key]
    assert (caught.value.code, caught.value.param) == ("parameter_unknown", "colour")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"balance": "lots"})  # type: ignore[typeddict-item]
    assert (caught.value.code, caught.value.param) == ("parameter_invalid_integer", "balance")


def test_not_found_shapes(fake: FakeStripe, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_missing")
    error = caught.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")
    assert error.json_body["error"]["type"] == "invalid_request_error"
    assert error.json_body["error"]["message"] == "No such customer: 'cus_missing'"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={"customer": "cus_missing"})
    assert (caught.value.http_status, caught.value.param) == (400, "customer")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create(params={})
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "customer")
    status, headers, body = raw(fake, "GET", "/v1/charges_of_the_light_brigade")
    assert status == 404 and headers["Request-Id"].startswith("req_")
    assert body["error"]["message"].startswith("Unrecognized request URL (GET: /v1/charges")


# ---------------------------------------------------------------- idempotency


def test_idempotent_replay_and_mismatch(fake: FakeStripe, client: stripe.StripeClient) -> None:
    first = client.v1.customers.create(
        params={"email": "once@example.com"}, options={"idempotency_key": "create-once"}
    )
    again = client.v1.customers.create(
        params={"email": "once@example.com"}, options={"idempotency_key": "create-once"}
    )
    assert again.id == first.id and len(fake.objects("customer")) == 1
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert fake.requests[-1].replayed and fake.requests[-1].idempotency_key == "create-once"

    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.create(
            params={"email": "other@example.com"}, options={"idempotency_key": "create-once"}
        )
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "idempotency_error"
    assert caught.value.user_message.startswith(
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with."
    )
    with pytest.raises(stripe.IdempotencyError):  # same key on another path
        client.v1.products.create(params={"name": "P"}, options={"idempotency_key": "create-once"})

    fake.expire_idempotency_keys()
    fresh = client.v1.customers.create(
        params={"email": "once@example.com"}, options={"idempotency_key": "create-once"}
    )
    assert fresh.id != first.id and len(fake.objects("customer")) == 2


def test_what_idempotency_stores(fake: FakeStripe, client: stripe.StripeClient) -> None:
    # An error raised once the endpoint ran (an unknown customer) is stored and replayed...
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.invoices.create(
                params={"customer": "cus_later"}, options={"idempotency_key": "inv-1"}
            )
        assert caught.value.code == "resource_missing"
    assert [r.replayed for r in fake.requests[-2:]] == [False, True]
    fake.seed("customer", id="cus_later")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(
            params={"customer": "cus_later"}, options={"idempotency_key": "inv-1"}
        )
    assert fake.requests[-1].replayed

    # ...a failed parameter validation is not: the corrected request runs under the same key.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.products.create(params={}, options={"idempotency_key": "prod-1"})
    assert caught.value.code == "parameter_missing"
    product = client.v1.products.create(
        params={"name": "Pro"}, options={"idempotency_key": "prod-1"}
    )
    assert product.name == "Pro"

    # ...and neither is an injected 5xx, which also changes nothing.
    fake.fail_next(1, status=500, path="/v1/customers", method="POST")
    with pytest.raises(stripe.APIError) as failed:
        client.v1.customers.create(params={"name": "Retry"}, options={"idempotency_key": "c-9"})
    assert failed.value.http_status == 500
    assert failed.value.json_body["error"]["type"] == "api_error"
    assert [c["id"] for c in fake.objects("customer")] == ["cus_later"]
    retried = client.v1.customers.create(
        params={"name": "Retry"}, options={"idempotency_key": "c-9"}
    )
    assert retried.name == "Retry" and not fake.requests[-1].replayed


# ---------------------------------------------------------------- faults


def test_injected_rate_limit_and_server_errors(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.fail_next(1, status=429, path="/v1/customers*", headers={"Retry-After": "1"})
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.customers.list()
    assert limited.value.http_status == 429 and limited.value.headers["Retry-After"] == "1"
    for status in (500, 502, 503):
        fake.fail_next(1, status=status)
        with pytest.raises(stripe.APIError) as failed:
            client.v1.accounts.retrieve_current()
        assert failed.value.http_status == status
    assert client.v1.accounts.retrieve_current().id == ACCOUNT

    fake.fail_when(lambda record: record.params.get("email") == "doomed@example.com", 503)
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={"email": "doomed@example.com"})
    client.v1.customers.create(params={"email": "fine@example.com"})
    fake.reset_faults()
    client.v1.customers.create(params={"email": "doomed@example.com"})
    assert [r.status for r in fake.requests[-3:]] == [503, 200, 200]


def test_sdk_retries_reuse_the_key(fake: FakeStripe, fast_retries: None) -> None:
    retrying = make_client(fake, retries=3)
    fake.fail_next(2, status=503, path="/v1/customers")
    customer = retrying.v1.customers.create(params={"email": "retry@example.com"})
    attempts = [r for r in fake.requests if r.path == "/v1/customers"]
    assert [r.status for r in attempts] == [503, 503, 200]
    assert len({r.idempotency_key for r in attempts}) == 1
    assert [c["id"] for c in fake.objects("customer")] == [customer.id]

    # A lost answer: the first attempt ran, the retry is answered from the stored result.
    fake.drop_next(1, path="/v1/customers")
    again = retrying.v1.customers.create(params={"email": "lost@example.com"})
    attempts = [r for r in fake.requests if r.path == "/v1/customers"][3:]
    assert [(r.status, r.replayed) for r in attempts] == [(200, False), (200, True)]
    assert len(fake.objects("customer")) == 2 and fake.get("customer", again.id)["email"] == (
        "lost@example.com"
    )


def test_delay(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.set_delay(0.5, path="/v1/account")
    started = time.monotonic()
    client.v1.accounts.retrieve_current()
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    client.v1.customers.list()
    assert time.monotonic() - started < 0.5
    fake.set_delay(0, path="/v1/account")
    started = time.monotonic()
    client.v1.accounts.retrieve_current()
    assert time.monotonic() - started < 0.5


def test_delay_when_answers_late_but_executes(fake: FakeStripe) -> None:
    # Given: creating a customer named "Slow" is answered after the client's timeout
    fake.delay_when(lambda r: r.method == "POST" and r.params.get("name") == "Slow", 0.6)
    http_client = stripe.RequestsClient(timeout=0.2)
    _http_clients.append(http_client)
    impatient = stripe.StripeClient(
        KEY, base_addresses={"api": fake.url}, max_network_retries=0, http_client=http_client
    )
    # When: the client gives up, then retries with the same idempotency key
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.create(
            params={"name": "Slow"}, options={"idempotency_key": "k-slow"}
        )
    late = fake.requests[-1]
    assert wait_until(lambda: late.status is not None, seconds=5)  # the late one is answered
    fake.reset_faults()
    again = impatient.v1.customers.create(
        params={"name": "Slow"}, options={"idempotency_key": "k-slow"}
    )
    # Then: the late request did happen, once; the retry is its replay
    assert [c["id"] for c in fake.objects("customer")] == [again.id]
    assert [r.replayed for r in fake.requests if r.path == "/v1/customers"] == [False, True]


# ---------------------------------------------------------------- invoices


def test_invoice_items_finalize_pay(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Acme", "invoice_prefix": "ACME"})
    product = client.v1.products.create(params={"name": "Setup"})
    one_time = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 700}
    )
    invoice = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "metadata": {"order": "O-1"},
        }
    )
    assert (invoice.status, invoice.amount_due, invoice.number) == ("draft", 0, None)

    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "amount": 1500,
            "currency": "usd",
            "description": "Consulting",
        }
    )
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "pricing": {"price": one_time.id},
            "quantity": 2,
        }
    )
    item = client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "quantity": 3,
            "price_data": {"currency": "usd", "product": product.id, "unit_amount": 250},
        }
    )
    assert item.amount == 750 and item.pricing.price_details.product == product.id
    listed = client.v1.invoice_items.list(params={"invoice": invoice.id})
    assert len(listed.data) == 3

    final = client.v1.invoices.finalize_invoice(invoice.id)
    assert final.status == "open" and final.number == "ACME-0001"
    assert final.amount_due == 1500 + 1400 + 750 == final.amount_remaining
    assert [line.amount for line in final.lines.data] == [1500, 1400, 750]
    assert final.lines.data[1].description == "Setup"
    assert final.due_date == final.status_transitions.finalized_at + 30 * 86400
    lines = client.v1.invoices.line_items.list(invoice.id, params={"limit": 2})
    assert [line.amount for line in lines.data] == [1500, 1400] and lines.has_more is True

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert (caught.value.http_status, caught.value.code) == (400, "invoice_not_editable")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": invoice.id, "amount": 1, "currency": "usd"}
        )
    assert caught.value.code == "invoice_not_editable"

    paid = client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 3650, 0)
    second = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": second.id, "amount": 100, "currency": "usd"}
    )
    assert client.v1.invoices.finalize_invoice(second.id).number == "ACME-0002"
    voided = client.v1.invoices.void_invoice(second.id)
    assert voided.status == "void"

    assert [i.id for i in client.v1.invoices.list(params={"status": "paid"}).data] == [invoice.id]
    assert event_types(
        client, types=["invoice.created", "invoice.finalized", "invoice.paid", "invoice.voided"]
    ) == [
        "invoice.voided",
        "invoice.finalized",
        "invoice.created",
        "invoice.paid",
        "invoice.finalized",
        "invoice.created",
    ]


def test_invoice_item_validation(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as caught:  # basil moved price to pricing
        client.v1.invoice_items.create(params={"customer": customer.id, "price": "price_x"})  # type: ignore[typeddict-unknown-key]
    assert (caught.value.code, caught.value.param) == ("parameter_unknown", "price")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(params={"customer": customer.id, "amount": 5})
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "currency")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "pricing": {"price": "price_nope"}}
        )
    assert (caught.value.code, caught.value.param) == ("resource_missing", "pricing[price]")


# ---------------------------------------------------------------- subscriptions


def test_subscription_create_update_cancel(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "subs@example.com"})
    product = client.v1.products.create(params={"name": "Pro Plan"})
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "metadata": {"contract": "K-7"},
            "items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": product.id,
                        "unit_amount": 4900,
                        "recurring": {"interval": "month"},
                    },
                    "quantity": 3,
                }
            ],
        }
    )
    assert sub.status == "active" and sub.customer == customer.id and sub.currency == "usd"
    item = sub["items"].data[0]
    assert item.id.startswith("si_") and item.quantity == 3
    assert item.price.unit_amount == 4900 and item.price.recurring.interval == "month"
    assert item.plan.amount == 4900
    assert item.current_period_start == sub.billing_cycle_anchor == sub.start_date
    assert item.current_period_end == add_interval(item.current_period_start, "month", 1)

    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 5}],
            "proration_behavior": "none",
            "cancel_at_period_end": True,
        },
    )
    assert updated["items"].data[0].quantity == 5 and updated["items"].data[0].id == item.id
    assert updated.cancel_at_period_end is True
    assert updated.cancel_at == item.current_period_end
    change = client.v1.events.list(params={"type": "customer.subscription.updated"}).data[0]
    previous = change.data.previous_attributes
    assert previous["items"]["data"][0]["quantity"] == 3
    assert previous.cancel_at_period_end is False

    monthly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "year"},
        }
    )
    swapped = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "deleted": True}, {"price": monthly.id}]}
    )
    assert [i.price.id for i in swapped["items"].data] == [monthly.id]

    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.ended_at == canceled.canceled_at
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    everything = client.v1.subscriptions.list(params={"status": "all"})
    assert [s.id for s in everything.data] == [sub.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={"items": [{"price": monthly.id}]})
    assert event_types(client, type="customer.subscription.*") == [
        "customer.subscription.deleted",
        "customer.subscription.updated",
        "customer.subscription.updated",
        "customer.subscription.created",
    ]


def test_subscription_needs_a_recurring_price(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    product = client.v1.products.create(params={"name": "Once"})
    once = client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": 100}
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": once.id}]}
        )
    assert caught.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [
                    {"price_data": {"currency": "usd", "product": product.id, "unit_amount": 1}}
                ],
            }
        )
    assert (caught.value.code, caught.value.param) == (
        "parameter_missing",
        "items[0][price_data][recurring]",
    )


def test_a_failing_request_changes_nothing(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    product = client.v1.products.create(params={"name": "Two"})
    monthly = {
        "currency": "usd",
        "product": product.id,
        "unit_amount": 100,
        "recurring": {"interval": "month"},
    }
    before = (fake.objects("price"), fake.objects("event"))
    with pytest.raises(stripe.InvalidRequestError) as caught:  # item 0 made a price first
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price_data": monthly}, {"price": "price_missing"}],
            }
        )
    assert caught.value.param == "items[1][price]"
    assert (fake.objects("price"), fake.objects("event")) == before
    assert fake.objects("subscription") == []


# ---------------------------------------------------------------- events, seeding, inspection


def test_answers_in_the_api_version_the_client_pins(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    # Given: the bridge's client pins an API version (stripe_bridge.stripe_api.API_VERSION)
    customer = client.v1.customers.create(params={"name": "Versioned"})
    # Then: every answer, an error too, says the fake speaks that version...
    assert customer.last_response.headers["Stripe-Version"] == PINNED_VERSION
    status, headers, _ = raw(fake, "GET", "/v1/customers/cus_missing")
    assert (status, headers["Stripe-Version"]) == (404, PINNED_VERSION)
    # ...and the events it emits (and seeds) were rendered in it
    [event] = client.v1.events.list(params={"type": "customer.created"}).data
    assert event.api_version == PINNED_VERSION and event.data.object.id == customer.id
    assert fake.seed("event", type="customer.updated")["api_version"] == PINNED_VERSION


def test_shapes_are_the_pinned_versions(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    product = client.v1.products.create(params={"name": "Shape"})
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 7}
    )
    item = client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "quantity": 2,
            "price_data": {"currency": "usd", "product": product.id, "unit_amount": 300},
        }
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": product.id,
                        "unit_amount": 100,
                        "recurring": {"interval": "month"},
                    }
                }
            ],
        }
    )
    shown = {"product": product.to_dict(), "invoice": invoice.to_dict(), "sub": sub.to_dict()}
    # Gone since (or never in) basil: a legacy product field, an invoice *parameter*
    assert "attributes" not in shown["product"] and "days_until_due" not in shown["invoice"]
    # Added up to endive
    assert shown["product"]["tax_details"] is None and shown["invoice"]["customer_account"] is None
    assert (item.quantity_decimal, item.net_amount) == (Decimal(2), None)  # discountable
    line = client.v1.invoices.line_items.list(invoice.id).data[0]
    assert (line.subtotal, line.quantity_decimal, line.subscription) == (600, Decimal(2), None)
    assert shown["sub"]["billing_mode"] == {"flexible": None, "type": "flexible"}
    assert shown["sub"]["items"]["data"][0]["current_trial"] is None
    final = client.v1.invoices.finalize_invoice(invoice.id)  # days_until_due still counts
    assert final.due_date == final.status_transitions.finalized_at + 7 * 86400


def test_events_filters(fake: FakeStripe, client: stripe.StripeClient) -> None:
    old = fake.seed("event", type="product.created", created=1_600_000_000)
    customer = client.v1.customers.create(params={"name": "E"})
    product = client.v1.products.create(params={"name": "P"}, options={"idempotency_key": "p-1"})
    client.v1.products.update(product.id, params={"active": False})
    assert event_types(client, types=["product.created", "customer.created"]) == [
        "product.created",
        "customer.created",
        "product.created",
    ]
    recent = client.v1.events.list(
        params={"types": ["product.created"], "created": {"gte": 1_600_000_001}}
    )
    assert [e.data.object.id for e in recent.data] == [product.id]
    assert recent.data[0].request.idempotency_key == "p-1"
    assert event_types(client, type="product.*", created={"lte": 1_600_000_000}) == [
        "product.created"
    ]
    fetched = client.v1.events.retrieve(old["id"])
    assert fetched.api_version == PINNED_VERSION and fetched.livemode is False
    update = client.v1.events.list(params={"type": "product.updated"}).data[0]
    assert update.data.previous_attributes.active is True
    assert update.data.object.active is False
    assert (
        client.v1.events.list(params={"types": ["customer.created"]}).data[0].data.object.id
        == customer.id
    )


def test_seed_inspect_reset(fake: FakeStripe, client: stripe.StripeClient) -> None:
    product = fake.seed("product", name="Seeded", metadata={"sku": "S-1"})
    price = fake.seed("price", product=product["id"], unit_amount=1234, emit_event=True)
    assert client.v1.products.retrieve(product["id"]).metadata.sku == "S-1"
    prices = client.v1.prices.list(params={"product": product["id"], "expand": ["data.product"]})
    assert [p.id for p in prices.data] == [price["id"]]
    assert prices.data[0].product.name == "Seeded"
    assert [p["id"] for p in fake.objects("product")] == [product["id"]]
    assert fake.get("price", price["id"])["unit_amount"] == 1234
    assert event_types(client) == ["price.created"]
    client.v1.products.update(product["id"], params={"active": False})
    assert client.v1.products.list(params={"active": True}).data == []
    with pytest.raises(KeyError):
        fake.get("product", "prod_nope")

    fake.reset()
    assert fake.objects("product") == [] and fake.requests == []
    assert client.v1.accounts.retrieve_current().id == ACCOUNT  # keys survive a reset
