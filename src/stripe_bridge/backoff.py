"""The one backoff: exponential, capped, with jitter (Stripe calls and the outbox relay)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Retry `n` (from 1) waits a random share of `base · 2^(n-1)`, capped at `cap`: at least
    `floor` of it (0: full jitter, which spreads a herd of retries the most)."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.0
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** (max(1, attempt) - 1))
        return float(ceiling * (self.floor + (1.0 - self.floor) * self.rand()))
