"""The bridge's Stripe calls draw on each account's rate budget (BRIDGE_STRIPE_RATE_LIMIT), in
Redis, shared by every process: together they never go over the account's limit, and one
account at its limit never holds back another's calls. The fake Stripe enforces the same limit
and counts what it would have refused with a 429."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.sync import run_sync
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_KEY,
    TEST_KEY,
    own_bridge,
)

LIMIT = 8
OTHER_ACCOUNT = "acct_1SomeoneElse00"


@pytest.fixture
def processes(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[list[Context]]:
    """Two bridges on one Redis, as two processes of one deployment would be; `default` is
    connected before the limits apply (a first connect's check of the key cannot know the
    account it will draw on: it has a budget of its own)."""
    settings = {"STRIPE_API_BASE": fake_stripe.url, "BRIDGE_STRIPE_RATE_LIMIT": str(LIMIT)}
    with (
        own_bridge(database_url, redis_namespace, **settings) as one,
        own_bridge(database_url, redis_namespace, **settings) as two,
    ):
        with one.session_factory.begin() as session:
            connection.connect(session, one.box, one.gateway, "default", TEST_KEY)
        fake_stripe.set_rate_limit(ACCOUNT_ID, LIMIT)
        fake_stripe.set_rate_limit(OTHER_ACCOUNT, LIMIT)
        yield [one, two]


def calls(bridge: Context, api_key: str, account: str, count: int) -> threading.Thread:
    gateway = bridge.gateway(api_key, account=account)
    thread = threading.Thread(target=lambda: [gateway.retrieve_account() for _ in range(count)])
    thread.start()
    return thread


def test_every_process_together_stays_within_the_accounts_limit(
    processes: list[Context], fake_stripe: FakeStripe
) -> None:
    before = len(fake_stripe.requests)
    threads = [calls(bridge, TEST_KEY, ACCOUNT_ID, 10) for bridge in processes for _ in range(2)]
    for thread in threads:
        thread.join(30)

    made = [r for r in fake_stripe.requests[before:] if r.path == "/v1/account"]
    assert len(made) == 40  # none retried after a 429
    assert fake_stripe.rate_limit_refusals(ACCOUNT_ID) == 0  # 40 calls, never 9 in one second


def test_one_account_at_its_limit_does_not_hold_back_another(
    processes: list[Context], fake_stripe: FakeStripe
) -> None:
    busy = [calls(bridge, TEST_KEY, ACCOUNT_ID, 12) for bridge in processes]  # 3 s of calls

    quiet = calls(processes[0], OTHER_ACCOUNT_KEY, OTHER_ACCOUNT, LIMIT)
    quiet.join(30)

    assert any(thread.is_alive() for thread in busy)  # still waiting on the busy account
    for thread in busy:
        thread.join(30)
    assert fake_stripe.rate_limit_refusals(ACCOUNT_ID) == 0
    assert fake_stripe.rate_limit_refusals(OTHER_ACCOUNT) == 0


def test_a_sync_keeps_to_the_budget_too(processes: list[Context], fake_stripe: FakeStripe) -> None:

    bridge = processes[0]
    for n in range(950):
        fake_stripe.seed("customer", account=ACCOUNT_ID, name=f"Customer {n}")
    busy = calls(processes[1], TEST_KEY, ACCOUNT_ID, 12)  # another process shares the budget

    result = run_sync(bridge, "default", "customers")
    busy.join(30)

    assert result.seen == 950
    assert fake_stripe.rate_limit_refusals(ACCOUNT_ID) == 0
