"""Delivering events to webhook endpoints, signed as Stripe signs them.

When an event is emitted (``Store.emit``), every enabled endpoint subscribed to its type (or to
``*``) is queued for it: the account's own endpoints that are not ``connect``, and, for an
account connected to platforms, each platform's ``connect`` endpoints. ``pending_webhooks``
counts them and falls by one at each endpoint's first 2xx. Nothing is sent until
``Deliverer.deliver_pending()`` runs (``FakeStripe.deliver_pending()``, or after each request
when ``FakeStripe.deliver_webhooks`` is set), so tests decide when deliveries happen.

A delivery is one POST of the event's JSON with ``Stripe-Signature: t={timestamp},v1={hex}``,
the HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the endpoint's secret
(docs.stripe.com/webhooks#verify-manually; stripe-python's ``WebhookSignature``); the timestamp
is the fake's clock. Only a 2xx answer is a success; a redirect is a failure, as Stripe counts
it (docs.stripe.com/webhooks, "Fix HTTP status codes"). Every attempt is kept as a
``Delivery``. Deviations: Stripe retries failed deliveries on its own (three days in live mode,
three times over a few hours in a sandbox); the fake never does, ``resend()`` sends again. Test
mode deliveries carry no ``v0`` signature here. The body is the pinned version's shape whatever
the endpoint's ``api_version``: only the ``api_version`` field says the endpoint's version
(``null`` on the endpoint: the account's default, the pin).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fake_stripe.records import API_VERSION, Account, Obj, visible

if TYPE_CHECKING:
    from tests.fake_stripe.context import Store

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"  # as deliveries are seen to carry


@dataclass(frozen=True)
class Pending:
    """An event queued for one endpoint: ids, looked up again when it is sent."""

    event: str
    source: str  # the account the event happened on
    owner: str  # the account holding the endpoint (the platform's, for a connect endpoint)
    endpoint: str


@dataclass
class Delivery:
    """One delivery attempt as the fake made it; ``status`` is None when no answer came."""

    event_id: str
    event_type: str
    endpoint_id: str
    account: str  # the account holding the endpoint
    event_account: str  # the account the event happened on
    url: str
    timestamp: int
    signature: str  # the Stripe-Signature header sent
    body: str
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def subscribers(
    accounts: Mapping[str, Account], acct: Account, event_type: str
) -> list[tuple[Account, Obj]]:
    """The (owner, endpoint) pairs an event of ``acct`` goes to."""
    candidates = [(acct, e) for e in _endpoints(acct) if not e["_connect"]]
    for platform_id in sorted(acct.platforms):
        platform = accounts.get(platform_id)
        if platform is not None:
            candidates += [(platform, e) for e in _endpoints(platform) if e["_connect"]]
    return [
        (owner, e)
        for owner, e in candidates
        if e["status"] == "enabled"
        and ("*" in e["enabled_events"] or event_type in e["enabled_events"])
    ]


def _endpoints(acct: Account) -> list[Obj]:
    return [e for i, e in acct.objects["webhook_endpoint"].items() if i not in acct.deleted]


def signature(secret: str, timestamp: int, body: str) -> str:
    payload = f"{timestamp}.{body}".encode()
    return f"t={timestamp},v1={hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status: a failed delivery


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)


def post(url: str, body: str, signed: str, timeout: float) -> tuple[int | None, str | None]:
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signed,
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read()
            return answer.status, None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, None
    except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out
        return None, str(getattr(error, "reason", error))


class Deliverer:
    """Sends what ``Store.emit`` queued; keeps every attempt. The fake's lock guards the store,
    never a POST: an endpoint may call the fake back while it answers."""

    def __init__(self, lock: threading.RLock, store: Store, clock: Callable[[], float]) -> None:
        self.lock, self.store, self.clock = lock, store, clock
        self.timeout = 10.0
        self.log: list[Delivery] = []
        self._succeeded: set[tuple[str, str]] = set()
        self._threads: list[threading.Thread] = []

    def deliver_pending(self) -> list[Delivery]:
        with self.lock:
            batch, self.store.outbox = self.store.outbox, []
            prepared = [d for d in (self._prepare(p) for p in batch) if d is not None]
        return [self._send(d) for d in prepared]

    def resend(self, event_id: str, endpoint_id: str | None = None) -> list[Delivery]:
        """Send a stored event again: to one endpoint, or to every current subscriber."""
        with self.lock:
            found = [a for a in self.store.accounts.values() if event_id in a.objects["event"]]
            if not found:
                raise KeyError(event_id)
            source = found[0]
            event = source.objects["event"][event_id]
            targets = subscribers(self.store.accounts, source, event["type"])
            if endpoint_id is not None:
                targets = [
                    (owner, e)
                    for owner in self.store.accounts.values()
                    for i, e in owner.objects["webhook_endpoint"].items()
                    if i == endpoint_id and i not in owner.deleted
                ]
                if not targets:
                    raise KeyError(endpoint_id)
            pending = [Pending(event_id, source.id, o.id, e["id"]) for o, e in targets]
            prepared = [d for d in (self._prepare(p) for p in pending) if d is not None]
        return [self._send(d) for d in prepared]

    def deliver_in_background(self) -> None:
        thread = threading.Thread(target=self.deliver_pending, name="fake-stripe-webhooks")
        thread.daemon = True
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self, timeout: float = 10.0) -> None:
        """Let background deliveries finish (those started so far)."""
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def clear(self) -> None:
        self.log.clear()
        self._succeeded.clear()

    def _prepare(self, pending: Pending) -> Delivery | None:
        accounts = self.store.accounts
        source, owner = accounts.get(pending.source), accounts.get(pending.owner)
        if source is None or owner is None:
            return None
        event = source.objects["event"].get(pending.event)
        endpoint = owner.objects["webhook_endpoint"].get(pending.endpoint)
        if event is None or endpoint is None or pending.endpoint in owner.deleted:
            return None  # deleted meanwhile (or forgotten by reset): Stripe drops it too
        if endpoint["status"] != "enabled":
            return None
        body = visible(event)
        body["api_version"] = endpoint["api_version"] or API_VERSION
        text = json.dumps(body, indent=2)
        timestamp = int(self.clock())
        return Delivery(
            event["id"],
            event["type"],
            endpoint["id"],
            owner.id,
            source.id,
            endpoint["url"],
            timestamp,
            signature(endpoint["_secret"], timestamp, text),
            text,
        )

    def _send(self, delivery: Delivery) -> Delivery:
        delivery.status, delivery.error = post(
            delivery.url, delivery.body, delivery.signature, self.timeout
        )
        with self.lock:
            self.log.append(delivery)
            pair = (delivery.event_id, delivery.endpoint_id)
            if delivery.ok and pair not in self._succeeded:
                self._succeeded.add(pair)
                source = self.store.accounts.get(delivery.event_account)
                event = source.objects["event"].get(delivery.event_id) if source else None
                if event is not None and event["pending_webhooks"] > 0:
                    event["pending_webhooks"] -= 1
        return delivery
