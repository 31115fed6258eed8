"""The fake Stripe's accounts: restricted keys, platforms with connected accounts
(``Stripe-Account``), OAuth installs and tokens, and per-account rate limits, through the SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from tests.fake_stripe import FakeStripe
from tests.webhook_receiver import Receiver

KEY = "sk_test_51AccountsFakeKey00abcd"
ACCOUNT = "acct_1AccountsTest001"
PLATFORM_KEY = "sk_test_51PlatformFakeKey0wxyz"
PLATFORM = "acct_1PlatformTest001"
CONNECTED = "acct_1ConnectedTest01"
CLIENT_ID = "ca_FakeVelesApp000000000000000001"
CALLBACK = "https://veles.example/stripe/oauth/callback"
START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "enable_telemetry", False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeStripe]:
    server = FakeStripe(clock=clock)
    server.add_account(KEY, account_id=ACCOUNT)
    server.add_platform(
        PLATFORM_KEY, account_id=PLATFORM, client_id=CLIENT_ID, redirect_uris=(CALLBACK,)
    )
    with server:
        yield server


@pytest.fixture
def sdk(fake: FakeStripe) -> Iterator[Callable[[str], stripe.StripeClient]]:
    """``sdk(key)``: the SDK pointed at the fake (API and Connect addresses)."""
    opened: list[stripe.RequestsClient] = []

    def make(key: str) -> stripe.StripeClient:
        opened.append(stripe.RequestsClient(timeout=10))
        return stripe.StripeClient(
            key,
            base_addresses={"api": fake.url, "connect": fake.url},
            max_network_retries=0,
            http_client=opened[-1],
            client_id=CLIENT_ID,
        )

    yield make
    for http_client in opened:
        http_client.close()


def raw(fake: FakeStripe, path: str, key: str, body: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        fake.url + path,
        data=body.encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {key}"} if key else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def install(fake: FakeStripe, account: str = CONNECTED, state: str = "st-1") -> str:
    """The code the install's redirect carries."""
    redirect = fake.approve_install(fake.install_link(PLATFORM, state=state), account)
    query = parse_qs(urlsplit(redirect).query)
    assert redirect.startswith(CALLBACK + "?") and query["state"] == [state]
    return query["code"][0]


# ---------------------------------------------------------------- restricted keys


def test_a_restricted_key_gets_only_what_its_permissions_grant(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    fake.add_restricted_key(
        "rk_test_51ReadHooksOnly00001234",
        ACCOUNT,
        permissions={"webhook": "read", "customer": "write"},
    )
    restricted = sdk("rk_test_51ReadHooksOnly00001234")
    assert restricted.v1.webhook_endpoints.list().data == []
    assert restricted.v1.customers.create().id.startswith("cus_")

    with pytest.raises(stripe.PermissionError) as caught:
        restricted.v1.webhook_endpoints.create(
            params={"url": "https://hooks.example/h", "enabled_events": ["*"]}
        )
    assert caught.value.http_status == 403
    assert caught.value.json_body == {
        "error": {
            "type": "invalid_request_error",
            "message": "The provided key 'rk_test_" + "*" * 19 + "1234' does not have the "
            f"required permissions for this endpoint on account '{ACCOUNT}'. Having the "
            "'rak_webhook_write' permission would allow this request to continue.",
        }
    }
    for call, permission in [
        (restricted.v1.products.list, "rak_product_read"),
        (restricted.v1.accounts.retrieve_current, "rak_accounts_kyc_basic_read"),
    ]:
        with pytest.raises(stripe.PermissionError) as caught:
            call()
        assert f"'{permission}' permission" in str(caught.value.user_message)
    assert fake.objects("webhook_endpoints") == []
    with pytest.raises(ValueError):
        fake.add_restricted_key("rk_test_51Bad000000000000000", ACCOUNT, {"hooks": "read"})


# ---------------------------------------------------------------- platforms and Stripe-Account


def test_a_platform_key_acts_on_its_connected_accounts_only(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    fake.connect_account(PLATFORM, CONNECTED, display_name="Workspace One")
    platform = sdk(PLATFORM_KEY)
    on_connected = {"stripe_account": CONNECTED}
    customer = platform.v1.customers.create(params={"name": "Acme"}, options=on_connected)
    assert [c["id"] for c in fake.objects("customers", account=CONNECTED)] == [customer.id]
    assert fake.objects("customers", account=PLATFORM) == []
    assert platform.v1.accounts.retrieve_current(options=on_connected).id == CONNECTED
    [event] = platform.v1.events.list(options=on_connected).data
    assert (event.type, event.account) == ("customer.created", CONNECTED)
    assert platform.v1.accounts.retrieve_current().id == PLATFORM

    with pytest.raises(stripe.PermissionError) as caught:
        platform.v1.customers.list(options={"stripe_account": ACCOUNT})
    assert caught.value.http_status == 403
    assert caught.value.json_body["error"]["code"] == "account_invalid"
    assert caught.value.user_message == (
        f"The provided key 'sk_test_{'*' * 18}wxyz' does not have access to account '{ACCOUNT}' "
        "(or that account does not exist). Application access may have been revoked."
    )
    with pytest.raises(stripe.PermissionError):  # a key of one account reaches no other
        sdk(KEY).v1.customers.list(options={"stripe_account": CONNECTED})


def test_connected_accounts_events_reach_the_platforms_connect_endpoints(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    fake.connect_account(PLATFORM, CONNECTED)
    platform, receiver = sdk(PLATFORM_KEY), Receiver()
    try:
        connect = platform.v1.webhook_endpoints.create(
            params={"url": receiver.url + "/connect", "enabled_events": ["*"], "connect": True}
        )
        own = platform.v1.webhook_endpoints.create(
            params={"url": receiver.url + "/own", "enabled_events": ["*"]}
        )
        platform.v1.customers.create(options={"stripe_account": CONNECTED})
        platform.v1.products.create(params={"name": "Platform's own"})
        sent = {d.endpoint_id: d for d in fake.deliver_pending()}
        assert sent[connect.id].event_type == "customer.created"
        assert sent[own.id].event_type == "product.created" and len(sent) == 2
        connect_body = json.loads(sent[connect.id].body)
        assert connect_body["account"] == CONNECTED and "account" not in json.loads(
            sent[own.id].body
        )
        stripe.Webhook.construct_event(
            sent[connect.id].body, sent[connect.id].signature, connect.secret, tolerance=None
        )
    finally:
        receiver.close()


# ---------------------------------------------------------------- OAuth


def test_an_install_is_exchanged_for_tokens_that_act_as_the_account(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    code = install(fake)
    token = sdk(PLATFORM_KEY).oauth.token(params={"grant_type": "authorization_code", "code": code})
    assert set(token.to_dict()) == {
        "access_token",
        "livemode",
        "refresh_token",
        "scope",
        "stripe_publishable_key",
        "stripe_user_id",
        "token_type",
    }
    assert (token.stripe_user_id, token.scope, token.token_type) == (
        CONNECTED,
        "stripe_apps",
        "bearer",
    )
    assert token.livemode is False and token.stripe_publishable_key.startswith("pk_test_")
    as_account = sdk(token.access_token)
    assert as_account.v1.accounts.retrieve_current().id == CONNECTED
    [authorized] = as_account.v1.events.list().data
    assert authorized.type == "account.application.authorized"
    assert authorized.data.object.id == CLIENT_ID and authorized.account == CONNECTED
    assert sdk(PLATFORM_KEY).v1.customers.list(options={"stripe_account": CONNECTED}).data == []

    with pytest.raises(stripe.oauth_error.InvalidGrantError) as caught:  # single use
        sdk(PLATFORM_KEY).oauth.token(params={"grant_type": "authorization_code", "code": code})
    assert caught.value.http_status == 400
    assert "already been used" in str(caught.value.json_body["error_description"])
    with pytest.raises(stripe.AuthenticationError) as revoked:  # and its tokens are revoked
        as_account.v1.customers.list()
    assert revoked.value.json_body["error"]["code"] == "platform_api_key_expired"


def test_tokens_expire_and_refreshing_rolls_them(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient], clock: Clock
) -> None:
    body = f"grant_type=authorization_code&code={install(fake)}&client_secret={PLATFORM_KEY}"
    status, first = raw(fake, "/v1/oauth/token", "", body)  # the key as a parameter instead
    assert status == 200 and first["stripe_user_id"] == CONNECTED
    clock.now += 3599
    assert sdk(first["access_token"]).v1.customers.list().data == []
    clock.now += 1  # an hour after it was issued
    with pytest.raises(stripe.AuthenticationError) as caught:
        sdk(first["access_token"]).v1.customers.list()
    assert caught.value.json_body["error"]["code"] == "api_key_expired"

    platform = sdk(PLATFORM_KEY)
    second = platform.oauth.token(
        params={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert second.refresh_token != first["refresh_token"]
    assert sdk(second.access_token).v1.accounts.retrieve_current().id == CONNECTED
    with pytest.raises(stripe.oauth_error.InvalidGrantError) as rolled:
        platform.oauth.token(
            params={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        )
    assert rolled.value.json_body == {
        "error": "invalid_grant",
        "error_description": f"Refresh token does not exist: {first['refresh_token']}",
    }
    third = platform.oauth.token(
        params={"grant_type": "refresh_token", "refresh_token": second.refresh_token}
    )
    with pytest.raises(stripe.AuthenticationError):  # a refresh revokes earlier access tokens
        sdk(second.access_token).v1.customers.list()
    clock.now += 365 * 24 * 3600
    with pytest.raises(stripe.oauth_error.InvalidGrantError):  # a year later
        platform.oauth.token(
            params={"grant_type": "refresh_token", "refresh_token": third.refresh_token}
        )


def test_codes_are_short_lived_and_errors_are_oauths(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient], clock: Clock
) -> None:
    platform = sdk(PLATFORM_KEY)
    code = install(fake)
    clock.now += 300
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        platform.oauth.token(params={"grant_type": "authorization_code", "code": code})
    for body, error in [
        ("grant_type=password", "unsupported_grant_type"),
        ("grant_type=authorization_code", "invalid_request"),
        ("grant_type=authorization_code&code=ac_unknown", "invalid_grant"),
        ("grant_type=refresh_token&refresh_token=rt_x&scope=read_only", "invalid_scope"),
    ]:
        status, answer = raw(fake, "/v1/oauth/token", PLATFORM_KEY, body)
        assert (status, answer["error"]) == (400, error) and answer["error_description"]
    status, answer = raw(fake, "/v1/oauth/token", KEY, f"grant_type=authorization_code&code={code}")
    assert answer["error"] == "invalid_grant"  # another account's secret key: not its code

    fake.add_restricted_key("rk_test_51PlatformRestricted0001", PLATFORM, {"customer": "write"})
    fresh = install(fake)
    status, answer = raw(
        fake,
        "/v1/oauth/token",
        "rk_test_51PlatformRestricted0001",
        f"grant_type=authorization_code&code={fresh}",
    )
    assert status == 403 and answer["error"]["type"] == "invalid_request_error"


def test_an_install_link_is_checked_and_may_be_denied(fake: FakeStripe) -> None:
    denied = fake.approve_install(fake.install_link(PLATFORM, state="s"), CONNECTED, approve=False)
    assert parse_qs(urlsplit(denied).query) == {
        "error": ["access_denied"],
        "error_description": ["The user denied your request"],
        "state": ["s"],
    }
    with pytest.raises(ValueError):
        fake.approve_install(fake.install_link(PLATFORM, redirect_uri="https://evil.example/cb"))
    with pytest.raises(ValueError):
        fake.approve_install("https://marketplace.stripe.com/oauth/v2/authorize?client_id=ca_no")
    new = fake.approve_install(fake.install_link(PLATFORM))  # a new account, no state
    assert set(parse_qs(urlsplit(new).query)) == {"code"}


def test_deauthorizing_disconnects_the_account_and_tells_the_platform(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    platform = sdk(PLATFORM_KEY)
    hook = platform.v1.webhook_endpoints.create(
        params={
            "url": "http://127.0.0.1:9/connect",
            "enabled_events": ["account.application.deauthorized"],
            "connect": True,
        }
    )
    token = platform.oauth.token(params={"grant_type": "authorization_code", "code": install(fake)})
    answer = platform.oauth.deauthorize(params={"stripe_user_id": CONNECTED})
    assert answer.to_dict() == {"stripe_user_id": CONNECTED}
    with pytest.raises(stripe.AuthenticationError):
        sdk(token.access_token).v1.customers.list()
    with pytest.raises(stripe.PermissionError):
        platform.v1.customers.list(options={"stripe_account": CONNECTED})
    with pytest.raises(stripe.oauth_error.InvalidClientError):
        platform.oauth.deauthorize(params={"stripe_user_id": CONNECTED})
    [attempt] = fake.deliver_pending()  # unreachable, but addressed to the connect endpoint
    assert (attempt.endpoint_id, attempt.event_type) == (
        hook.id,
        "account.application.deauthorized",
    )


# ---------------------------------------------------------------- rate limits


def test_a_rate_limit_refuses_the_excess_of_one_account_only(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient], clock: Clock
) -> None:
    fake.set_rate_limit(ACCOUNT, 3)
    limited, other = sdk(KEY), sdk(PLATFORM_KEY)
    for _ in range(3):
        limited.v1.customers.list()
    with pytest.raises(stripe.RateLimitError) as caught:
        limited.v1.customers.create()
    assert caught.value.http_status == 429 and caught.value.json_body == {
        "error": {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
            "message": "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
        }
    }
    assert "Retry-After" not in (caught.value.headers or {})
    for _ in range(10):
        other.v1.customers.list()
    clock.now += 0.999
    with pytest.raises(stripe.RateLimitError):
        limited.v1.customers.list()
    clock.now += 0.001  # the first three are a second old now
    limited.v1.customers.list()
    assert fake.rate_limit_refusals(ACCOUNT) == 2 and fake.rate_limit_refusals(PLATFORM) == 0
    assert fake.objects("customers", account=ACCOUNT) == []  # a refused request did nothing
    assert [r.status for r in fake.requests if r.account == ACCOUNT].count(429) == 2


def test_a_connected_accounts_limit_counts_the_platforms_requests_for_it(
    fake: FakeStripe, sdk: Callable[[str], stripe.StripeClient]
) -> None:
    fake.connect_account(PLATFORM, CONNECTED)
    fake.set_rate_limit(CONNECTED, 1)
    platform = sdk(PLATFORM_KEY)
    platform.v1.customers.list(options={"stripe_account": CONNECTED})
    with pytest.raises(stripe.RateLimitError):
        platform.v1.customers.list(options={"stripe_account": CONNECTED})
    platform.v1.customers.list()  # the platform's own account is not limited
    assert fake.rate_limit_refusals(CONNECTED) == 1
