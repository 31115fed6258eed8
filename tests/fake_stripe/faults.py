"""Injected failures: error answers, dropped answers and delays, matched per request.

A fault is taken before the request touches any state, so a failed request changes nothing;
a dropped one runs, then its connection is closed unanswered (the lost-response case).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fake_stripe.params import ApiError
from tests.fake_stripe.records import RequestRecord

_FAULT_BODIES = {
    429: (
        "invalid_request_error",
        "rate_limit",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
    ),
    409: (
        "invalid_request_error",
        "lock_timeout",
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it.",
    ),
}


@dataclass
class Fault:
    """An injected failure (or a dropped answer) for the requests it matches."""

    status: int
    remaining: int | None  # None: a rule that stays until reset_faults()
    path: str | None = None
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    predicate: Callable[[RequestRecord], bool] | None = None
    drop: bool = False

    def matches(self, record: RequestRecord) -> bool:
        return (
            (self.path is None or fnmatch.fnmatchcase(record.path, self.path))
            and (self.method is None or self.method.upper() == record.method)
            and (self.predicate is None or self.predicate(record))
        )


def rate_limit_error() -> ApiError:
    """Stripe's 429 for too many requests, without a ``Retry-After`` header: the rate-limit
    guide (docs.stripe.com/rate-limits) documents none, only backing off."""
    return fault_error(Fault(429, 1))


def fault_error(fault: Fault) -> ApiError:
    kind, code, message = _FAULT_BODIES.get(
        fault.status,
        (
            "api_error",
            None,
            "An unknown error occurred"
            if fault.status < 502
            else "The server is temporarily unavailable. Please retry.",
        ),
    )
    return ApiError(
        fault.status, message, kind=kind, code=code, stored=False, headers=fault.headers
    )


class Faults:
    """The fault rules and delays in force (the caller holds the fake's lock)."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []
        self.delays: dict[str | None, float] = {}
        self.delay_rules: list[tuple[Callable[[RequestRecord], bool], float]] = []

    def delays_for(self, record: RequestRecord) -> list[float]:
        delays = [
            s for p, s in self.delays.items() if p is None or fnmatch.fnmatchcase(record.path, p)
        ]
        return delays + [s for predicate, s in self.delay_rules if predicate(record)]

    def take(self, record: RequestRecord) -> Fault | None:
        """The first rule matching ``record``, counted down (and gone when used up)."""
        for fault in self.rules:
            if fault.matches(record):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.rules.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self.rules.clear()
        self.delays.clear()
        self.delay_rules.clear()
