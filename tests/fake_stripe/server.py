"""A small, stateful fake of Stripe's v1 API for tests (stdlib only).

Start it, point the SDK at it, and it answers like Stripe (API version ``2025-03-31.basil``)::

    fake = FakeStripe()
    fake.add_account("sk_test_A", account_id="acct_1Test")
    with fake:                                   # start() ... stop()
        client = stripe.StripeClient("sk_test_A", base_addresses={"api": fake.url},
                                     max_network_retries=0)

Behaviour that follows Stripe's documentation (and what it deliberately leaves out):

* List order: newest first, i.e. ``created`` descending and, for equal ``created``, the later
  insertion first. ``starting_after`` / ``ending_before`` are cursors into that order; a cursor
  that has since left the filtered set (a deleted customer, a canceled subscription) still works.
  Invoice lines and subscription items are in insertion order, oldest first.
* Idempotency (``Idempotency-Key`` on POST and DELETE; Stripe itself ignores it on DELETE): the
  first result is stored once the endpoint has *begun executing*, success or error, and replayed
  with ``Idempotent-Replayed: true``; a key reused with another method, path or parameters answers
  400 ``idempotency_error``. Nothing is stored when the request failed before execution: bad
  authentication, unknown URL, parameter validation (``parameter_missing``,
  ``parameter_invalid_*``, ``parameter_unknown``) or an injected fault. Stripe stores a 5xx that
  happens after execution began; every 5xx here is injected before execution, so none is stored.
  Keys live 24 hours (``expire_idempotency_keys()`` forgets them all at once).
* A path id that is unknown answers 404 ``resource_missing`` with ``param: "id"``; an unknown id in
  a body parameter answers 400 ``resource_missing`` with that parameter. Unknown parameters are
  refused (``parameter_unknown``), so a pre-basil call such as ``invoiceitems`` with ``price``
  (now ``pricing[price]``) fails here as it does at Stripe. A failing request changes nothing.
* Shapes are basil's: ``current_period_*`` on subscription items, ``pricing`` on invoice items
  and lines. A deleted customer stays retrievable as ``{"id", "object", "deleted": true}``
  and its subscriptions are canceled; a zero-total invoice is paid when finalized; prices made
  from ``price_data`` are inactive but still emit ``price.created``.
* Not modelled: payments (``pay`` just marks an invoice paid), taxes, discounts, prorations,
  subscription invoices (``latest_invoice`` stays null), test clocks, Connect, search.

Public API: start/stop (or ``with``), add_account, revoke_key, fail_next, fail_when, drop_next,
set_delay, delay_when, reset_faults, requests, objects, get, seed, expire_idempotency_keys, reset,
and ``handle()`` (the HTTP-free core, usable directly).
"""

from __future__ import annotations

import base64
import calendar
import copy
import fnmatch
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

API_VERSION = "2025-03-31.basil"
IDEMPOTENCY_WINDOW = 24 * 3600
IDEMPOTENT_METHODS = ("POST", "DELETE")
KINDS = ("customer", "product", "price", "invoiceitem", "invoice", "subscription", "event")
ID_PREFIX = {"customer": "cus", "product": "prod", "price": "price", "invoiceitem": "ii",
             "invoice": "in", "subscription": "sub", "event": "evt"}
_ALPHABET = string.ascii_letters + string.digits
Obj = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def mask_key(key: str) -> str:
    """Stripe's way of echoing a key: type prefix kept, the rest starred but the last four."""
    match = re.match(r"^((?:sk|rk|pk)_(?:test|live)_)(.*)$", key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    shown = rest[-4:] if len(rest) > 4 else ""
    return prefix + "*" * (len(rest) - len(shown)) + shown


# ---------------------------------------------------------------- nested form parameters

def decode_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` / ``expand[]=x`` pairs into nested dicts; all-digit keys become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *re.findall(r"\[([^\]]*)\]", key[len(head):])]
        node = root
        for part in parts[:-1]:
            part = part or str(len(node))
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value
    return _listify(root, "")


def _listify(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if out and key != "metadata" and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


class ApiError(Exception):
    """An error answer. ``stored`` says whether idempotency keeps it (the endpoint had begun)."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, stored: bool = True,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status, message, kind, code, param)
        self.stored, self.headers = stored, dict(headers or {})

    def body(self) -> Obj:
        error: Obj = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param, stored=False)


def _missing(kind: str, object_id: str, param: str = "id", status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


class Params:
    """Typed reads of one level of decoded parameters; error params in Stripe's a[b][c] form."""

    def __init__(self, data: Any, prefix: str = "") -> None:
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise _invalid(f"Received unknown parameter: {self.name(key)}",
                               self.name(key), "parameter_unknown")

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise _invalid(f"Missing required param: {self.name(key)}.", self.name(key),
                               "parameter_missing")
            return None
        if not isinstance(value, str):
            raise _invalid(f"Invalid string: {value!r}", self.name(key))
        if value == "" and required:
            raise _invalid(f"You passed an empty string for '{self.name(key)}'. We assume empty "
                           f"values are an attempt to unset a parameter; however "
                           f"'{self.name(key)}' cannot be unset.", self.name(key),
                           "parameter_invalid_empty")
        return value

    def required(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        return value

    def nullable(self, key: str) -> str | None:
        """A string that an empty value unsets (check ``key in params`` first)."""
        return self.text(key) or None

    def integer(self, key: str, *, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise _invalid(f"Invalid integer: {value}", self.name(key),
                           "parameter_invalid_integer") from None
        if minimum is not None and number < minimum:
            raise _invalid(f"This value must be greater than or equal to {minimum}.",
                           self.name(key), "parameter_invalid_integer")
        if maximum is not None and number > maximum:
            raise _invalid(f"This value must be less than or equal to {maximum}.",
                           self.name(key), "parameter_invalid_integer")
        return number

    def decimal(self, key: str) -> Decimal | None:
        value = self.text(key)
        try:
            return None if value is None else Decimal(value)
        except InvalidOperation:
            raise _invalid(f"Invalid decimal: {value}", self.name(key)) from None

    def boolean(self, key: str) -> bool | None:
        value = self.text(key)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise _invalid(f"Invalid boolean: {value}", self.name(key))
        return value == "true"

    def choice(self, key: str, options: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and value not in options:
            raise _invalid(f"Invalid {self.name(key)}: must be one of {', '.join(options)}",
                           self.name(key))
        return value

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise _invalid(f"Missing required param: {self.name(key)}.", self.name(key),
                               "parameter_missing")
            return None
        if not isinstance(value, dict):
            raise _invalid(f"Invalid object: {self.name(key)}", self.name(key))
        return Params(value, self.name(key))

    def items(self, key: str) -> list[Params]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise _invalid(f"Invalid array: {self.name(key)}", self.name(key))
        return [Params(v, f"{self.name(key)}[{i}]") for i, v in enumerate(value)]

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise _invalid(f"Invalid array: {self.name(key)}", self.name(key))
        return list(values)

    def metadata(self, old: Mapping[str, str] | None = None) -> dict[str, str]:
        """Stripe's merge: keys set, empty values removed, ``metadata=`` clears all."""
        merged = dict(old or {})
        value = self.data.get("metadata")
        if value == "":
            return {}
        if value is not None and not isinstance(value, dict):
            raise _invalid("Invalid hash", self.name("metadata"))
        for key, item in (value or {}).items():
            if not isinstance(item, str):
                raise _invalid("Invalid metadata value", self.name("metadata"))
            if item == "":
                merged.pop(key, None)
            else:
                merged[key] = item
        return merged


def created_filter(params: Params, key: str = "created") -> Callable[[int], bool]:
    """``created=123`` or ``created[gt|gte|lt|lte]=123``."""
    if isinstance(params.data.get(key), str):
        exact = params.integer(key)
        return lambda ts: ts == exact
    bounds = params.sub(key)
    if bounds is None:
        return lambda ts: True
    bounds.only("gt", "gte", "lt", "lte")
    gt, gte, lt, lte = (bounds.integer(k) for k in ("gt", "gte", "lt", "lte"))
    return lambda ts: ((gt is None or ts > gt) and (gte is None or ts >= gte)
                       and (lt is None or ts < lt) and (lte is None or ts <= lte))


def add_interval(ts: int, interval: str, count: int) -> int:
    moment = datetime.fromtimestamp(ts, UTC)
    if interval in ("day", "week"):
        moment += timedelta(days=count * (7 if interval == "week" else 1))
    else:
        months = moment.month - 1 + count * (12 if interval == "year" else 1)
        year, month = moment.year + months // 12, months % 12 + 1
        moment = moment.replace(year=year, month=month,
                                day=min(moment.day, calendar.monthrange(year, month)[1]))
    return int(moment.timestamp())


def previous_attributes(old: Obj, new: Obj) -> Obj:
    """``data.previous_attributes`` of an ``*.updated`` event: old values of what changed."""
    changed: Obj = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if key == "metadata":
            changed[key] = {k: before.get(k) for k in {*before, *value}
                            if before.get(k) != value.get(k)}
        elif isinstance(before, dict) and before.get("object") == "list":
            changed[key] = {"data": before["data"]}
        else:
            changed[key] = before
    return changed


# ---------------------------------------------------------------- state and records

@dataclass
class RequestRecord:
    """One request as the fake saw it; ``status`` is filled in when it has been answered."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    api_key: str | None
    headers: dict[str, str]
    request_id: str
    status: int | None = None
    account: str | None = None
    replayed: bool = False


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: a rule that stays until reset_faults()
    path: str | None = None
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    predicate: Callable[[RequestRecord], bool] | None = None
    drop: bool = False

    def matches(self, record: RequestRecord) -> bool:
        return ((self.path is None or fnmatch.fnmatchcase(record.path, self.path))
                and (self.method is None or self.method.upper() == record.method)
                and (self.predicate is None or self.predicate(record)))


@dataclass
class _Account:
    id: str
    display_name: str
    business_name: str | None
    livemode: bool
    created: int
    country: str = "US"
    default_currency: str = "usd"
    objects: dict[str, dict[str, Obj]] = field(default_factory=lambda: {k: {} for k in KINDS})
    deleted: set[str] = field(default_factory=set)
    idempotency: dict[str, Obj] = field(default_factory=dict)


@dataclass
class _Ctx:
    account: _Account
    params: Params
    args: dict[str, str]
    request_id: str
    idempotency_key: str | None


_FAULT_BODIES = {
    429: ("invalid_request_error", "rate_limit",
          "Request rate limit exceeded. Learn more about rate limits here "
          "https://stripe.com/docs/rate-limits."),
    409: ("invalid_request_error", "lock_timeout",
          "This object cannot be accessed right now because another API request or Stripe "
          "process is currently accessing it."),
}
_CUSTOMER_PARAMS = ("address", "balance", "cash_balance", "description", "email", "expand",
                    "invoice_prefix", "invoice_settings", "metadata", "name",
                    "next_invoice_sequence", "payment_method", "phone", "preferred_locales",
                    "shipping", "source", "tax", "tax_exempt", "tax_id_data", "test_clock",
                    "validate", "default_source")
_PRODUCT_PARAMS = ("active", "default_price_data", "description", "expand", "id", "images",
                   "marketing_features", "metadata", "name", "package_dimensions", "shippable",
                   "statement_descriptor", "tax_code", "unit_label", "url", "default_price")
_INVOICE_PARAMS = ("account_tax_ids", "application_fee_amount", "auto_advance", "automatic_tax",
                   "automatically_finalizes_at", "collection_method", "currency",
                   "custom_fields", "customer", "days_until_due", "default_payment_method",
                   "default_source", "default_tax_rates", "description", "discounts",
                   "due_date", "effective_at", "expand", "footer", "issuer", "metadata",
                   "number", "on_behalf_of", "payment_settings",
                   "pending_invoice_items_behavior", "rendering", "shipping_cost",
                   "shipping_details", "statement_descriptor", "subscription", "transfer_data")
_SUBSCRIPTION_PARAMS = ("add_invoice_items", "application_fee_percent", "automatic_tax",
                        "backdate_start_date", "billing_cycle_anchor",
                        "billing_cycle_anchor_config", "billing_mode", "billing_thresholds",
                        "cancel_at", "cancel_at_period_end", "cancellation_details",
                        "collection_method", "currency", "customer", "days_until_due",
                        "default_payment_method", "default_source", "default_tax_rates",
                        "description", "discounts", "expand", "invoice_settings", "items",
                        "metadata", "off_session", "on_behalf_of", "pause_collection",
                        "payment_behavior", "payment_settings", "pending_invoice_item_interval",
                        "proration_behavior", "proration_date", "transfer_data", "trial_end",
                        "trial_from_plan", "trial_period_days", "trial_settings")
_LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand", "created")
_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/v1/account", "account"),
    ("POST", "/v1/customers", "customer_create"),
    ("GET", "/v1/customers", "customer_list"),
    ("GET", "/v1/customers/{id}", "customer_get"),
    ("POST", "/v1/customers/{id}", "customer_update"),
    ("DELETE", "/v1/customers/{id}", "customer_delete"),
    ("POST", "/v1/products", "product_create"),
    ("GET", "/v1/products", "product_list"),
    ("GET", "/v1/products/{id}", "product_get"),
    ("POST", "/v1/products/{id}", "product_update"),
    ("POST", "/v1/prices", "price_create"),
    ("GET", "/v1/prices", "price_list"),
    ("GET", "/v1/prices/{id}", "price_get"),
    ("POST", "/v1/prices/{id}", "price_update"),
    ("POST", "/v1/invoiceitems", "invoiceitem_create"),
    ("GET", "/v1/invoiceitems", "invoiceitem_list"),
    ("GET", "/v1/invoiceitems/{id}", "invoiceitem_get"),
    ("POST", "/v1/invoices", "invoice_create"),
    ("GET", "/v1/invoices", "invoice_list"),
    ("GET", "/v1/invoices/{id}", "invoice_get"),
    ("POST", "/v1/invoices/{id}", "invoice_update"),
    ("DELETE", "/v1/invoices/{id}", "invoice_delete"),
    ("GET", "/v1/invoices/{id}/lines", "invoice_lines"),
    ("POST", "/v1/invoices/{id}/finalize", "invoice_finalize"),
    ("POST", "/v1/invoices/{id}/pay", "invoice_pay"),
    ("POST", "/v1/invoices/{id}/void", "invoice_void"),
    ("POST", "/v1/subscriptions", "subscription_create"),
    ("GET", "/v1/subscriptions", "subscription_list"),
    ("GET", "/v1/subscriptions/{id}", "subscription_get"),
    ("POST", "/v1/subscriptions/{id}", "subscription_update"),
    ("DELETE", "/v1/subscriptions/{id}", "subscription_cancel"),
    ("GET", "/v1/events", "event_list"),
    ("GET", "/v1/events/{id}", "event_get"),
]
_COMPILED = [(method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), name)
             for method, path, name in _ROUTES]


class FakeStripe:
    """A stateful Stripe v1 API on 127.0.0.1; see the module docstring for what it models."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._accounts: dict[str, _Account] = {}
        self._keys: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._delays: dict[str | None, float] = {}
        self._delay_rules: list[tuple[Callable[[RequestRecord], bool], float]] = []
        self._seq = 0
        self._order: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind 127.0.0.1 on a free port, serve from a daemon thread, return the base URL."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name="fake-stripe", daemon=True)
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ accounts and keys

    def add_account(self, api_key: str, account_id: str | None = None,
                    display_name: str = "Fake Stripe Test Account",
                    business_name: str | None = None, *, country: str = "US",
                    default_currency: str = "usd") -> Obj:
        """Register a key. A known ``account_id`` adds the key to it (key rotation)."""
        livemode = re.match(r"^(sk|rk)_(live|test)_", api_key)
        if livemode is None:
            raise ValueError(f"not a secret or restricted key: {mask_key(api_key)}")
        with self._lock:
            account_id = account_id or new_id("acct", 16)
            account = self._accounts.get(account_id)
            if account is None:
                account = self._accounts[account_id] = _Account(
                    account_id, display_name, business_name, livemode.group(2) == "live",
                    self._now(), country, default_currency)
            elif account.livemode != (livemode.group(2) == "live"):
                raise ValueError("a live and a test key cannot share an account here")
            self._keys[api_key] = account_id
            self._revoked.discard(api_key)
            return self._account_object(account)

    def revoke_key(self, api_key: str) -> None:
        """The key now answers 401 ``api_key_expired`` (a rolled key past its expiry)."""
        with self._lock:
            self._revoked.add(api_key)

    # ------------------------------------------------------------ faults

    def fail_next(self, count: int = 1, status: int = 500, path: str | None = None,
                  method: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        """The next ``count`` matching requests fail with ``status`` before touching any state.

        ``path`` is an exact path or an fnmatch pattern (``/v1/customers*``).
        """
        with self._lock:
            self._faults.append(_Fault(status, count, path, method, dict(headers or {})))

    def fail_when(self, predicate: Callable[[RequestRecord], bool], status: int = 500,
                  headers: Mapping[str, str] | None = None) -> None:
        """Every request for which ``predicate(record)`` holds fails, until reset_faults()."""
        with self._lock:
            self._faults.append(_Fault(status, None, headers=dict(headers or {}),
                                       predicate=predicate))

    def drop_next(self, count: int = 1, path: str | None = None,
                  method: str | None = None) -> None:
        """Run the next ``count`` matching requests, then close the connection unanswered
        (the lost-response case: the state changed and the idempotency key holds the result)."""
        with self._lock:
            self._faults.append(_Fault(0, count, path, method, drop=True))

    def set_delay(self, seconds: float, path: str | None = None) -> None:
        """Answer requests (matching ``path``, exact or fnmatch) ``seconds`` later; 0 removes."""
        with self._lock:
            if seconds > 0:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def delay_when(self, predicate: Callable[[RequestRecord], bool], seconds: float) -> None:
        """Answer every request for which ``predicate(record)`` holds ``seconds`` later (then
        execute it as usual: a client that gave up meanwhile has lost a response whose effect
        happened), until reset_faults(). The predicate runs once per request, before faults."""
        with self._lock:
            self._delay_rules.append((predicate, seconds))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._delay_rules.clear()

    # ------------------------------------------------------------ inspection and seeding

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def objects(self, kind: str, account: str | None = None) -> list[Obj]:
        """Copies of the live objects of ``kind`` (oldest first), of one account or all."""
        kind = _kind(kind)
        with self._lock:
            found = [obj for acct in self._accounts.values()
                     if account is None or acct.id == account
                     for oid, obj in acct.objects[kind].items() if oid not in acct.deleted]
            return copy.deepcopy(sorted(found, key=lambda o: self._order[o["id"]]))

    def get(self, kind: str, object_id: str) -> Obj:
        """A copy of one object (a deleted customer gives its ``deleted`` stub); KeyError."""
        kind = _kind(kind)
        with self._lock:
            for acct in self._accounts.values():
                if object_id in acct.objects[kind]:
                    return self._public(acct, kind, object_id)
        raise KeyError(object_id)

    def seed(self, kind: str, *, account: str | None = None, emit_event: bool = False,
             **fields: Any) -> Obj:
        """Store an object directly (no request, no validation); ``fields`` override defaults,
        e.g. ``seed("customer", email="a@b.c", created=1700000000)``."""
        kind = _kind(kind)
        with self._lock:
            if not self._accounts:
                raise RuntimeError("add_account() first")
            acct = self._accounts[account] if account else next(iter(self._accounts.values()))
            now = self._now()
            obj = _SKELETONS[kind](self, acct, now)
            obj.update(copy.deepcopy(fields))
            if kind == "subscription" and isinstance(obj["items"], list):
                obj["items"] = _list_object(obj["items"], f"/v1/subscription_items?subscription="
                                                          f"{obj['id']}")
            self._store(acct, kind, obj)
            if emit_event and kind != "event":
                self._emit(acct, None, _event_name(kind, "created"), obj)
            return copy.deepcopy(obj)

    def expire_idempotency_keys(self) -> None:
        """Forget every stored idempotency key, as if 24 hours had passed."""
        with self._lock:
            for acct in self._accounts.values():
                acct.idempotency.clear()

    def reset(self) -> None:
        """Forget objects, events, idempotency keys, the request log and faults; keep keys."""
        with self._lock:
            for acct in self._accounts.values():
                acct.objects = {k: {} for k in KINDS}
                acct.deleted.clear()
                acct.idempotency.clear()
            self._requests.clear()
            self._order.clear()
            self._faults.clear()
            self._delays.clear()
            self._delay_rules.clear()

    # ------------------------------------------------------------ request handling

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], Obj] | None:
        """Answer one HTTP request: (status, headers, json body), or None to drop it."""
        headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(raw_path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        if body:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        idempotency_key = headers.get("idempotency-key") if method in IDEMPOTENT_METHODS else None
        record = RequestRecord(method, split.path, decode_params(pairs), idempotency_key,
                               _api_key(headers), headers, new_id("req", 14))
        with self._lock:
            self._requests.append(record)
        answer_headers = {"Request-Id": record.request_id, "Stripe-Version": API_VERSION}
        if idempotency_key:
            answer_headers["Idempotency-Key"] = idempotency_key
        drop = False
        try:
            account = self._authenticate(record)
            self._sleep_for(record)
            fault = self._take_fault(record)
            if fault is not None and not fault.drop:
                raise _fault_error(fault)
            drop = fault is not None
            with self._lock:
                status, payload, extra = self._execute(account, record)
            answer_headers.update(extra)
        except ApiError as error:
            status, payload = error.status, error.body()
            answer_headers.update(error.headers)
        record.status = status
        return None if drop else (status, answer_headers, payload)

    def _authenticate(self, record: RequestRecord) -> _Account:
        key = record.api_key
        with self._lock:
            if not key:
                raise ApiError(401, "You did not provide an API key. You need to provide your "
                               "API key in the Authorization header, using Bearer auth (e.g. "
                               "'Authorization: Bearer YOUR_SECRET_KEY').", stored=False)
            if key in self._revoked:
                raise ApiError(401, f"Expired API Key provided: {mask_key(key)}",
                               code="api_key_expired", stored=False)
            if key not in self._keys:
                raise ApiError(401, f"Invalid API Key provided: {mask_key(key)}", stored=False)
            account = self._accounts[self._keys[key]]
            record.account = account.id
            return account

    def _sleep_for(self, record: RequestRecord) -> None:
        with self._lock:
            delays = [s for p, s in self._delays.items()
                      if p is None or fnmatch.fnmatchcase(record.path, p)]
            delays += [s for predicate, s in self._delay_rules if predicate(record)]
        if delays:
            time.sleep(max(delays))

    def _take_fault(self, record: RequestRecord) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(record):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _execute(self, account: _Account, record: RequestRecord) -> tuple[int, Obj, dict[str, str]]:
        key = record.idempotency_key
        entry = account.idempotency.get(key) if key else None
        if key and entry and self._now() - entry["created"] >= IDEMPOTENCY_WINDOW:
            del account.idempotency[key]
            entry = None
        if entry is not None:
            if (entry["method"], entry["path"], entry["params"]) != (
                    record.method, record.path, record.params):
                raise ApiError(400, "Keys for idempotent requests can only be used with the "
                               "same parameters they were first used with. Try using a key "
                               f"other than '{key}' if you meant to execute a different "
                               "request.", kind="idempotency_error", stored=False)
            record.replayed = True
            return entry["status"], copy.deepcopy(entry["body"]), {
                "Idempotent-Replayed": "true", "Original-Request": entry["request_id"]}
        handler, args = self._route(record)
        ctx = _Ctx(account, Params(record.params), args, record.request_id, key)
        self._undo = []
        try:
            status, payload = 200, handler(ctx)
        except ApiError as error:
            self._rollback()
            if not error.stored:
                raise
            status, payload = error.status, error.body()
        except Exception as error:  # a bug in the fake: answer it loudly, change nothing
            self._rollback()
            raise ApiError(500, f"fake_stripe bug: {error!r}", kind="api_error",
                           stored=False) from error
        if key:
            account.idempotency[key] = {
                "method": record.method, "path": record.path, "params": record.params,
                "status": status, "body": copy.deepcopy(payload), "created": self._now(),
                "request_id": record.request_id}
        return status, payload, {}

    def _route(self, record: RequestRecord) -> tuple[Callable[[_Ctx], Obj], dict[str, str]]:
        for method, pattern, name in _COMPILED:
            match = pattern.match(record.path)
            if match and method == record.method:
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                return getattr(self, f"_h_{name}"), args
        raise ApiError(404, f"Unrecognized request URL ({record.method}: {record.path}). Please "
                       "see https://stripe.com/docs or we can help at "
                       "https://support.stripe.com/.", stored=False)

    # ------------------------------------------------------------ shared machinery

    def _now(self) -> int:
        return int(self.clock())

    def _rollback(self) -> None:
        """Undo what a failing request changed: Stripe's errors change nothing."""
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def _store(self, acct: _Account, kind: str, obj: Obj) -> Obj:
        self._seq += 1
        self._order[obj["id"]] = self._seq
        acct.objects[kind][obj["id"]] = obj
        self._undo.append(lambda: (acct.objects[kind].pop(obj["id"], None),
                                   self._order.pop(obj["id"], None)))
        return obj

    def _find(self, acct: _Account, kind: str, object_id: str | None, param: str = "id",
              status: int = 404) -> Obj:
        """A stored object, to read or change (its state is kept for a rollback)."""
        obj = acct.objects[kind].get(object_id or "")
        if obj is None or object_id in acct.deleted:
            raise _missing(kind, object_id or "", param, status)
        snapshot = copy.deepcopy(obj)
        self._undo.append(lambda: (obj.clear(), obj.update(snapshot)))
        return obj

    def _ref(self, ctx: _Ctx, kind: str, params: Params, key: str) -> Obj | None:
        """An object named by a body parameter: 400 resource_missing when unknown."""
        object_id = params.text(key)
        return None if object_id is None else self._need(ctx, kind, params, key)

    def _need(self, ctx: _Ctx, kind: str, params: Params, key: str) -> Obj:
        return self._find(ctx.account, kind, params.required(key), params.name(key), 400)

    def _public(self, acct: _Account, kind: str, object_id: str) -> Obj:
        if object_id in acct.deleted:
            return {"id": object_id, "object": kind, "deleted": True}
        return copy.deepcopy(acct.objects[kind][object_id])

    def _emit(self, acct: _Account, ctx: _Ctx | None, event_type: str, obj: Obj,
              previous: Obj | None = None) -> None:
        data: Obj = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        self._store(acct, "event", {
            "id": new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": self._now(), "data": data, "livemode": acct.livemode,
            "pending_webhooks": 0, "type": event_type,
            "request": {"id": ctx.request_id if ctx else None,
                        "idempotency_key": ctx.idempotency_key if ctx else None}})

    def _updated(self, ctx: _Ctx, kind: str, obj: Obj, before: Obj) -> Obj:
        changed = previous_attributes(before, obj)
        if changed:
            self._emit(ctx.account, ctx, _event_name(kind, "updated"), obj, changed)
        return self._answer(ctx, obj)

    def _answer(self, ctx: _Ctx, obj: Obj) -> Obj:
        return self._expanded(ctx.account, obj, ctx.params.strings("expand"))

    def _expanded(self, acct: _Account, obj: Obj, paths: list[str]) -> Obj:
        """A copy of ``obj`` with ``expand[]`` paths (``customer``, ``items.data.price.product``)
        replaced by the objects they name; unknown paths are left alone."""
        out = copy.deepcopy(obj)
        for path in paths:
            self._expand(acct, out, path.split("."), 0)
        return out

    def _expand(self, acct: _Account, node: Any, parts: list[str], depth: int) -> None:
        if not parts or depth > 4:
            return
        if isinstance(node, list):
            for item in node:
                self._expand(acct, item, parts, depth)
            return
        if not isinstance(node, dict) or parts[0] not in node:
            return
        value = node[parts[0]]
        kind = _kind_of_id(value) if isinstance(value, str) else None
        if kind and value in acct.objects[kind]:
            node[parts[0]] = value = self._public(acct, kind, value)
        self._expand(acct, value, parts[1:], depth + 1)

    def _list(self, ctx: _Ctx, items: list[Obj], url: str, allowed: tuple[str, ...],
              newest_first: bool = True) -> Obj:
        """One page of ``items`` (already filtered) in list order; cursors by sort position."""
        params = ctx.params
        params.only(*_LIST_PARAMS, *allowed)
        limit = params.integer("limit", minimum=1, maximum=100) or 10
        after, before = params.text("starting_after"), params.text("ending_before")
        if after and before:
            raise _invalid("You may only specify one of these parameters: ending_before, "
                           "starting_after.", "ending_before", "parameters_exclusive")
        when = created_filter(params)
        sign = -1 if newest_first else 1

        def key(object_id: str, created: int) -> tuple[int, int]:
            return (sign * created if newest_first else 0, sign * self._order[object_id])

        ordered = sorted((o for o in items if when(o.get("created", 0))),
                         key=lambda o: key(o["id"], o.get("created", 0)))
        cursor = after or before
        if cursor:
            known = self._cursor_created(ctx.account, cursor, items)
            if known is None:
                raise ApiError(400, f"No such {_kind_of_id(cursor) or 'object'}: '{cursor}'",
                               code="resource_missing",
                               param="starting_after" if after else "ending_before")
            mark = key(cursor, known)
            if after:
                ordered = [o for o in ordered if key(o["id"], o.get("created", 0)) > mark]
            else:
                ordered = [o for o in ordered if key(o["id"], o.get("created", 0)) < mark]
        page = ordered[-limit:] if before else ordered[:limit]
        expand = [e[5:] for e in params.strings("expand") if e.startswith("data.")]
        data = [self._expanded(ctx.account, obj, expand) for obj in page]
        return {"object": "list", "data": data, "has_more": len(ordered) > limit, "url": url}

    def _cursor_created(self, acct: _Account, cursor: str, items: list[Obj]) -> int | None:
        if cursor not in self._order:
            return None
        kind = _kind_of_id(cursor)
        obj = acct.objects[kind].get(cursor) if kind else None
        obj = obj or next((o for o in items if o["id"] == cursor), None)
        return None if obj is None else int(obj.get("created", 0))

    def _all(self, acct: _Account, kind: str) -> list[Obj]:
        return [o for i, o in acct.objects[kind].items() if i not in acct.deleted]

    # ------------------------------------------------------------ account

    def _account_object(self, acct: _Account) -> Obj:
        return {
            "id": acct.id, "object": "account",
            "business_profile": {"mcc": None, "name": acct.business_name,
                                 "product_description": None, "support_address": None,
                                 "support_email": None, "support_phone": None,
                                 "support_url": None, "url": None},
            "business_type": None, "capabilities": {}, "charges_enabled": True,
            "country": acct.country, "created": acct.created,
            "default_currency": acct.default_currency, "details_submitted": True,
            "email": None, "metadata": {}, "payouts_enabled": True,
            "settings": {"dashboard": {"display_name": acct.display_name,
                                       "timezone": "Etc/UTC"}},
            "type": "standard"}

    def _h_account(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._account_object(ctx.account)

    # ------------------------------------------------------------ customers

    def _apply_customer(self, obj: Obj, p: Params) -> None:
        for key in ("name", "email", "description", "phone"):
            if key in p:
                obj[key] = p.nullable(key)
        for key in ("address", "shipping"):
            if key in p:
                sub = p.sub(key)
                obj[key] = sub.data if sub else None
        settings = p.sub("invoice_settings")
        if settings is not None:
            obj["invoice_settings"].update(settings.data)
        if "invoice_prefix" in p:
            obj["invoice_prefix"] = p.required("invoice_prefix")
        if "balance" in p:
            obj["balance"] = p.integer("balance")
        if "next_invoice_sequence" in p:
            obj["next_invoice_sequence"] = p.integer("next_invoice_sequence", minimum=1)
        if "preferred_locales" in p:
            obj["preferred_locales"] = p.strings("preferred_locales")
        if "tax_exempt" in p:
            obj["tax_exempt"] = p.choice("tax_exempt", ("none", "exempt", "reverse"))
        obj["metadata"] = p.metadata(obj["metadata"])

    def _h_customer_create(self, ctx: _Ctx) -> Obj:
        ctx.params.only(*_CUSTOMER_PARAMS)
        obj = _new_customer(self, ctx.account, self._now())
        self._apply_customer(obj, ctx.params)
        self._store(ctx.account, "customer", obj)
        self._emit(ctx.account, ctx, "customer.created", obj)
        return self._answer(ctx, obj)

    def _h_customer_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        if ctx.args["id"] in ctx.account.deleted:
            return self._public(ctx.account, "customer", ctx.args["id"])
        return self._answer(ctx, self._find(ctx.account, "customer", ctx.args["id"]))

    def _h_customer_update(self, ctx: _Ctx) -> Obj:
        ctx.params.only(*_CUSTOMER_PARAMS)
        obj = self._find(ctx.account, "customer", ctx.args["id"])
        before = copy.deepcopy(obj)
        self._apply_customer(obj, ctx.params)
        return self._updated(ctx, "customer", obj, before)

    def _h_customer_delete(self, ctx: _Ctx) -> Obj:
        ctx.params.only()
        obj = self._find(ctx.account, "customer", ctx.args["id"])
        for sub in self._all(ctx.account, "subscription"):
            if sub["customer"] == obj["id"] and sub["status"] not in ("canceled",
                                                                      "incomplete_expired"):
                self._cancel_subscription(ctx, sub)
        ctx.account.deleted.add(obj["id"])
        self._emit(ctx.account, ctx, "customer.deleted", obj)
        return {"id": obj["id"], "object": "customer", "deleted": True}

    def _h_customer_list(self, ctx: _Ctx) -> Obj:
        email = ctx.params.text("email")
        items = [o for o in self._all(ctx.account, "customer")
                 if email is None or o["email"] == email]
        return self._list(ctx, items, "/v1/customers", ("email", "test_clock"))

    # ------------------------------------------------------------ products and prices

    def _apply_product(self, ctx: _Ctx, obj: Obj, p: Params) -> None:
        if "name" in p:
            obj["name"] = p.required("name")
        for key in ("description", "statement_descriptor", "unit_label", "url", "tax_code"):
            if key in p:
                obj[key] = p.nullable(key)
        if "active" in p:
            obj["active"] = p.boolean("active")
        if "shippable" in p:
            obj["shippable"] = p.boolean("shippable")
        if "images" in p:
            obj["images"] = p.strings("images")
        if "default_price" in p:
            price = self._ref(ctx, "price", p, "default_price")
            if price is not None and price["product"] != obj["id"]:
                raise _invalid("The price must belong to this product.", "default_price")
            obj["default_price"] = price["id"] if price else None
        obj["metadata"] = p.metadata(obj["metadata"])

    def _h_product_create(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only(*_PRODUCT_PARAMS)
        p.required("name")
        obj = _new_product(self, ctx.account, self._now())
        if "id" in p:
            obj["id"] = p.required("id")
            if obj["id"] in ctx.account.objects["product"]:
                raise ApiError(400, "Product already exists.", code="resource_already_exists",
                               param="id")
        self._apply_product(ctx, obj, p)
        self._store(ctx.account, "product", obj)
        self._emit(ctx.account, ctx, "product.created", obj)
        price_data = p.sub("default_price_data")
        if price_data is not None:
            price_data.data = {**price_data.data, "product": obj["id"]}
            obj["default_price"] = self._price_from_data(ctx, price_data, None, active=True)["id"]
        return self._answer(ctx, obj)

    def _h_product_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "product", ctx.args["id"]))

    def _h_product_update(self, ctx: _Ctx) -> Obj:
        ctx.params.only(*(k for k in _PRODUCT_PARAMS if k not in ("id", "default_price_data")))
        obj = self._find(ctx.account, "product", ctx.args["id"])
        before = copy.deepcopy(obj)
        self._apply_product(ctx, obj, ctx.params)
        if obj != before:
            obj["updated"] = self._now()
        return self._updated(ctx, "product", obj, before)

    def _h_product_list(self, ctx: _Ctx) -> Obj:
        active, ids = ctx.params.boolean("active"), ctx.params.strings("ids")
        items = [o for o in self._all(ctx.account, "product")
                 if (active is None or o["active"] == active) and (not ids or o["id"] in ids)]
        return self._list(ctx, items, "/v1/products", ("active", "ids", "shippable", "url"))

    def _price_from_data(self, ctx: _Ctx, p: Params, recurring_required: bool | None,
                         active: bool = False) -> Obj:
        """Create a price from ``price_data``-like params (a standalone one: ``active=True``)."""
        currency = p.required("currency").lower()
        product = self._need(ctx, "product", p, "product")
        amount = p.integer("unit_amount", minimum=0)
        decimal = p.decimal("unit_amount_decimal")
        if amount is None and decimal is None and "custom_unit_amount" not in p:
            raise _invalid(f"Missing required param: {p.name('unit_amount')}.",
                           p.name("unit_amount"), "parameter_missing")
        recurring = p.sub("recurring", required=bool(recurring_required))
        if recurring is not None and recurring_required is False:
            raise _invalid(f"Received unknown parameter: {p.name('recurring')}",
                           p.name("recurring"), "parameter_unknown")
        if recurring is not None:
            recurring.only("interval", "interval_count", "meter", "usage_type",
                           "trial_period_days", "aggregate_usage")
            recurring_obj: Obj | None = {
                "interval": recurring.choice("interval", ("day", "week", "month", "year"),
                                             required=True),
                "interval_count": recurring.integer("interval_count", minimum=1) or 1,
                "meter": recurring.text("meter"),
                "trial_period_days": recurring.integer("trial_period_days"),
                "usage_type": recurring.choice("usage_type", ("licensed", "metered"))
                or "licensed"}
        else:
            recurring_obj = None
        obj = _new_price(self, ctx.account, self._now(), product["id"], currency,
                         amount if amount is not None else int(decimal or 0), recurring_obj)
        if decimal is not None:
            obj["unit_amount_decimal"] = str(decimal)
        obj["active"] = active if p.boolean("active") is None else p.boolean("active")
        for key in ("nickname", "lookup_key"):
            obj[key] = p.text(key) or None
        obj["tax_behavior"] = p.choice("tax_behavior", ("exclusive", "inclusive",
                                                        "unspecified")) or "unspecified"
        obj["metadata"] = p.metadata()
        self._store(ctx.account, "price", obj)
        self._emit(ctx.account, ctx, "price.created", obj)
        return obj

    def _h_price_create(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only("active", "billing_scheme", "currency", "currency_options", "custom_unit_amount",
               "expand", "lookup_key", "metadata", "nickname", "product", "product_data",
               "recurring", "tax_behavior", "tiers", "tiers_mode", "transfer_lookup_key",
               "transform_quantity", "unit_amount", "unit_amount_decimal")
        product_data = p.sub("product_data")
        if product_data is None and "product" not in p:
            raise _invalid("Missing required param: product.", "product", "parameter_missing")
        if product_data is not None:
            if "product" in p:
                raise _invalid("You may only specify one of these parameters: product, "
                               "product_data.", "product", "parameters_exclusive")
            product_data.only("active", "id", "metadata", "name", "statement_descriptor",
                              "tax_code", "unit_label")
            product = _new_product(self, ctx.account, self._now())
            product["name"] = product_data.required("name")
            product["metadata"] = product_data.metadata()
            self._store(ctx.account, "product", product)
            self._emit(ctx.account, ctx, "product.created", product)
            p = Params({**p.data, "product": product["id"]})
        obj = self._price_from_data(ctx, p, None, active=True)
        return self._answer(ctx, obj)

    def _h_price_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "price", ctx.args["id"]))

    def _h_price_update(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only("active", "currency_options", "expand", "lookup_key", "metadata", "nickname",
               "tax_behavior", "transfer_lookup_key")
        obj = self._find(ctx.account, "price", ctx.args["id"])
        before = copy.deepcopy(obj)
        if "active" in p:
            obj["active"] = p.boolean("active")
        for key in ("nickname", "lookup_key"):
            if key in p:
                obj[key] = p.nullable(key)
        if "tax_behavior" in p:
            obj["tax_behavior"] = p.choice("tax_behavior", ("exclusive", "inclusive",
                                                            "unspecified"))
        obj["metadata"] = p.metadata(obj["metadata"])
        return self._updated(ctx, "price", obj, before)

    def _h_price_list(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        active, product = p.boolean("active"), p.text("product")
        currency, kind = p.text("currency"), p.choice("type", ("one_time", "recurring"))
        items = [o for o in self._all(ctx.account, "price")
                 if (active is None or o["active"] == active)
                 and (product is None or o["product"] == product)
                 and (currency is None or o["currency"] == currency)
                 and (kind is None or o["type"] == kind)]
        return self._list(ctx, items, "/v1/prices",
                          ("active", "currency", "lookup_keys", "product", "recurring", "type"))

    # ------------------------------------------------------------ invoice items

    def _h_invoiceitem_create(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only("amount", "currency", "customer", "description", "discountable", "discounts",
               "expand", "invoice", "metadata", "period", "price_data", "pricing", "quantity",
               "subscription", "tax_behavior", "tax_code", "tax_rates", "unit_amount_decimal")
        sources = [k for k in ("amount", "pricing", "price_data", "unit_amount_decimal") if k in p]
        if len(sources) > 1:
            raise _invalid(f"You may only specify one of these parameters: "
                           f"{', '.join(sources)}.", sources[1], "parameters_exclusive")
        if not sources:
            raise _invalid("Missing required param: amount.", "amount", "parameter_missing")
        quantity = p.integer("quantity", minimum=0)
        amount = p.integer("amount")
        pricing = p.sub("pricing")
        if pricing is not None:
            pricing.only("price")
            pricing.required("price")
        price_data = p.sub("price_data")
        if price_data is not None:
            price_data.only("currency", "product", "tax_behavior", "unit_amount",
                            "unit_amount_decimal")
        if ("amount" in p or "unit_amount_decimal" in p) and "currency" not in p:
            raise _invalid("Missing required param: currency.", "currency", "parameter_missing")
        customer = self._need(ctx, "customer", p, "customer")
        invoice = self._ref(ctx, "invoice", p, "invoice")
        if invoice is not None and invoice["status"] != "draft":
            raise ApiError(400, f"You can only add invoice items to draft invoices; invoice "
                           f"'{invoice['id']}' is {invoice['status']}.",
                           code="invoice_not_editable", param="invoice")
        if invoice is not None and invoice["customer"] != customer["id"]:
            raise _invalid("The invoice item's customer must match the invoice's customer.",
                           "invoice")
        price = None
        if pricing is not None:
            price = self._need(ctx, "price", pricing, "price")
            if price["type"] != "one_time":
                raise _invalid("The price specified is set to `type=recurring` but this field "
                               "only accepts prices with `type=one_time`.", "pricing[price]")
        elif price_data is not None:
            price = self._price_from_data(ctx, price_data, False)
        now = self._now()
        obj = _new_invoiceitem(self, ctx.account, now, customer["id"])
        if price is not None:
            units = 1 if quantity is None else quantity
            obj.update(amount=int(Decimal(price["unit_amount_decimal"]) * units),
                       currency=price["currency"], quantity=units,
                       pricing={"price_details": {"price": price["id"],
                                                  "product": price["product"]},
                                "type": "price_details",
                                "unit_amount_decimal": price["unit_amount_decimal"]})
            if not p.text("description"):
                obj["description"] = ctx.account.objects["product"][price["product"]]["name"]
        else:
            units = 1 if quantity is None else quantity
            total = amount if amount is not None else int(
                (p.decimal("unit_amount_decimal") or Decimal(0)) * units)
            obj.update(amount=total, quantity=units, currency=p.required("currency").lower())
        obj["net_amount"] = obj["amount"]
        if invoice is not None and invoice["currency"] != obj["currency"]:
            raise _invalid(f"The currency of the invoice item ({obj['currency']}) must match "
                           f"the currency of the invoice ({invoice['currency']}).", "currency")
        obj["description"] = p.text("description") or obj["description"]
        obj["discountable"] = p.boolean("discountable") is not False
        obj["metadata"] = p.metadata()
        period = p.sub("period")
        if period is not None:
            obj["period"] = {"start": period.integer("start", required=True),
                             "end": period.integer("end", required=True)}
        obj["invoice"] = invoice["id"] if invoice else None
        self._store(ctx.account, "invoiceitem", obj)
        self._emit(ctx.account, ctx, "invoiceitem.created", obj)
        if invoice is not None:
            self._refresh_invoice(ctx.account, invoice)
        return self._answer(ctx, obj)

    def _h_invoiceitem_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "invoiceitem", ctx.args["id"]))

    def _h_invoiceitem_list(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        invoice, customer, pending = p.text("invoice"), p.text("customer"), p.boolean("pending")
        items = [o for o in self._all(ctx.account, "invoiceitem")
                 if (invoice is None or o["invoice"] == invoice)
                 and (customer is None or o["customer"] == customer)
                 and (pending is None or (o["invoice"] is None) == pending)]
        return self._list(ctx, items, "/v1/invoiceitems", ("customer", "invoice", "pending"))

    # ------------------------------------------------------------ invoices

    def _refresh_invoice(self, acct: _Account, invoice: Obj) -> None:
        """Recompute lines and totals of a draft from its invoice items."""
        items = sorted((o for o in self._all(acct, "invoiceitem")
                        if o["invoice"] == invoice["id"]), key=lambda o: self._order[o["id"]])
        lines = [_line_for_item(item, invoice["id"]) for item in items]
        for item, line in zip(items, lines, strict=True):
            self._order.setdefault(line["id"], self._order[item["id"]])
        total = sum(line["amount"] for line in lines)
        invoice["lines"] = _list_object(lines, f"/v1/invoices/{invoice['id']}/lines")
        invoice.update(subtotal=total, subtotal_excluding_tax=total, total=total,
                       total_excluding_tax=total, amount_due=max(total, 0),
                       amount_remaining=max(total, 0) - invoice["amount_paid"])

    def _h_invoice_create(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only(*_INVOICE_PARAMS)
        p.required("customer")
        method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
        days = p.integer("days_until_due", minimum=0)
        due_date = p.integer("due_date")
        behavior = p.choice("pending_invoice_items_behavior", ("exclude", "include"))
        if method == "send_invoice" and days is None and due_date is None:
            raise _invalid("Missing required param: days_until_due.", "days_until_due",
                           "parameter_missing")
        if method != "send_invoice" and (days is not None or due_date is not None):
            raise _invalid("days_until_due and due_date can only be set when "
                           "collection_method=send_invoice.", "days_until_due")
        customer = self._need(ctx, "customer", p, "customer")
        obj = _new_invoice(self, ctx.account, self._now(), customer)
        obj.update(collection_method=method or "charge_automatically", days_until_due=days,
                   due_date=due_date, auto_advance=bool(p.boolean("auto_advance")),
                   automatically_finalizes_at=self._now() + 3600 if p.boolean("auto_advance")
                   else None,
                   currency=(p.text("currency") or customer["currency"]
                             or ctx.account.default_currency).lower(),
                   description=p.text("description") or None, footer=p.text("footer") or None,
                   number=p.text("number") or None, metadata=p.metadata())
        self._store(ctx.account, "invoice", obj)
        if behavior == "include":
            for item in self._all(ctx.account, "invoiceitem"):
                if (item["customer"] == customer["id"] and item["invoice"] is None
                        and item["currency"] == obj["currency"]):
                    item["invoice"] = obj["id"]
        self._refresh_invoice(ctx.account, obj)
        self._emit(ctx.account, ctx, "invoice.created", obj)
        return self._answer(ctx, obj)

    def _h_invoice_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "invoice", ctx.args["id"]))

    def _h_invoice_update(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only(*(k for k in _INVOICE_PARAMS if k not in ("customer", "currency", "subscription",
                                                         "pending_invoice_items_behavior")))
        obj = self._find(ctx.account, "invoice", ctx.args["id"])
        before = copy.deepcopy(obj)
        money = {"collection_method", "days_until_due", "due_date", "number"} & set(p.data)
        if obj["status"] != "draft" and money:
            raise ApiError(400, "Finalized invoices can't be updated in this way",
                           code="invoice_not_editable", param=sorted(money)[0])
        for key in ("description", "footer", "number"):
            if key in p:
                obj[key] = p.nullable(key)
        if "auto_advance" in p:
            obj["auto_advance"] = p.boolean("auto_advance")
        if "collection_method" in p:
            obj["collection_method"] = p.choice("collection_method",
                                                ("charge_automatically", "send_invoice"))
        for key in ("days_until_due", "due_date"):
            if key in p:
                obj[key] = p.integer(key)
        obj["metadata"] = p.metadata(obj["metadata"])
        return self._updated(ctx, "invoice", obj, before)

    def _h_invoice_delete(self, ctx: _Ctx) -> Obj:
        ctx.params.only()
        obj = self._find(ctx.account, "invoice", ctx.args["id"])
        if obj["status"] != "draft":
            raise ApiError(400, "You can only delete draft invoices.", code="invoice_not_editable")
        for item in self._all(ctx.account, "invoiceitem"):
            if item["invoice"] == obj["id"]:
                item["invoice"] = None
        del ctx.account.objects["invoice"][obj["id"]]
        self._emit(ctx.account, ctx, "invoice.deleted", obj)
        return {"id": obj["id"], "object": "invoice", "deleted": True}

    def _h_invoice_lines(self, ctx: _Ctx) -> Obj:
        invoice = self._find(ctx.account, "invoice", ctx.args["id"])
        return self._list(ctx, invoice["lines"]["data"], invoice["lines"]["url"], (),
                          newest_first=False)

    def _finalize(self, ctx: _Ctx, obj: Obj) -> None:
        now = self._now()
        customer = ctx.account.objects["customer"][obj["customer"]]
        if obj["number"] is None:
            obj["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
            customer["next_invoice_sequence"] += 1
        token = new_id("test" if not ctx.account.livemode else "live", 40)
        obj.update(status="open", effective_at=now, customer_email=customer["email"],
                   customer_name=customer["name"], customer_address=customer["address"],
                   customer_phone=customer["phone"], automatically_finalizes_at=None,
                   hosted_invoice_url=f"https://invoice.stripe.com/i/{ctx.account.id}/{token}",
                   invoice_pdf=f"https://pay.stripe.com/invoice/{ctx.account.id}/{token}/pdf")
        obj["status_transitions"]["finalized_at"] = now
        if obj["collection_method"] == "send_invoice" and obj["due_date"] is None:
            obj["due_date"] = now + 86400 * (obj["days_until_due"] or 0)
        self._emit(ctx.account, ctx, "invoice.finalized", obj)
        if obj["amount_due"] == 0:
            self._mark_paid(ctx, obj, out_of_band=True)

    def _mark_paid(self, ctx: _Ctx, obj: Obj, out_of_band: bool) -> None:
        obj.update(status="paid", amount_paid=obj["amount_due"], amount_remaining=0,
                   attempted=not out_of_band, attempt_count=0 if out_of_band else 1,
                   next_payment_attempt=None)
        obj["status_transitions"]["paid_at"] = self._now()
        if not out_of_band and obj["amount_due"] > 0:
            self._emit(ctx.account, ctx, "invoice.payment_succeeded", obj)
        self._emit(ctx.account, ctx, "invoice.paid", obj)

    def _h_invoice_finalize(self, ctx: _Ctx) -> Obj:
        ctx.params.only("auto_advance", "expand")
        obj = self._find(ctx.account, "invoice", ctx.args["id"])
        if obj["status"] != "draft":
            raise ApiError(400, "This invoice is already finalized, you can't re-finalize a "
                           "non-draft invoice.", code="invoice_not_editable")
        if "auto_advance" in ctx.params:
            obj["auto_advance"] = ctx.params.boolean("auto_advance")
        self._finalize(ctx, obj)
        return self._answer(ctx, obj)

    def _h_invoice_pay(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand", "forgive", "mandate", "off_session", "paid_out_of_band",
                        "payment_method", "source")
        out_of_band = bool(ctx.params.boolean("paid_out_of_band"))
        obj = self._find(ctx.account, "invoice", ctx.args["id"])
        if obj["status"] == "paid":
            raise ApiError(400, "Invoice is already paid")
        if obj["status"] == "void":
            raise ApiError(400, "This invoice can no longer be paid because it is void.")
        if obj["status"] == "draft":
            self._finalize(ctx, obj)
        if obj["status"] != "paid":  # open or uncollectible (a zero total is paid already)
            self._mark_paid(ctx, obj, out_of_band)
        return self._answer(ctx, obj)

    def _h_invoice_void(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        obj = self._find(ctx.account, "invoice", ctx.args["id"])
        if obj["status"] not in ("open", "uncollectible"):
            raise ApiError(400, f"You can only void open or uncollectible invoices; this "
                           f"invoice is {obj['status']}.")
        obj["status"] = "void"
        obj["status_transitions"]["voided_at"] = self._now()
        self._emit(ctx.account, ctx, "invoice.voided", obj)
        return self._answer(ctx, obj)

    def _h_invoice_list(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        customer, subscription = p.text("customer"), p.text("subscription")
        status = p.choice("status", ("draft", "open", "paid", "uncollectible", "void"))
        method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
        items = [o for o in self._all(ctx.account, "invoice")
                 if (customer is None or o["customer"] == customer)
                 and (status is None or o["status"] == status)
                 and (method is None or o["collection_method"] == method)
                 and (subscription is None or o.get("subscription") == subscription)]
        return self._list(ctx, items, "/v1/invoices",
                          ("collection_method", "customer", "due_date", "status", "subscription"))

    # ------------------------------------------------------------ subscriptions

    def _item_price(self, ctx: _Ctx, item: Params) -> Obj:
        if "price" in item and "price_data" in item:
            raise _invalid(f"You may only specify one of these parameters: "
                           f"{item.name('price')}, {item.name('price_data')}.",
                           item.name("price"), "parameters_exclusive")
        price_data = item.sub("price_data")
        if price_data is not None:
            price_data.only("currency", "product", "recurring", "tax_behavior", "unit_amount",
                            "unit_amount_decimal")
            return self._price_from_data(ctx, price_data, True)
        price = self._need(ctx, "price", item, "price")
        if price["type"] != "recurring":
            raise _invalid("The price specified is set to `type=one_time` but this field only "
                           "accepts prices with `type=recurring`.", item.name("price"))
        return price

    def _new_item(self, ctx: _Ctx, sub: Obj, item: Params) -> Obj:
        item.only("billing_thresholds", "discounts", "metadata", "plan", "price", "price_data",
                  "quantity", "tax_rates")
        quantity = item.integer("quantity", minimum=0)
        price = self._item_price(ctx, item)
        obj = {"id": new_id("si", 14), "object": "subscription_item", "billing_thresholds": None,
               "created": self._now(), "discounts": [], "metadata": item.metadata(),
               "plan": _plan_for(price), "price": copy.deepcopy(price),
               "quantity": 1 if quantity is None else quantity, "subscription": sub["id"],
               "tax_rates": []}
        self._set_period(sub, obj)
        return obj

    def _set_period(self, sub: Obj, item: Obj) -> None:
        """The item's current period from the subscription's start date and anchor."""
        recurring = item["price"]["recurring"]
        start, anchor, now = sub["start_date"], sub["billing_cycle_anchor"], self._now()
        if now < anchor:
            item["current_period_start"], item["current_period_end"] = start, anchor
            return
        step = 0
        while add_interval(anchor, recurring["interval"],
                           (step + 1) * recurring["interval_count"]) <= now:
            step += 1
        begin = add_interval(anchor, recurring["interval"], step * recurring["interval_count"])
        item["current_period_start"] = begin
        item["current_period_end"] = add_interval(begin, recurring["interval"],
                                                   recurring["interval_count"])

    def _apply_cancel_flags(self, sub: Obj, p: Params) -> None:
        if "cancel_at_period_end" in p:
            at_end = bool(p.boolean("cancel_at_period_end"))
            sub["cancel_at_period_end"] = at_end
            sub["cancel_at"] = (max(i["current_period_end"] for i in sub["items"]["data"])
                                if at_end else None)
            sub["canceled_at"] = self._now() if at_end else None
            sub["cancellation_details"]["reason"] = "cancellation_requested" if at_end else None
        if "cancel_at" in p and not sub["cancel_at_period_end"]:
            sub["cancel_at"] = p.integer("cancel_at") if p.text("cancel_at") else None

    def _h_subscription_create(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only(*_SUBSCRIPTION_PARAMS)
        p.required("customer")
        items = p.items("items")
        if not items:
            raise _invalid("Missing required param: items.", "items", "parameter_missing")
        now = self._now()
        backdate = p.integer("backdate_start_date")
        anchor = p.integer("billing_cycle_anchor")
        trial_days = p.integer("trial_period_days", minimum=0)
        method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
        p.choice("proration_behavior", ("always_invoice", "create_prorations", "none"))
        if backdate is not None and backdate > now:
            raise _invalid("backdate_start_date must be in the past.", "backdate_start_date")
        if anchor is not None and anchor < (now - 300 if backdate is None else backdate):
            raise _invalid("billing_cycle_anchor cannot be in the past.",
                           "billing_cycle_anchor")
        customer = self._need(ctx, "customer", p, "customer")
        start = backdate if backdate is not None else now
        obj = _new_subscription(self, ctx.account, now, customer["id"])
        trial_end = now + 86400 * trial_days if trial_days else None
        obj.update(start_date=start, billing_cycle_anchor=anchor or trial_end or start,
                   collection_method=method or "charge_automatically",
                   days_until_due=p.integer("days_until_due"),
                   description=p.text("description") or None, metadata=p.metadata(),
                   default_payment_method=p.text("default_payment_method") or None,
                   status="trialing" if trial_end else "active",
                   trial_start=now if trial_end else None, trial_end=trial_end)
        data = [self._new_item(ctx, obj, item) for item in items]
        obj["items"] = _list_object(data, f"/v1/subscription_items?subscription={obj['id']}")
        obj["currency"] = data[0]["price"]["currency"]
        self._apply_cancel_flags(obj, p)
        self._store(ctx.account, "subscription", obj)
        self._emit(ctx.account, ctx, "customer.subscription.created", obj)
        return self._answer(ctx, obj)

    def _h_subscription_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "subscription", ctx.args["id"]))

    def _h_subscription_update(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only(*(k for k in _SUBSCRIPTION_PARAMS if k not in ("customer", "currency",
                                                              "backdate_start_date")))
        obj = self._find(ctx.account, "subscription", ctx.args["id"])
        if obj["status"] == "canceled" and set(p.data) - {"metadata", "cancellation_details",
                                                          "expand"}:
            raise _invalid("A canceled subscription can only update its cancellation_details "
                           "and metadata.")
        p.choice("proration_behavior", ("always_invoice", "create_prorations", "none"))
        before = copy.deepcopy(obj)
        data = copy.deepcopy(obj["items"]["data"])
        for item in p.items("items"):
            data = self._update_items(ctx, obj, data, item)
        if not data:
            raise _invalid("A subscription must have at least one active item.", "items")
        obj["items"] = _list_object(data, obj["items"]["url"])
        if "description" in p:
            obj["description"] = p.nullable("description")
        if "default_payment_method" in p:
            obj["default_payment_method"] = p.nullable("default_payment_method")
        if "collection_method" in p:
            obj["collection_method"] = p.choice("collection_method",
                                                ("charge_automatically", "send_invoice"))
        if "days_until_due" in p:
            obj["days_until_due"] = p.integer("days_until_due")
        self._apply_cancel_flags(obj, p)
        obj["metadata"] = p.metadata(obj["metadata"])
        return self._updated(ctx, "subscription", obj, before)

    def _update_items(self, ctx: _Ctx, sub: Obj, data: list[Obj], item: Params) -> list[Obj]:
        item_id = item.text("id")
        if item_id is None:
            return [*data, self._new_item(ctx, sub, item)]
        current = next((i for i in data if i["id"] == item_id), None)
        if current is None:
            raise ApiError(400, f"No such subscription item: '{item_id}'",
                           code="resource_missing", param=item.name("id"))
        item.only("billing_thresholds", "clear_usage", "deleted", "discounts", "id", "metadata",
                  "plan", "price", "price_data", "quantity", "tax_rates")
        if item.boolean("deleted"):
            return [i for i in data if i["id"] != item_id]
        if "price" in item or "price_data" in item:
            price = self._item_price(ctx, item)
            current.update(price=copy.deepcopy(price), plan=_plan_for(price))
        if "quantity" in item:
            current["quantity"] = item.integer("quantity", minimum=0)
        current["metadata"] = item.metadata(current["metadata"])
        return data

    def _cancel_subscription(self, ctx: _Ctx, sub: Obj) -> None:
        now = self._now()
        sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at=None)
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        self._emit(ctx.account, ctx, "customer.subscription.deleted", sub)

    def _h_subscription_cancel(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        p.only("cancellation_details", "expand", "invoice_now", "prorate")
        obj = self._find(ctx.account, "subscription", ctx.args["id"])
        if obj["status"] == "canceled":
            raise _missing("subscription", obj["id"])
        details = p.sub("cancellation_details")
        if details is not None:
            details.only("comment", "feedback")
            obj["cancellation_details"].update(comment=details.text("comment") or None,
                                               feedback=details.text("feedback") or None)
        self._cancel_subscription(ctx, obj)
        return self._answer(ctx, obj)

    def _h_subscription_list(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        customer, price = p.text("customer"), p.text("price")
        status = p.choice("status", ("active", "all", "canceled", "ended", "incomplete",
                                     "incomplete_expired", "past_due", "paused", "trialing",
                                     "unpaid"))
        ended = ("canceled", "incomplete_expired")

        def wanted(sub: Obj) -> bool:
            if status is None:
                return sub["status"] not in ended
            if status == "ended":
                return sub["status"] in ended
            return status == "all" or sub["status"] == status

        items = [o for o in self._all(ctx.account, "subscription")
                 if wanted(o) and (customer is None or o["customer"] == customer)
                 and (price is None or any(i["price"]["id"] == price
                                           for i in o["items"]["data"]))]
        return self._list(ctx, items, "/v1/subscriptions",
                          ("automatic_tax", "collection_method", "current_period_end",
                           "current_period_start", "customer", "price", "status", "test_clock"))

    # ------------------------------------------------------------ events

    def _h_event_list(self, ctx: _Ctx) -> Obj:
        p = ctx.params
        single, types = p.text("type"), p.strings("types")
        if single and types:
            raise _invalid("You may only specify one of these parameters: type, types.",
                           "types", "parameters_exclusive")
        if len(types) > 20:
            raise _invalid("types can contain at most 20 entries.", "types")
        items = [e for e in self._all(ctx.account, "event")
                 if (not types or e["type"] in types)
                 and (single is None or fnmatch.fnmatchcase(e["type"], single))]
        return self._list(ctx, items, "/v1/events", ("delivery_success", "type", "types"))

    def _h_event_get(self, ctx: _Ctx) -> Obj:
        ctx.params.only("expand")
        return self._answer(ctx, self._find(ctx.account, "event", ctx.args["id"]))


# ---------------------------------------------------------------- object skeletons

def _list_object(data: list[Obj], url: str) -> Obj:
    return {"object": "list", "data": data, "has_more": False, "total_count": len(data),
            "url": url}


def _new_customer(fake: FakeStripe, acct: _Account, now: int) -> Obj:
    return {"id": new_id("cus", 14), "object": "customer", "address": None, "balance": 0,
            "created": now, "currency": None, "default_source": None, "delinquent": False,
            "description": None, "email": None,
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                                 "footer": None, "rendering_options": None},
            "livemode": acct.livemode, "metadata": {}, "name": None, "next_invoice_sequence": 1,
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
            "test_clock": None}


def _new_product(fake: FakeStripe, acct: _Account, now: int) -> Obj:
    return {"id": new_id("prod", 14), "object": "product", "active": True, "attributes": [],
            "created": now, "default_price": None, "description": None, "images": [],
            "livemode": acct.livemode, "marketing_features": [], "metadata": {},
            "name": "Seeded product", "package_dimensions": None, "shippable": None,
            "statement_descriptor": None, "tax_code": None, "type": "service",
            "unit_label": None, "updated": now, "url": None}


def _new_price(fake: FakeStripe, acct: _Account, now: int, product: str | None = None,
               currency: str = "usd", unit_amount: int = 1000,
               recurring: Obj | None = None) -> Obj:
    return {"id": new_id("price"), "object": "price", "active": True,
            "billing_scheme": "per_unit", "created": now, "currency": currency,
            "custom_unit_amount": None, "livemode": acct.livemode, "lookup_key": None,
            "metadata": {}, "nickname": None, "product": product, "recurring": recurring,
            "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "recurring" if recurring else "one_time", "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount)}


def _new_invoiceitem(fake: FakeStripe, acct: _Account, now: int,
                     customer: str | None = None) -> Obj:
    return {"id": new_id("ii"), "object": "invoiceitem", "amount": 0, "currency": "usd",
            "customer": customer, "date": now, "description": None, "discountable": True,
            "discounts": [], "invoice": None, "livemode": acct.livemode, "metadata": {},
            "net_amount": 0, "parent": None, "period": {"end": now, "start": now},
            "pricing": None, "proration": False, "quantity": 1, "tax_rates": [],
            "test_clock": None}


def _line_for_item(item: Obj, invoice_id: str) -> Obj:
    return {"id": "il_" + item["id"].split("_", 1)[1], "object": "line_item",
            "amount": item["amount"], "currency": item["currency"],
            "description": item["description"], "discount_amounts": [],
            "discountable": item["discountable"], "discounts": [], "invoice": invoice_id,
            "livemode": item["livemode"], "metadata": copy.deepcopy(item["metadata"]),
            "parent": {"invoice_item_details": {"invoice_item": item["id"], "proration": False,
                                                "proration_details": {"credited_items": None},
                                                "subscription": None},
                       "subscription_item_details": None, "type": "invoice_item_details"},
            "period": dict(item["period"]), "pretax_credit_amounts": [],
            "pricing": copy.deepcopy(item["pricing"]), "quantity": item["quantity"],
            "taxes": []}


def _new_invoice(fake: FakeStripe, acct: _Account, now: int,
                 customer: Obj | None = None) -> Obj:
    customer = customer or {}
    invoice_id = new_id("in")
    return {
        "id": invoice_id, "object": "invoice", "account_country": acct.country,
        "account_name": acct.business_name or acct.display_name, "account_tax_ids": None,
        "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0,
        "amount_shipping": 0, "application": None, "attempt_count": 0, "attempted": False,
        "auto_advance": False,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                          "status": None},
        "automatically_finalizes_at": None, "billing_reason": "manual",
        "collection_method": "charge_automatically", "created": now,
        "currency": acct.default_currency, "custom_fields": None,
        "customer": customer.get("id"), "customer_address": customer.get("address"),
        "customer_email": customer.get("email"), "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"), "customer_shipping": None,
        "customer_tax_exempt": customer.get("tax_exempt", "none"), "customer_tax_ids": [],
        "days_until_due": None, "default_payment_method": None, "default_source": None,
        "default_tax_rates": [], "description": None, "discounts": [], "due_date": None,
        "effective_at": None, "ending_balance": None, "footer": None, "from_invoice": None,
        "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None,
        "lines": _list_object([], f"/v1/invoices/{invoice_id}/lines"),
        "livemode": acct.livemode, "metadata": {}, "next_payment_attempt": None,
        "number": None, "on_behalf_of": None, "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None,
                             "payment_method_types": None},
        "period_end": now, "period_start": now, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": None, "rendering": None,
        "shipping_cost": None, "shipping_details": None, "starting_balance": 0,
        "statement_descriptor": None, "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                               "paid_at": None, "voided_at": None},
        "subtotal": 0, "subtotal_excluding_tax": 0, "test_clock": None, "total": 0,
        "total_discount_amounts": [], "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": None}


def _plan_for(price: Obj) -> Obj:
    recurring = price["recurring"] or {}
    return {"id": price["id"], "object": "plan", "active": price["active"],
            "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": price["billing_scheme"], "created": price["created"],
            "currency": price["currency"], "interval": recurring.get("interval"),
            "interval_count": recurring.get("interval_count"), "livemode": price["livemode"],
            "metadata": copy.deepcopy(price["metadata"]), "meter": None,
            "nickname": price["nickname"], "product": price["product"], "tiers_mode": None,
            "transform_usage": None, "trial_period_days": None,
            "usage_type": recurring.get("usage_type", "licensed")}


def _new_subscription(fake: FakeStripe, acct: _Account, now: int,
                      customer: str | None = None) -> Obj:
    sub_id = new_id("sub")
    return {
        "id": sub_id, "object": "subscription", "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
        "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": now,
        "currency": acct.default_currency, "customer": customer, "days_until_due": None,
        "default_payment_method": None, "default_source": None, "default_tax_rates": [],
        "description": None, "discounts": [], "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": _list_object([], f"/v1/subscription_items?subscription={sub_id}"),
        "latest_invoice": None, "livemode": acct.livemode, "metadata": {},
        "next_pending_invoice_item_invoice": None, "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None,
        "pending_update": None, "schedule": None, "start_date": now, "status": "active",
        "test_clock": None, "transfer_data": None, "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None}


def _new_event(fake: FakeStripe, acct: _Account, now: int) -> Obj:
    return {"id": new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": now, "data": {"object": {}}, "livemode": acct.livemode,
            "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None},
            "type": "customer.created"}


_SKELETONS: dict[str, Callable[[FakeStripe, _Account, int], Obj]] = {
    "customer": _new_customer, "product": _new_product, "price": _new_price,
    "invoiceitem": _new_invoiceitem, "invoice": _new_invoice,
    "subscription": _new_subscription, "event": _new_event}


def _kind(kind: str) -> str:
    """``customers``, ``invoice_items`` and ``subscription`` all name a kind."""
    name = kind.replace("_", "")
    name = name[:-1] if name not in KINDS and name.endswith("s") else name
    if name not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return name


def _kind_of_id(object_id: str) -> str | None:
    prefix = object_id.split("_", 1)[0]
    return next((k for k, p in ID_PREFIX.items() if p == prefix), None)


def _event_name(kind: str, action: str) -> str:
    return f"customer.subscription.{action}" if kind == "subscription" else f"{kind}.{action}"


def _api_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if auth.lower().startswith("basic "):
        try:
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0] or None
        except ValueError:
            return None
    return None


def _fault_error(fault: _Fault) -> ApiError:
    kind, code, message = _FAULT_BODIES.get(fault.status, (
        "api_error", None, "An unknown error occurred" if fault.status < 502
        else "The server is temporarily unavailable. Please retry."))
    return ApiError(fault.status, message, kind=kind, code=code, stored=False,
                    headers=fault.headers)


def _make_handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeStripe/1.0"

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                answer = fake.handle(method, self.path, dict(self.headers.items()), body)
            except Exception as error:  # a bug in the fake or a test's predicate: say so
                answer = (500, {}, ApiError(500, f"fake_stripe error: {error!r}",
                                            kind="api_error").body())
            if answer is None:
                self.close_connection = True
                return
            status, headers, payload = answer
            data = json.dumps(payload, indent=2).encode()
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json",
                                    "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a late answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
