"""The cost of one uncontended `acquire` of the Stripe rate budget, next to a Redis PING (the
round trip it cannot be cheaper than) and the in-process budget.

    .venv/bin/python -m benchmarks.ratelimit_acquire [--calls 5000] [--rounds 5]

Uncontended: one thread, and an account never at its limit (each account takes `limit` calls,
then the next account), so no call waits. `limit` is 100 (Stripe's live limit: each account's
set holds up to 100 grants) or 1,000,000 on one account (its set holds every grant of the last
second: the worst case for the set's size). Prints the median of the rounds, µs per call. Only
talks to the local Redis (127.0.0.1:6379 or BRIDGE_TEST_REDIS_URL); its keys, under
`sb-bench-rate-<random>`, are deleted at the end."""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import redis

from stripe_bridge.ratelimit import LocalRateBudget, RateBudget, RedisRateBudget

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def per_call(calls: int, rounds: int, one: Callable[[int], object]) -> float:
    """Median over `rounds` of µs per call of `one(i)`, i = 0 … calls - 1."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(calls):
            one(i)
        results.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(results)


def acquiring(budget: RateBudget, limit: int) -> Callable[[int], object]:
    serial = iter(range(10**12))

    def one(i: int) -> object:
        return budget.acquire(f"acct_{next(serial) // limit}:live", limit, timeout=0)

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"sb-bench-rate-{uuid.uuid4().hex[:8]}"
    try:
        cases: dict[str, Callable[[int], object]] = {
            "redis PING": lambda _i: client.ping(),
            "RedisRateBudget.acquire, limit 100": acquiring(RedisRateBudget(client, prefix), 100),
            "RedisRateBudget.acquire, limit 10^6, one account": acquiring(
                RedisRateBudget(client, prefix), 10**6
            ),
            "LocalRateBudget.acquire, limit 100": acquiring(LocalRateBudget(), 100),
        }
        for name, one in cases.items():
            print(f"{name:<50} {per_call(args.calls, args.rounds, one):8.1f} µs/call")
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
