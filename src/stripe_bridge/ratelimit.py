"""A per-account Stripe rate budget, shared by every process: at most `limit` calls for one
account in any rolling one-second window (Stripe limits each account, and each mode apart).

`RedisRateBudget` keeps each account's window in Redis, for a deployment of several processes;
`LocalRateBudget` keeps it in this process, for the embedded default (no Redis). Both grant by
one rule, a sliding-window log: a call may go at time `t` when fewer than `limit` grants lie in
`(t - 1 s, t]`, and its grant is recorded at `t`. Grant times never go backwards (a clock that
steps back is held at the last grant), so grants are recorded in the order they are made.

Why no window `[a, a + 1 s)` ever holds `limit + 1` grants: take the last of them to be made,
at `t < a + 1 s`. The `limit` before it were made earlier, at times in `[a, t]`, all later than
`t - 1 s`, and none had left the log (only grants at or before `t - 1 s` leave it): so the log
held `limit` grants in `(t - 1 s, t]` when `t` asked, and it was refused. A contradiction.

A refused call is told when the oldest grant that blocks it leaves the window; it sleeps that
long (plus a little jitter, so waiters do not all wake at once) and asks again. Nothing here
reads settings or builds a client: the composition root constructs the budget it wants."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol

import redis

from stripe_bridge.errors import TransientError, Unreachable

WINDOW = 1.0  # seconds: Stripe counts requests per second
WINDOW_US = 1_000_000
# A call reaches Stripe a little after its grant, and not always equally late: grants that keep
# `limit` per exact second can arrive as `limit + 1` in one of Stripe's. Counting the window
# this much longer absorbs a spread of arrival delays up to it (the grants of any window of
# 1 s + margin are at most `limit`, so their arrivals within any 1 s are too), for 91 % of
# the limit. The composition root passes `window=WINDOW + ARRIVAL_MARGIN`.
ARRIVAL_MARGIN = 0.1
JITTER = 0.002  # seconds: at most this much is added, at random, to each wait
DEFAULT_LIMITS = {"live": 100, "test": 25}  # Stripe's requests per second, by mode

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class RateBudgetExhausted(TransientError):
    """No room in an account's rate budget within the caller's timeout."""

    code = "rate_budget_exhausted"


class RateBudget(Protocol):
    """Room for Stripe calls, per account, shared by whoever holds the same budget."""

    def acquire(self, account: str, limit: int, *, timeout: float | None = None) -> float:
        """Block until one more call for `account` fits `limit` per rolling second, and count
        it; answers the grant's time (seconds on the budget's clock). `timeout`: the most
        seconds to wait (None: as long as it takes; 0: only if there is room now); raises
        `RateBudgetExhausted` as soon as the next free slot lies beyond it."""
        ...


class _SlidingWindow:
    """The waiting both budgets share; a subclass answers one attempt to be granted."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        jitter: float = JITTER,
        rand: Callable[[], float] = random.random,
        window: float = WINDOW,
    ) -> None:
        self._clock, self._sleep, self._jitter, self._rand = clock, sleep, jitter, rand
        self._window = window

    def acquire(self, account: str, limit: int, *, timeout: float | None = None) -> float:
        if limit < 1:
            raise ValueError(f"a rate limit is at least 1 call per second, not {limit}")
        if not account:
            raise ValueError("a rate budget needs an account to count against")
        deadline = None if timeout is None else self._clock() + max(0.0, timeout)
        while True:
            granted, value = self._attempt(account, limit)
            if granted:
                return value
            if deadline is not None and self._clock() + value > deadline:
                raise RateBudgetExhausted(
                    f"no room for a Stripe call for {account} within {timeout} s "
                    f"({limit} per second; next in {value:.3f} s)"
                )
            self._sleep(value + self._jitter * self._rand())

    def _attempt(self, account: str, limit: int) -> tuple[bool, float]:
        """(True, the grant's time) when granted and counted, else (False, seconds until the
        oldest grant in the way leaves the window)."""
        raise NotImplementedError


class LocalRateBudget(_SlidingWindow):
    """The budget in this process (thread-safe): the embedded default, one process, no Redis.
    It keeps, per account it has seen, at most `limit` recent grant times. `clock`, `sleep`
    and `rand` are injectable, so a test can run it on a clock of its own."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        jitter: float = JITTER,
        rand: Callable[[], float] = random.random,
        window: float = WINDOW,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep, jitter=jitter, rand=rand, window=window)
        self._grants: dict[str, deque[float]] = {}
        self._lock = threading.Lock()  # held for one attempt, never while a caller sleeps

    def _attempt(self, account: str, limit: int) -> tuple[bool, float]:
        with self._lock:
            grants = self._grants.setdefault(account, deque())
            now = self._clock()
            if grants and grants[-1] > now:
                now = grants[-1]  # a clock that stepped back: hold at the last grant
            # (a nanosecond's slack: a float clock can land a hair short of the grant's expiry,
            # and a wait of 1e-17 s never moves it there)
            while grants and grants[0] <= now - self._window + 1e-9:
                grants.popleft()
            if len(grants) < limit:
                grants.append(now)
                return True, now
            return False, grants[len(grants) - limit] + self._window - now


# One account's window: a sorted set of grant times (microseconds, Redis TIME, so the clocks
# of the processes do not matter). The script runs atomically: prune, count, grant or answer
# the wait. The key expires one window after its last grant, when nothing in it counts.
_ACQUIRE = """
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local real = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now = real
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) > now then now = tonumber(last[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil((now - real + window) / 1000))
  return {1, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


class RedisRateBudget(_SlidingWindow):
    """The budget in Redis, shared by every process on it: one key per account,
    `<key_prefix>:rate:<account>`. One round trip (a Lua script) per attempt. Redis not
    answering is `Unreachable` (transient): no call goes uncounted."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        jitter: float = JITTER,
        rand: Callable[[], float] = random.random,
        window: float = WINDOW,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep, jitter=jitter, rand=rand, window=window)
        self._client = client
        self._prefix = key_prefix
        self._script = client.register_script(_ACQUIRE)
        # A grant's member in the set must be unique (an equal one would replace it, uncounted):
        # the process (which may have forked since), this budget, and a serial (`next` on a
        # count is atomic under the GIL).
        self._token = uuid.uuid4().hex[:12]
        self._serial = itertools.count()

    def key(self, account: str) -> str:
        return f"{self._prefix}:rate:{account}"

    def _attempt(self, account: str, limit: int) -> tuple[bool, float]:
        member = f"{os.getpid()}:{self._token}:{next(self._serial)}"
        try:
            window_us = round(self._window * WINDOW_US)
            granted, value = self._script(keys=[self.key(account)], args=[limit, window_us, member])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unreachable(f"the Stripe rate budget in Redis did not answer: {exc}") from exc
        return bool(granted), int(value) / WINDOW_US
