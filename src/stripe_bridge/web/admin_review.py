"""The admin API's review actions (POST) and the connection summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stripe_bridge import review
from stripe_bridge.bootstrap import Bridge
from stripe_bridge.errors import BadRequest
from stripe_bridge.status import status_object
from stripe_bridge.web.admin_api import require_admin
from stripe_bridge.web.responses import JSON
from stripe_bridge.web.serializers import (
    customer_json,
    product_json,
    veles_customer_json,
    veles_product_json,
)


async def _body_field(request: Request, name: str) -> str:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"body must be a JSON object with a string {name!r}")
    return value


async def _act(request: Request, action: Callable[[Session], dict[str, Any]]) -> Response:
    bridge: Bridge = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            return action(session)

    return JSON(await run_in_threadpool(work))


def _id(request: Request) -> str:
    return str(request.path_params["stripe_id"])


async def link_customer(request: Request) -> Response:
    require_admin(request)
    veles_id = await _body_field(request, "veles_customer_id")
    return await _act(
        request, lambda s: customer_json(review.link_customer(s, _id(request), veles_id))
    )


async def create_customer(request: Request) -> Response:
    require_admin(request)

    def action(session: Session) -> dict[str, Any]:
        row, veles = review.create_customer(session, _id(request))
        return {**customer_json(row), "veles_customer": veles_customer_json(veles)}

    return await _act(request, action)


async def unlink_customer(request: Request) -> Response:
    require_admin(request)
    return await _act(request, lambda s: customer_json(review.unlink_customer(s, _id(request))))


async def match_product(request: Request) -> Response:
    require_admin(request)
    veles_id = await _body_field(request, "veles_product_id")
    return await _act(
        request, lambda s: product_json(review.match_product(s, _id(request), veles_id), s)
    )


async def import_product(request: Request) -> Response:
    require_admin(request)

    def action(session: Session) -> dict[str, Any]:
        row, veles = review.import_product(session, _id(request))
        return {**product_json(row, session), "veles_product": veles_product_json(veles)}

    return await _act(request, action)


async def ignore_product(request: Request) -> Response:
    require_admin(request)
    return await _act(request, lambda s: product_json(review.ignore_product(s, _id(request)), s))


async def unlink_product(request: Request) -> Response:
    require_admin(request)
    return await _act(request, lambda s: product_json(review.unlink_product(s, _id(request)), s))


async def get_connection(request: Request) -> Response:
    require_admin(request)
    bridge: Bridge = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory() as session:
            return status_object(session, bridge.settings)

    return JSON(await run_in_threadpool(work))


routes = [
    Route("/connection", get_connection, methods=["GET"]),
    Route("/customers/{stripe_id}/link", link_customer, methods=["POST"]),
    Route("/customers/{stripe_id}/create", create_customer, methods=["POST"]),
    Route("/customers/{stripe_id}/unlink", unlink_customer, methods=["POST"]),
    Route("/products/{stripe_id}/match", match_product, methods=["POST"]),
    Route("/products/{stripe_id}/import", import_product, methods=["POST"]),
    Route("/products/{stripe_id}/ignore", ignore_product, methods=["POST"]),
    Route("/products/{stripe_id}/unlink", unlink_product, methods=["POST"]),
]
