"""Per-account rate limits: at most N requests in any rolling second, the rest answered 429.

Stripe limits requests per account and per second (docs.stripe.com/rate-limits: 25 reads and
25 writes per second in test mode, 100 and 100 in live mode) and answers the excess 429
``rate_limit``. The fake limits only the accounts a test names, all methods together, and
counts a request against the account it acts on (the connected account, for a platform's
request with ``Stripe-Account``). Refused requests do not use up the window; their number is
kept so that a test can assert that nobody went over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from tests.fake_stripe.faults import rate_limit_error
from tests.fake_stripe.records import RequestRecord

WINDOW = 1.0


class RateLimits:
    """Limits by account id; the caller holds the fake's lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.per_second: dict[str, int] = {}
        self.admitted: dict[str, deque[float]] = {}
        self.refused: dict[str, int] = {}

    def set(self, account_id: str, per_second: int | None) -> None:
        if per_second is None:
            self.per_second.pop(account_id, None)
            return
        if per_second < 1:
            raise ValueError("per_second must be at least 1 (None removes the limit)")
        self.per_second[account_id] = per_second

    def admit(self, record: RequestRecord) -> None:
        """Count ``record`` against its account's window, or refuse it with Stripe's 429."""
        account = record.account
        limit = self.per_second.get(account or "")
        if account is None or limit is None:
            return
        now = self.clock()
        window = self.admitted.setdefault(account, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= limit:
            self.refused[account] = self.refused.get(account, 0) + 1
            raise rate_limit_error()
        window.append(now)

    def clear(self) -> None:
        self.per_second.clear()
        self.admitted.clear()
        self.refused.clear()
