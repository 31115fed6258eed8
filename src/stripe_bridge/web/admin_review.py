"""The admin API's review actions (POST): link, create or unlink a Stripe customer; match,
import, ignore or unlink a Stripe product. Each answers the record as it now is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.matching import review
from stripe_bridge.operators.views import (
    customer_json,
    product_json,
    veles_customer_json,
    veles_product_json,
)
from stripe_bridge.web.admin_auth import refuse_nul, scope
from stripe_bridge.web.openapi import declare
from stripe_bridge.web.openapi_schemas import obj, ref, string
from stripe_bridge.web.responses import JSON

WITH_VELES_CUSTOMER = {"allOf": [ref("Customer"), obj({"veles_customer": ref("VelesCustomer")})]}
WITH_VELES_PRODUCT = {"allOf": [ref("Product"), obj({"veles_product": ref("VelesProduct")})]}


async def body_field(request: Request, name: str) -> str:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"body must be a JSON object with a string {name!r}")
    return refuse_nul(value, name)


async def _act(
    request: Request, workspace_id: str, action: Callable[[Session, str], dict[str, Any]]
) -> Response:
    bridge: Context = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            return action(session, workspace_id)

    return JSON(await run_in_threadpool(work))


def _id(request: Request) -> str:
    return str(request.path_params["stripe_id"])


@declare(
    "Link a Stripe customer to an existing Veles customer",
    answers={200: ref("Customer"), 400: None, 404: None, 409: None},
    body=obj({"veles_customer_id": string(minLength=1)}),
)
async def link_customer(request: Request) -> Response:
    ws = await scope(request)
    veles_id = await body_field(request, "veles_customer_id")
    return await _act(
        request, ws, lambda s, w: customer_json(review.link_customer(s, w, _id(request), veles_id))
    )


@declare(
    "Create a Veles customer from the Stripe customer, linked",
    answers={200: WITH_VELES_CUSTOMER, 404: None, 409: None},
)
async def create_customer(request: Request) -> Response:
    ws = await scope(request)

    def action(session: Session, workspace_id: str) -> dict[str, Any]:
        row, veles = review.create_customer(session, workspace_id, _id(request))
        return {**customer_json(row), "veles_customer": veles_customer_json(veles)}

    return await _act(request, ws, action)


@declare("Unlink a Stripe customer", answers={200: ref("Customer"), 404: None, 409: None})
async def unlink_customer(request: Request) -> Response:
    ws = await scope(request)
    return await _act(
        request, ws, lambda s, w: customer_json(review.unlink_customer(s, w, _id(request)))
    )


@declare(
    "Match a Stripe product to an existing Veles product (`manual`)",
    answers={200: ref("Product"), 400: None, 404: None, 409: None},
    body=obj({"veles_product_id": string(minLength=1)}),
)
async def match_product(request: Request) -> Response:
    ws = await scope(request)
    veles_id = await body_field(request, "veles_product_id")
    return await _act(
        request,
        ws,
        lambda s, w: product_json(review.match_product(s, w, _id(request), veles_id), s),
    )


@declare(
    "Import a Stripe product as a new Veles product (`import`)",
    answers={200: WITH_VELES_PRODUCT, 404: None, 409: None},
)
async def import_product(request: Request) -> Response:
    ws = await scope(request)

    def action(session: Session, workspace_id: str) -> dict[str, Any]:
        row, veles = review.import_product(session, workspace_id, _id(request))
        return {**product_json(row, session), "veles_product": veles_product_json(veles)}

    return await _act(request, ws, action)


@declare("Ignore a Stripe product", answers={200: ref("Product"), 404: None, 409: None})
async def ignore_product(request: Request) -> Response:
    ws = await scope(request)
    return await _act(
        request, ws, lambda s, w: product_json(review.ignore_product(s, w, _id(request)), s)
    )


@declare(
    "Unlink (or un-ignore) a Stripe product", answers={200: ref("Product"), 404: None, 409: None}
)
async def unlink_product(request: Request) -> Response:
    ws = await scope(request)
    return await _act(
        request, ws, lambda s, w: product_json(review.unlink_product(s, w, _id(request)), s)
    )


routes = [
    Route("/customers/{stripe_id}/link", link_customer, methods=["POST"]),
    Route("/customers/{stripe_id}/create", create_customer, methods=["POST"]),
    Route("/customers/{stripe_id}/unlink", unlink_customer, methods=["POST"]),
    Route("/products/{stripe_id}/match", match_product, methods=["POST"]),
    Route("/products/{stripe_id}/import", import_product, methods=["POST"]),
    Route("/products/{stripe_id}/ignore", ignore_product, methods=["POST"]),
    Route("/products/{stripe_id}/unlink", unlink_product, methods=["POST"]),
]
