"""The fake's shared vocabulary: ids, kinds, the request log, accounts and small helpers."""

from __future__ import annotations

import calendar
import copy
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stripe_bridge.stripe_api import API_VERSION as API_VERSION  # the client's pin: answer in it

IDEMPOTENCY_WINDOW = 24 * 3600
IDEMPOTENT_METHODS = ("POST", "DELETE")
KINDS = (
    "customer",
    "product",
    "price",
    "invoiceitem",
    "invoice",
    "subscription",
    "event",
    "webhook_endpoint",
)
ID_PREFIX = {
    "customer": "cus",
    "product": "prod",
    "price": "price",
    "invoiceitem": "ii",
    "invoice": "in",
    "subscription": "sub",
    "event": "evt",
    "webhook_endpoint": "we",
}
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


def kind_name(kind: str) -> str:
    """``customers``, ``invoice_items``, ``webhook_endpoints`` and ``subscription`` all name a
    kind."""
    for name in (kind, kind[:-1] if kind.endswith("s") else kind):
        for candidate in (name, name.replace("_", "")):
            if candidate in KINDS:
                return candidate
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def kind_of_id(object_id: str) -> str | None:
    prefix = object_id.split("_", 1)[0]
    return next((k for k, p in ID_PREFIX.items() if p == prefix), None)


def event_name(kind: str, action: str) -> str:
    return f"customer.subscription.{action}" if kind == "subscription" else f"{kind}.{action}"


def list_object(data: list[Obj], url: str) -> Obj:
    """A list embedded in an object (``lines``, ``items``): all of it, in insertion order."""
    return {"object": "list", "data": data, "has_more": False, "total_count": len(data), "url": url}


def add_interval(ts: int, interval: str, count: int) -> int:
    moment = datetime.fromtimestamp(ts, UTC)
    if interval in ("day", "week"):
        moment += timedelta(days=count * (7 if interval == "week" else 1))
    else:
        months = moment.month - 1 + count * (12 if interval == "year" else 1)
        year, month = moment.year + months // 12, months % 12 + 1
        moment = moment.replace(
            year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
        )
    return int(moment.timestamp())


def visible(obj: Obj) -> Obj:
    """A deep copy of ``obj`` as Stripe shows it: without the fake's own ``_``-prefixed fields
    (state that Stripe keeps but does not answer with, such as an invoice's ``days_until_due``)."""
    return copy.deepcopy({k: v for k, v in obj.items() if not k.startswith("_")})


def previous_attributes(old: Obj, new: Obj) -> Obj:
    """``data.previous_attributes`` of an ``*.updated`` event: old values of what changed."""
    changed: Obj = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value or key.startswith("_"):
            continue
        if key == "metadata":
            changed[key] = {
                k: before.get(k) for k in {*before, *value} if before.get(k) != value.get(k)
            }
        elif isinstance(before, dict) and before.get("object") == "list":
            changed[key] = {"data": before["data"]}
        else:
            changed[key] = before
    return changed


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
    account: str | None = None  # the account the request acted on
    replayed: bool = False
    key_account: str | None = None  # the account the key belongs to (a platform's, for Connect)
    application: str | None = None  # the platform's client id, when it acted for an account


@dataclass
class Account:
    """One Stripe account: its objects by kind, deleted ids, stored idempotency keys, and the
    platforms it is connected to (whose keys may act on it with ``Stripe-Account``)."""

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
    platforms: set[str] = field(default_factory=set)
