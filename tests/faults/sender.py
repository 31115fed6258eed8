"""A sender that behaves like Stripe's webhook deliveries: concurrent, and persistent.

16 deliveries in flight; a delivery answered anything but 2xx, or not answered within the
timeout (refused connection, reset, slow answer), is tried again with exponential backoff, up
to MAX_TRIES times within GIVE_UP_SECONDS; each try is signed afresh (the timestamp must stay
within the bridge's tolerance). An optional pace spreads the deliveries over a given time, so
the faults a scenario injects meanwhile land during delivery, not after it."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from stripe_bridge.inbox.door import sign

CONCURRENCY = 16
MAX_TRIES = 40
GIVE_UP_SECONDS = 180.0
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Delivery:
    path: str  # /webhooks/stripe or /veles/events
    body: bytes
    header: str  # Stripe-Signature or Veles-Signature
    secret: str


@dataclass
class Tally:
    delivered: int = 0  # deliveries finally answered 2xx
    tries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    gave_up: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def five_xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


class Sender:
    def __init__(self, base_url: str, concurrency: int = CONCURRENCY) -> None:
        self.base_url, self.concurrency = base_url, concurrency
        self.tally = Tally()
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(
                base_url=self.base_url, timeout=TIMEOUT_SECONDS
            )
            with self.tally.lock:
                self._clients.append(client)
        return client

    def deliver_all(self, deliveries: Sequence[Delivery], spread_seconds: float = 0.0) -> Tally:
        """Deliver every item (each to 2xx, or given up); with `spread_seconds`, item n is not
        started before n * spread_seconds / len(deliveries) seconds from now."""
        self._clients: list[httpx.Client] = []
        started = time.monotonic()
        step = spread_seconds / len(deliveries) if deliveries else 0.0

        def one(n_delivery: tuple[int, Delivery]) -> None:
            n, delivery = n_delivery
            wait = started + n * step - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._deliver(delivery)

        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sender") as pool:
                list(pool.map(one, enumerate(deliveries)))
        finally:
            for client in self._clients:
                client.close()
        return self.tally

    def _deliver(self, delivery: Delivery) -> None:
        deadline = time.monotonic() + GIVE_UP_SECONDS
        for attempt in range(MAX_TRIES):
            headers = {
                delivery.header: sign(delivery.body, delivery.secret, int(time.time())),
                "Content-Type": "application/json",
            }
            try:
                answer = self._client().post(delivery.path, content=delivery.body, headers=headers)
            except httpx.TransportError:
                status = None
            else:
                status = answer.status_code
            with self.tally.lock:
                self.tally.tries += 1
                if status is None:
                    self.tally.transport_errors += 1
                else:
                    self.tally.statuses[status] += 1
                if status is not None and 200 <= status < 300:
                    self.tally.delivered += 1
                    return
            pause = min(5.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        with self.tally.lock:
            self.tally.gave_up.append(delivery)
