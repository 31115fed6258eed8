"""The admin API's OpenAPI 3 document, built by walking the app's routes.

Each admin endpoint declares its operation next to its code (`@declare(...)`: summary, query
parameters, body, answers); `document(app)` walks the routes under /admin/api and refuses
(`Undeclared`) a route whose endpoint declares nothing, so the document cannot drift from the
routes. Path parameters come from the route's own path. Schemas are small JSON Schema builders
(OpenAPI 3.0 dialect: `nullable`), shared through `components`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Mount, Route

Schema = dict[str, Any]
PREFIX = "/admin/api"
E = TypeVar("E", bound=Callable[..., Any])


class Undeclared(Exception):
    """An admin route whose endpoint has no `@declare(...)`."""


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def integer(**extra: Any) -> Schema:
    return {"type": "integer", **extra}


def boolean() -> Schema:
    return {"type": "boolean"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(properties: Mapping[str, Schema], *, optional: Iterable[str] = ()) -> Schema:
    """An object with these properties, all required but `optional`; more are allowed."""
    required = [name for name in properties if name not in set(optional)]
    return {"type": "object", "properties": dict(properties), "required": required}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def page(item: str) -> Schema:
    return obj({"data": array(ref(item)), "next_cursor": nullable(string())})


TEXT, TIME = nullable(string()), nullable(string(format="date-time"))
ANY_OBJECT: Schema = {"type": "object"}
_PRICE = {
    "id": string(),
    "product": TEXT,
    "unit_amount": nullable(integer()),
    "currency": TEXT,
    "type": TEXT,
    "recurring_interval": TEXT,
    "recurring_interval_count": nullable(integer()),
    "active": boolean(),
    "deleted": boolean(),
}
_OUTBOX = {
    "id": integer(),
    "kind": string(),
    "status": string(),
    "attempts": integer(),
    "next_attempt_at": TIME,
    "last_error": TEXT,
    "created_at": TIME,
    "sent_at": TIME,
}
_SYNC_RUN = {
    "kind": string(),
    "status": string(),
    "seen": nullable(integer()),
    "started_at": TIME,
    "finished_at": TIME,
    "error": TEXT,
}
COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": obj({"code": string(), "message": string()})}),
    "Customer": obj(
        {
            "id": string(),
            "name": TEXT,
            "email": TEXT,
            "domain": TEXT,
            "metadata": ANY_OBJECT,
            "deleted": boolean(),
            "created": TIME,
            "match_status": string(),
            "veles_customer_id": TEXT,
            "match_method": TEXT,
            "match_manual": boolean(),
            "candidates": array(string()),
        }
    ),
    "Price": obj(_PRICE),
    "Product": obj(
        {
            "id": string(),
            "name": TEXT,
            "description": TEXT,
            "active": boolean(),
            "deleted": boolean(),
            "metadata": ANY_OBJECT,
            "created": TIME,
            "match_status": string(),
            "veles_product_id": TEXT,
            "match_manual": boolean(),
            "candidates": array(string()),
            "prices": array(ref("Price")),
        }
    ),
    "Subscription": obj(
        {
            "id": string(),
            "customer": TEXT,
            "status": TEXT,
            "items": array(obj({"price": TEXT, "product": TEXT, "quantity": nullable(integer())})),
            "current_period_start": TIME,
            "current_period_end": TIME,
            "cancel_at_period_end": nullable(boolean()),
            "canceled_at": TIME,
            "created": TIME,
            "veles_contract_id": TEXT,
        }
    ),
    "Invoice": obj(
        {
            "id": string(),
            "customer": TEXT,
            "subscription": TEXT,
            "status": TEXT,
            "amount_due": nullable(integer()),
            "amount_paid": nullable(integer()),
            "currency": TEXT,
            "number": TEXT,
            "paid_at": TIME,
            "created": TIME,
            "veles_order_id": TEXT,
        }
    ),
    "Event": obj(
        {
            "id": string(),
            "type": string(),
            "status": string(enum=["received", "processed", "ignored", "failed", "discarded"]),
            "reason": TEXT,
            "attempts": integer(minimum=0),
            "last_error": TEXT,
            "object_id": TEXT,
            "livemode": nullable(boolean()),
            "created": integer(),
            "received_at": string(format="date-time"),
            "processed_at": TIME,
        }
    ),
    "VelesCustomer": obj(
        {"id": string(), "name": TEXT, "email": TEXT, "domain": TEXT, "origin": TEXT}
    ),
    "VelesProduct": obj(
        {
            "id": string(),
            "name": TEXT,
            "sku": TEXT,
            "unit_label": TEXT,
            "prices": array(ANY_OBJECT),
            "origin": TEXT,
        }
    ),
    "OutboxRow": obj(_OUTBOX),
    "Order": obj(
        {
            "id": string(),
            "customer_id": TEXT,
            "status": TEXT,
            "currency": TEXT,
            "lines": nullable(array(ANY_OBJECT)),
            "stripe_invoice_id": TEXT,
            "invoice_status": TEXT,
            "payment_status": TEXT,
            "created_at": TIME,
            "updated_at": TIME,
            "outbox": array(ref("OutboxRow")),
        }
    ),
    "Contract": obj(
        {
            "id": string(),
            "customer_id": TEXT,
            "status": TEXT,
            "currency": TEXT,
            "interval": TEXT,
            "start_date": TEXT,
            "lines": nullable(array(ANY_OBJECT)),
            "stripe_subscription_id": TEXT,
            "subscription_status": TEXT,
            "outbox": array(ref("OutboxRow")),
        }
    ),
    "SyncRun": obj(_SYNC_RUN),
    "Connection": obj(
        {
            "status": string(enum=["connected", "disconnected", "not_connected"]),
            "account_id": TEXT,
            "account_name": TEXT,
            "mode": string(enum=["test", "live"]),
            "connected_at": TIME,
            "customers_last_synced_at": TIME,
            "products_last_synced_at": TIME,
            "subscriptions_last_synced_at": TIME,
            "api_key_last4": TEXT,
            "webhook_secrets": string(enum=["stored", "environment", "none"]),
            "sync": array(ref("SyncRun")),
            "unmatched_customers": integer(minimum=0),
            "unmatched_products": integer(minimum=0),
            "inbox": obj(
                {
                    "by_status": {"type": "object", "additionalProperties": integer()},
                    "oldest_unprocessed_age_seconds": nullable({"type": "number"}),
                    "recent_failures": array(
                        obj(
                            {
                                "id": string(),
                                "type": string(),
                                "attempts": integer(),
                                "last_error": TEXT,
                            }
                        )
                    ),
                }
            ),
        }
    ),
    "DeadLetter": obj(
        {
            "id": string(),
            "kind": string(enum=["event", "veles", "outbox"]),
            "type": string(),
            "subject": TEXT,
            "attempts": integer(),
            "first_failed_at": TIME,
            "last_failed_at": TIME,
            "error": TEXT,
            "error_type": TEXT,
            "replays": integer(),
            "replayed_at": TIME,
            "traceback": TEXT,
        },
        optional=("traceback",),
    ),
}

ERRORS = {
    400: "malformed request",
    401: "missing or wrong bearer token",
    403: "admin disabled: no token configured",
    404: "no such record",
    409: "conflicts with the current state",
    422: "Stripe refused the request",
}


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter."""

    name: str
    schema: Schema
    description: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    answers: Mapping[int, Schema | None]  # status → body schema (None: an Error)
    query: tuple[Query, ...] = ()
    body: Schema | None = None


_DECLARED: dict[Callable[..., Any], Operation] = {}


def declare(
    summary: str,
    *,
    answers: Mapping[int, Schema | None],
    query: Iterable[Query] = (),
    body: Schema | None = None,
) -> Callable[[E], E]:
    """Declare an admin endpoint's operation; 401 and 403 are added to every one."""

    def wrap(endpoint: E) -> E:
        _DECLARED[endpoint] = Operation(
            summary, {**answers, 401: None, 403: None}, tuple(query), body
        )
        return endpoint

    return wrap


PAGING = (
    Query("limit", integer(minimum=1, maximum=100, default=50), "page size"),
    Query("cursor", string(), "`next_cursor` of the previous page"),
    Query("q", string(), "search"),
)


def _answer(status: int, schema: Schema | None) -> Schema:
    description = ERRORS.get(status, "OK") if schema is None else "OK"
    content = {"application/json": {"schema": schema if schema is not None else ref("Error")}}
    return {"description": description, "content": content}


def _operation(path: str, method: str, operation: Operation) -> Schema:
    parameters: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": string(minLength=1)}
        for name in re.findall(r"{(\w+)", path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema}
        | ({"description": q.description} if q.description else {})
        for q in operation.query
    ]
    answers = dict(operation.answers)
    if "{" in path:  # a value the router cannot match (e.g. with a newline) answers 404
        answers.setdefault(404, None)
    out: Schema = {
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}".rstrip("_"),
        "summary": operation.summary,
        "parameters": parameters,
        "responses": {
            str(status): _answer(status, schema) for status, schema in sorted(answers.items())
        },
    }
    if operation.body is not None:
        out["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": operation.body}},
        }
    return out


def _admin_routes(routes: Iterable[BaseRoute]) -> Iterable[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount) and route.path == PREFIX:
            for inner in route.routes:
                if isinstance(inner, Route):
                    yield route.path + inner.path, inner


def document(routes: Iterable[BaseRoute], *, version: str) -> Schema:
    """The OpenAPI document of every route under /admin/api; Undeclared for one without."""
    paths: dict[str, Schema] = {}
    for path, route in _admin_routes(routes):
        operation = _DECLARED.get(route.endpoint)
        if operation is None:
            raise Undeclared(f"{path} ({route.name}) declares no operation")
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(path, method, operation)
    return {
        "openapi": "3.0.3",
        "info": {"title": "stripe-bridge admin API", "version": version},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
