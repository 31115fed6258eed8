"""Routing and execution: each resource module's ``ROUTES``, matched to a request and run.

A resource module exposes ``ROUTES``, a list of ``(method, path pattern, handler)``; a handler
is a plain function ``handler(ctx) -> dict`` (see ``context``). ``execute`` runs one request:
it replays a stored idempotent answer, or runs the route's handler and rolls back what it
changed when it fails, and stores the answer under the request's idempotency key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from urllib.parse import unquote

from tests.fake_stripe import (
    accounts,
    customers,
    events,
    invoice_items,
    invoices,
    prices,
    products,
    subscriptions,
    webhook_endpoints,
)
from tests.fake_stripe.context import Ctx, Store
from tests.fake_stripe.params import ApiError, Params
from tests.fake_stripe.records import IDEMPOTENCY_WINDOW, Account, Obj, RequestRecord

Handler = Callable[[Ctx], Obj]
ROUTES: list[tuple[str, str, Handler]] = [
    *accounts.ROUTES,
    *customers.ROUTES,
    *products.ROUTES,
    *prices.ROUTES,
    *invoice_items.ROUTES,
    *invoices.ROUTES,
    *subscriptions.ROUTES,
    *events.ROUTES,
    *webhook_endpoints.ROUTES,
]
_COMPILED = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), handler)
    for method, path, handler in ROUTES
]


def execute(
    store: Store, account: Account, record: RequestRecord
) -> tuple[int, Obj, dict[str, str]]:
    """Answer ``record`` for ``account``: (status, body, extra headers); ApiError when the
    request failed before it ran (nothing stored under its idempotency key)."""
    key = record.idempotency_key
    entry = account.idempotency.get(key) if key else None
    if key and entry and store.now() - entry["created"] >= IDEMPOTENCY_WINDOW:
        del account.idempotency[key]
        entry = None
    if entry is not None:
        if (entry["method"], entry["path"], entry["params"]) != (
            record.method,
            record.path,
            record.params,
        ):
            raise ApiError(
                400,
                "Keys for idempotent requests can only be used with the "
                "same parameters they were first used with. Try using a key "
                f"other than '{key}' if you meant to execute a different "
                "request.",
                kind="idempotency_error",
                stored=False,
            )
        record.replayed = True
        return (
            entry["status"],
            copy.deepcopy(entry["body"]),
            {"Idempotent-Replayed": "true", "Original-Request": entry["request_id"]},
        )
    handler, args = route(record)
    ctx = Ctx(
        store, account, Params(record.params), args, record.request_id, key, record.application
    )
    store.undo = []
    try:
        status, payload = 200, handler(ctx)
    except ApiError as error:
        store.rollback()
        if not error.stored:
            raise
        status, payload = error.status, error.body()
    except Exception as error:  # a bug in the fake: answer it loudly, change nothing
        store.rollback()
        raise ApiError(
            500, f"fake_stripe bug: {error!r}", kind="api_error", stored=False
        ) from error
    if key:
        account.idempotency[key] = {
            "method": record.method,
            "path": record.path,
            "params": record.params,
            "status": status,
            "body": copy.deepcopy(payload),
            "created": store.now(),
            "request_id": record.request_id,
        }
    return status, payload, {}


def route(record: RequestRecord) -> tuple[Handler, dict[str, str]]:
    for method, pattern, handler in _COMPILED:
        match = pattern.match(record.path)
        if match and method == record.method:
            args = {k: unquote(v) for k, v in match.groupdict().items()}
            return handler, args
    raise ApiError(
        404,
        f"Unrecognized request URL ({record.method}: {record.path}). Please "
        "see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
        stored=False,
    )
