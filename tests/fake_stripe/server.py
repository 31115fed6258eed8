"""FakeStripe, the core: HTTP server, faults, idempotency, routing, seeding.

A request is parsed into a ``RequestRecord``, authenticated (``keys``), counted against its
account's rate limit (``limits``), held to a restricted key's permissions, delayed or failed by
the faults in force, then executed under the fake's lock: by ``oauth`` for the OAuth paths,
else by ``routing.execute`` (idempotency, the route's handler, rollback on error). The events it
emitted are then delivered to webhook endpoints when ``deliver_webhooks`` is set. The set-up
helpers for accounts, platforms, OAuth, rate limits and deliveries are ``tenants.Tenants``'.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fake_stripe import oauth
from tests.fake_stripe.context import Store
from tests.fake_stripe.faults import Fault, Faults, fault_error
from tests.fake_stripe.keys import Keyring
from tests.fake_stripe.limits import RateLimits
from tests.fake_stripe.params import ApiError, decode_params
from tests.fake_stripe.records import (
    API_VERSION,
    IDEMPOTENT_METHODS,
    KINDS,
    Obj,
    RequestRecord,
    event_name,
    kind_name,
    list_object,
    new_id,
    visible,
)
from tests.fake_stripe.routing import execute
from tests.fake_stripe.shapes import SKELETONS
from tests.fake_stripe.tenants import Tenants
from tests.fake_stripe.transport import make_handler
from tests.fake_stripe.webhooks import Deliverer


class FakeStripe(Tenants):
    """A stateful Stripe v1 API on 127.0.0.1; see the package docstring for what it models.

    ``clock`` (seconds since the epoch) dates objects and events, ages idempotency keys, OAuth
    codes and tokens, times rate-limit windows and signs webhook deliveries.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.deliver_webhooks = False  # deliver each request's events when it has been answered
        self._lock = threading.RLock()
        self._keys = Keyring(lambda: int(self.clock()))
        self._store = Store(lambda: self.clock(), self._keys.accounts)
        self._limits = RateLimits(lambda: self.clock())
        self._deliverer = Deliverer(self._lock, self._store, lambda: self.clock())
        self._requests: list[RequestRecord] = []
        self._faults = Faults()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind 127.0.0.1 on a free port, serve from a daemon thread, return the base URL."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-stripe",
                daemon=True,
            )
            self._thread.start()
            self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeStripe:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ faults

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        path: str | None = None,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next ``count`` matching requests fail with ``status`` before touching any state.

        ``path`` is an exact path or an fnmatch pattern (``/v1/customers*``).
        """
        with self._lock:
            self._faults.rules.append(Fault(status, count, path, method, dict(headers or {})))

    def fail_when(
        self,
        predicate: Callable[[RequestRecord], bool],
        status: int = 500,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Every request for which ``predicate(record)`` holds fails, until reset_faults()."""
        with self._lock:
            self._faults.rules.append(
                Fault(status, None, headers=dict(headers or {}), predicate=predicate)
            )

    def drop_next(self, count: int = 1, path: str | None = None, method: str | None = None) -> None:
        """Run the next ``count`` matching requests, then close the connection unanswered
        (the lost-response case: the state changed and the idempotency key holds the result)."""
        with self._lock:
            self._faults.rules.append(Fault(0, count, path, method, drop=True))

    def set_delay(self, seconds: float, path: str | None = None) -> None:
        """Answer requests (matching ``path``, exact or fnmatch) ``seconds`` later; 0 removes."""
        with self._lock:
            if seconds > 0:
                self._faults.delays[path] = seconds
            else:
                self._faults.delays.pop(path, None)

    def delay_when(self, predicate: Callable[[RequestRecord], bool], seconds: float) -> None:
        """Answer every request for which ``predicate(record)`` holds ``seconds`` later (then
        execute it as usual: a client that gave up meanwhile has lost a response whose effect
        happened), until reset_faults(). The predicate runs once per request, before faults."""
        with self._lock:
            self._faults.delay_rules.append((predicate, seconds))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------ inspection and seeding

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def objects(self, kind: str, account: str | None = None) -> list[Obj]:
        """Copies of the live objects of ``kind`` (oldest first), of one account or all."""
        kind = kind_name(kind)
        with self._lock:
            found = [
                obj
                for acct in self._keys.accounts.values()
                if account is None or acct.id == account
                for oid, obj in acct.objects[kind].items()
                if oid not in acct.deleted
            ]
            return [visible(o) for o in sorted(found, key=lambda o: self._store.order[o["id"]])]

    def get(self, kind: str, object_id: str) -> Obj:
        """A copy of one object (a deleted customer gives its ``deleted`` stub); KeyError."""
        kind = kind_name(kind)
        with self._lock:
            for acct in self._keys.accounts.values():
                if object_id in acct.objects[kind]:
                    return self._store.public(acct, kind, object_id)
        raise KeyError(object_id)

    def seed(
        self, kind: str, *, account: str | None = None, emit_event: bool = False, **fields: Any
    ) -> Obj:
        """Store an object directly (no request, no validation); ``fields`` override defaults,
        e.g. ``seed("customer", email="a@b.c", created=1700000000)``."""
        kind = kind_name(kind)
        with self._lock:
            if not self._keys.accounts:
                raise RuntimeError("add_account() first")
            accounts = self._keys.accounts
            acct = accounts[account] if account else next(iter(accounts.values()))
            now = self._store.now()
            obj = SKELETONS[kind](acct, now)
            obj.update(copy.deepcopy(fields))
            if kind == "subscription" and isinstance(obj["items"], list):
                obj["items"] = list_object(
                    obj["items"], f"/v1/subscription_items?subscription={obj['id']}"
                )
            self._store.put(acct, kind, obj)
            if emit_event and kind != "event":
                self._store.emit(acct, None, event_name(kind, "created"), obj)
            return visible(obj)

    def expire_idempotency_keys(self) -> None:
        """Forget every stored idempotency key, as if 24 hours had passed."""
        with self._lock:
            for acct in self._keys.accounts.values():
                acct.idempotency.clear()

    def reset(self) -> None:
        """Forget objects (webhook endpoints too), events, idempotency keys, queued and past
        deliveries, rate limits, the request log and faults; keep accounts, keys, platforms and
        their connections, OAuth apps and tokens."""
        with self._lock:
            for acct in self._keys.accounts.values():
                acct.objects = {k: {} for k in KINDS}
                acct.deleted.clear()
                acct.idempotency.clear()
            self._requests.clear()
            self._store.order.clear()
            self._store.outbox.clear()
            self._deliverer.clear()
            self._limits.clear()
            self._faults.clear()

    # ------------------------------------------------------------ request handling

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Obj] | None:
        """Answer one HTTP request: (status, headers, json body), or None to drop it."""
        headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(raw_path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        if body:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        idempotency_key = headers.get("idempotency-key") if method in IDEMPOTENT_METHODS else None
        params = decode_params(pairs)
        key = api_key(headers)
        secret = params.get("client_secret")
        if key is None and split.path in oauth.PATHS and isinstance(secret, str):
            key = secret  # OAuth also takes the secret key as a parameter
        record = RequestRecord(
            method,
            split.path,
            params,
            idempotency_key,
            key,
            headers,
            new_id("req", 14),
        )
        with self._lock:
            self._requests.append(record)
        answer_headers = {"Request-Id": record.request_id, "Stripe-Version": API_VERSION}
        if idempotency_key:
            answer_headers["Idempotency-Key"] = idempotency_key
        drop = False
        try:
            with self._lock:
                account = self._keys.authenticate(record)
                self._limits.admit(record)
                if record.path not in oauth.PATHS:
                    self._keys.authorize(record)
            self._sleep_for(record)
            fault = self._take_fault(record)
            if fault is not None and not fault.drop:
                raise fault_error(fault)
            drop = fault is not None
            with self._lock:
                if record.path in oauth.PATHS:
                    status, payload = oauth.handle(self._keys, self._store, record)
                else:
                    status, payload, extra = execute(self._store, account, record)
                    answer_headers.update(extra)
                queued = bool(self._store.outbox)
        except ApiError as error:
            status, payload, queued = error.status, error.body(), False
            answer_headers.update(error.headers)
        record.status = status
        if queued and self.deliver_webhooks:
            self._deliverer.deliver_in_background()
        return None if drop else (status, answer_headers, payload)

    def _sleep_for(self, record: RequestRecord) -> None:
        with self._lock:
            delays = self._faults.delays_for(record)
        if delays:
            time.sleep(max(delays))

    def _take_fault(self, record: RequestRecord) -> Fault | None:
        with self._lock:
            return self._faults.take(record)


def api_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if auth.lower().startswith("basic "):
        try:
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0] or None
        except ValueError:
            return None
    return None
