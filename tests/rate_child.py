"""Threads acquiring from a rate budget as fast as it allows (tests/test_ratelimit.py), and the
same from a process of its own: it imports only the budget, so it starts in a blink.

    python -m tests.rate_child REDIS_URL KEY_PREFIX ACCOUNT LIMIT SECONDS THREADS

prints `ready` once connected, starts on a line from stdin, and prints its grant times (Redis
TIME, seconds) as one JSON list."""

from __future__ import annotations

import json
import sys
import threading
import time

import redis

from stripe_bridge.ratelimit import RateBudget, RateBudgetExhausted, RedisRateBudget


def acquire_for(
    budget: RateBudget, account: str, limit: int, seconds: float, grants: list[float]
) -> None:
    """Acquire for `account` until `seconds` have passed, appending each grant's time (a
    list's append is atomic: threads may share `grants`)."""
    stop = time.monotonic() + seconds
    while (left := stop - time.monotonic()) > 0:
        try:
            grants.append(budget.acquire(account, limit, timeout=left))
        except RateBudgetExhausted:
            return


def run_threads(
    budget: RateBudget, account: str, limit: int, seconds: float, threads: int
) -> list[float]:
    grants: list[float] = []
    workers = [
        threading.Thread(target=acquire_for, args=(budget, account, limit, seconds, grants))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return grants


def main(argv: list[str]) -> None:
    url, prefix, account, limit, seconds, threads = argv
    client = redis.Redis.from_url(url)
    budget = RedisRateBudget(client, prefix)
    budget.acquire("warm-up", 1)  # connected, and the script loaded
    print("ready", flush=True)
    sys.stdin.readline()
    grants = run_threads(budget, account, int(limit), float(seconds), int(threads))
    print(json.dumps(grants), flush=True)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1:])
