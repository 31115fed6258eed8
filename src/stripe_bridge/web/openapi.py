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

from stripe_bridge.web.openapi_schemas import COMPONENTS, Schema, integer, ref, string

PREFIX = "/admin/api"
E = TypeVar("E", bound=Callable[..., Any])


class Undeclared(Exception):
    """An admin route whose endpoint has no `@declare(...)`."""


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
            yield from _routes_in(route.path, route.routes)


def _routes_in(prefix: str, routes: Iterable[BaseRoute]) -> Iterable[tuple[str, Route]]:
    """Routes under `prefix`, those of nested mounts (a workspace's scope) included."""
    for inner in routes:
        if isinstance(inner, Route):
            yield prefix + inner.path, inner
        elif isinstance(inner, Mount):
            yield from _routes_in(prefix + inner.path, inner.routes)


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
