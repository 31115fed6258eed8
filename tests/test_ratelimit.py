"""The per-account Stripe rate budget: never more than the limit in any one-second window, for
threads and for processes sharing Redis; close to the limit, not below it; one account's
queue never slows another; a timeout raises; Redis keeps nothing once the window has passed.

Grant times are the budget's own (Redis TIME, or the local clock): a time taken after
`acquire` returns would add the caller's scheduling delays to what is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from stripe_bridge.errors import Unreachable
from stripe_bridge.ratelimit import (
    WINDOW,
    LocalRateBudget,
    RateBudget,
    RateBudgetExhausted,
    RedisRateBudget,
)
from tests.rate_child import run_threads
from tests.support import REDIS_URL, ROOT, free_port, wait_until

LIMIT = 40
RUN_SECONDS = 2.05  # two whole windows from the first grant, and a little
EPSILON = 1e-7  # below Redis TIME's microsecond: a real excess is at least 1 µs longer


def most_in_one_window(grants: list[float]) -> int:
    """The most grants in any window [t, t + 1 s)."""
    times = sorted(grants)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= WINDOW - EPSILON:
            start += 1
        most = max(most, end - start + 1)
    return most


def per_window(grants: list[float], windows: int) -> list[int]:
    """Grants in each of the first whole windows from the first grant."""
    first = min(grants)
    return [
        sum(1 for at in grants if first + k * WINDOW <= at < first + (k + 1) * WINDOW)
        for k in range(windows)
    ]


class FakeTime:
    """A clock that moves only when the budget sleeps, by what it sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class GatedSleep:
    """A sleep that holds each sleeper until the test opens the gate, then sleeps for real
    (`then`): the test knows who is waiting, and acts while they are."""

    def __init__(self, then: Callable[[float], None]) -> None:
        self.then = then
        self.sleepers = 0
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.sleepers += 1
        self.gate.wait(timeout=10)
        self.then(seconds)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_namespace: str) -> str:
    """This test's own keys, inside the run's namespace (emptied at the end of the run)."""
    return f"{redis_namespace}:{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["redis", "local"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- at most the limit, and close to it --------------------------------------------------------


@pytest.mark.slow
def test_processes_and_threads_on_redis_never_exceed_the_limit_and_get_close_to_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given two processes of three threads each, and three threads here, on one account
    account = "acct_1Shared:test"
    argv = [REDIS_URL, key_prefix, account, str(LIMIT), str(RUN_SECONDS), "3"]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.rate_child", *argv],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    budget = RedisRateBudget(redis_client, key_prefix)

    # When all of them acquire as fast as they may for two seconds
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    here = run_threads(budget, account, LIMIT, RUN_SECONDS, 3)
    theirs = [json.loads(child.communicate(timeout=30)[0]) for child in children]

    # Then no window held more than the limit, each whole window nearly all of it, and every
    # process had a share
    assert [child.returncode for child in children] == [0, 0]
    assert here and all(theirs)
    grants = here + [at for some in theirs for at in some]
    assert most_in_one_window(grants) <= LIMIT
    assert min(per_window(grants, 2)) >= 0.85 * LIMIT, per_window(grants, 2)


def test_threads_on_the_local_budget_never_exceed_the_limit_and_get_close_to_it() -> None:
    grants = run_threads(LocalRateBudget(), "acct_1Local:test", LIMIT, RUN_SECONDS, 6)
    assert most_in_one_window(grants) <= LIMIT
    assert min(per_window(grants, 2)) >= 0.85 * LIMIT, per_window(grants, 2)


def test_the_window_check_finds_an_excess_when_there_is_one() -> None:
    assert most_in_one_window([0.0, 0.5, 0.9999]) == 3
    assert most_in_one_window([0.0, 0.5, 1.0, 1.2]) == 3
    assert most_in_one_window([0.0, 1.0, 2.0]) == 1


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=5),
    pauses=st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=30),
)
def test_every_call_is_granted_at_the_earliest_time_the_limit_allows(
    limit: int, pauses: list[float]
) -> None:
    # Given a caller that asks, pauses, asks again, on a clock of the test's own
    fake = FakeTime()
    budget = LocalRateBudget(clock=fake.clock, sleep=fake.sleep, jitter=0.0)
    grants: list[float] = []
    for pause in pauses:
        fake.now += pause
        asked = fake.now
        # When it asks
        grants.append(budget.acquire("acct_1A:test", limit))
        # Then it goes at once while there is room, else when the grant `limit` back leaves
        earliest = asked if len(grants) <= limit else max(asked, grants[-limit - 1] + WINDOW)
        assert grants[-1] == pytest.approx(earliest, abs=1e-9)
    assert most_in_one_window(grants) <= limit


def test_a_refused_call_waits_until_the_oldest_grant_in_its_way_leaves_the_window() -> None:
    # Given a limit of 2, granted at 1000.0 and 1000.4
    fake = FakeTime()
    budget = LocalRateBudget(clock=fake.clock, sleep=fake.sleep, jitter=0.0)
    assert budget.acquire("acct_1A:test", 2) == 1000.0
    fake.now = 1000.4
    assert budget.acquire("acct_1A:test", 2) == 1000.4

    # When two more are asked for, then Then each waits for one of those to leave, exactly
    assert budget.acquire("acct_1A:test", 2) == pytest.approx(1001.0)
    assert budget.acquire("acct_1A:test", 2) == pytest.approx(1001.4)
    assert fake.sleeps == [pytest.approx(0.6), pytest.approx(0.4)]


def test_each_wait_has_a_little_jitter_added() -> None:
    fake = FakeTime()
    budget = LocalRateBudget(clock=fake.clock, sleep=fake.sleep, jitter=0.01, rand=lambda: 0.5)
    budget.acquire("acct_1A:test", 1)
    budget.acquire("acct_1A:test", 1)
    assert fake.sleeps == [pytest.approx(1.005)]


def test_a_clock_that_steps_back_is_held_at_the_last_grant() -> None:
    fake = FakeTime()
    budget = LocalRateBudget(clock=fake.clock, sleep=fake.sleep, jitter=0.0)
    budget.acquire("acct_1A:test", 2)
    fake.now = 999.5
    assert budget.acquire("acct_1A:test", 2) == 1000.0


# --- one account never slows another -----------------------------------------------------------


def test_an_account_at_its_limit_does_not_slow_another(
    kind: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given account A at its limit, with two callers waiting for room
    fake = FakeTime()
    sleep = GatedSleep(time.sleep if kind == "redis" else fake.sleep)
    budget: RateBudget = (
        RedisRateBudget(redis_client, key_prefix, sleep=sleep)
        if kind == "redis"
        else LocalRateBudget(clock=fake.clock, sleep=sleep)
    )
    first = budget.acquire("acct_1A:live", 5)
    for _ in range(4):
        budget.acquire("acct_1A:live", 5, timeout=0)
    waited: list[float] = []
    waiters = [
        threading.Thread(target=lambda: waited.append(budget.acquire("acct_1A:live", 5)))
        for _ in range(2)
    ]
    for waiter in waiters:
        waiter.start()
    assert wait_until(lambda: sleep.sleepers == 2)

    # When account B asks for its whole limit while they wait
    # Then it gets every call at once (a timeout of 0 refuses any wait)
    for _ in range(5):
        budget.acquire("acct_1B:live", 5, timeout=0)
    with pytest.raises(RateBudgetExhausted):
        budget.acquire("acct_1B:live", 5, timeout=0)

    # And A's callers get theirs once A's first grants leave the window
    sleep.gate.set()
    for waiter in waiters:
        waiter.join(timeout=10)
    assert len(waited) == 2
    assert min(waited) >= first + WINDOW - 1e-6


# --- timeouts, bad arguments, Redis away -------------------------------------------------------


def test_a_timeout_shorter_than_the_wait_raises_without_sleeping(
    kind: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    fake = FakeTime()
    budget: RateBudget = (
        RedisRateBudget(redis_client, key_prefix, sleep=fake.sleep)
        if kind == "redis"
        else LocalRateBudget(clock=fake.clock, sleep=fake.sleep)
    )
    for _ in range(3):
        budget.acquire("acct_1A:test", 3, timeout=0)
    with pytest.raises(RateBudgetExhausted, match=r"acct_1A:test within 0.5 s \(3 per second"):
        budget.acquire("acct_1A:test", 3, timeout=0.5)
    assert fake.sleeps == []


def test_a_timeout_long_enough_waits_and_is_granted() -> None:
    fake = FakeTime()
    budget = LocalRateBudget(clock=fake.clock, sleep=fake.sleep, jitter=0.0)
    budget.acquire("acct_1A:test", 1)
    assert budget.acquire("acct_1A:test", 1, timeout=1.0) == 1001.0


def test_a_limit_below_one_or_no_account_is_refused() -> None:
    budget = LocalRateBudget()
    with pytest.raises(ValueError, match="at least 1"):
        budget.acquire("acct_1A:test", 0)
    with pytest.raises(ValueError, match="needs an account"):
        budget.acquire("", 10)


def test_redis_not_answering_is_unreachable() -> None:
    client = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # refused at once
    with pytest.raises(Unreachable, match="rate budget"):
        RedisRateBudget(client, "nowhere").acquire("acct_1A:test", 10)
    client.close()


# --- Redis keeps nothing for long --------------------------------------------------------------


def test_redis_keys_expire_one_window_after_their_last_grant(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    budget = RedisRateBudget(redis_client, key_prefix)
    for account in ("acct_1A:test", "acct_1B:live"):
        budget.acquire(account, 10)
    keys = list(redis_client.scan_iter(f"{key_prefix}:*"))
    assert sorted(keys) == [
        b"%s:rate:acct_1A:test" % key_prefix.encode(),
        b"%s:rate:acct_1B:live" % key_prefix.encode(),
    ]
    assert all(0 < redis_client.pttl(key) <= 1000 for key in keys)
    assert wait_until(lambda: not list(redis_client.scan_iter(f"{key_prefix}:*")), 3)
