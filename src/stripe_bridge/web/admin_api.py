"""The JSON admin API under /admin/api (bearer token): the read side of the mirrors."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stripe_bridge.context import Context
from stripe_bridge.errors import NotFound
from stripe_bridge.models import (
    Customer,
    Invoice,
    Price,
    Product,
    StripeEvent,
    Subscription,
    VelesContract,
    VelesCustomer,
    VelesOrder,
    VelesProduct,
)
from stripe_bridge.operators import names
from stripe_bridge.operators.views import (
    contract_json,
    customer_json,
    event_json,
    invoice_json,
    order_json,
    price_json,
    products_json,
    subscription_json,
    veles_customer_json,
    veles_product_json,
)
from stripe_bridge.web.admin_auth import scope
from stripe_bridge.web.admin_paging import listed, page, searched, within
from stripe_bridge.web.openapi import PAGING, Query, declare, document
from stripe_bridge.web.openapi_schemas import page as page_of
from stripe_bridge.web.openapi_schemas import ref, string
from stripe_bridge.web.responses import JSON


def bridge_of(request: Request) -> Context:
    bridge: Context = request.app.state.bridge
    return bridge


MATCH_STATUS = Query("match_status", string(), "matched, not_matched (customers); name_match, …")


@declare(
    "Stripe customers",
    answers={200: page_of("Customer"), 400: None},
    query=(*PAGING, MATCH_STATUS),
)
async def list_customers(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(Customer, workspace_id),
            request,
            Customer.name,
            Customer.email,
            Customer.id,
        )
        if match_status := request.query_params.get("match_status"):
            query = query.where(Customer.match_status == match_status)
        return names.customers(
            session, workspace_id, page(session, request, query, Customer.id, customer_json)
        )

    return JSON(await listed(request, build))


@declare(
    "Stripe products, with their prices",
    answers={200: page_of("Product"), 400: None},
    query=(*PAGING, MATCH_STATUS, Query("active", string(enum=["true", "false"]))),
)
async def list_products(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(within(Product, workspace_id), request, Product.name, Product.id)
        if (active := request.query_params.get("active")) in ("true", "false"):
            query = query.where(Product.active == (active == "true"))
        if match_status := request.query_params.get("match_status"):
            query = query.where(Product.match_status == match_status)
        listed_ = page(
            session,
            request,
            query,
            Product.id,
            render_all=lambda rows: products_json(rows, session),
        )
        return names.products(session, workspace_id, listed_, bridge_of(request).settings.veles_url)

    return JSON(await listed(request, build))


@declare("Stripe prices", answers={200: page_of("Price"), 400: None}, query=PAGING)
async def list_prices(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(Price, workspace_id), request, Price.id, Price.product_id, Price.nickname
        )
        return page(session, request, query, Price.id, price_json)

    return JSON(await listed(request, build))


@declare(
    "Stripe subscriptions",
    answers={200: page_of("Subscription"), 400: None},
    query=(*PAGING, Query("status", string())),
)
async def list_subscriptions(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        def by_name(pattern: str) -> Any:  # the console shows customers by name
            names = select(Customer.id).where(
                Customer.workspace_id == workspace_id, Customer.name.ilike(pattern, escape="\\")
            )
            return Subscription.customer_id.in_(names)

        query = searched(
            within(Subscription, workspace_id),
            request,
            Subscription.id,
            Subscription.customer_id,
            also=by_name,
        )
        if status := request.query_params.get("status"):
            query = query.where(Subscription.status == status)
        return names.subscriptions(
            session, workspace_id, page(session, request, query, Subscription.id, subscription_json)
        )

    return JSON(await listed(request, build))


@declare(
    "Stripe invoices",
    answers={200: page_of("Invoice"), 400: None},
    query=(*PAGING, Query("status", string())),
)
async def list_invoices(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(Invoice, workspace_id),
            request,
            Invoice.id,
            Invoice.customer_id,
            Invoice.number,
        )
        if status := request.query_params.get("status"):
            query = query.where(Invoice.status == status)
        return page(session, request, query, Invoice.id, invoice_json)

    return JSON(await listed(request, build))


@declare(
    "Stripe events in the inbox",
    answers={200: page_of("Event"), 400: None},
    query=(*PAGING, Query("status", string()), Query("type", string())),
)
async def list_events(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(StripeEvent, workspace_id), request, StripeEvent.id, StripeEvent.object_id
        )
        if status := request.query_params.get("status"):
            query = query.where(StripeEvent.status == status)
        if event_type := request.query_params.get("type"):
            query = query.where(StripeEvent.type == event_type)
        return page(session, request, query, StripeEvent.id, event_json)

    return JSON(await listed(request, build))


@declare("Veles customers", answers={200: page_of("VelesCustomer"), 400: None}, query=PAGING)
async def list_veles_customers(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(VelesCustomer, workspace_id),
            request,
            VelesCustomer.name,
            VelesCustomer.email,
        )
        return page(session, request, query, VelesCustomer.id, veles_customer_json)

    return JSON(await listed(request, build))


@declare("Veles products", answers={200: page_of("VelesProduct"), 400: None}, query=PAGING)
async def list_veles_products(request: Request) -> Response:
    def build(session: Session, workspace_id: str) -> dict[str, Any]:
        query = searched(
            within(VelesProduct, workspace_id), request, VelesProduct.name, VelesProduct.sku
        )
        return page(session, request, query, VelesProduct.id, veles_product_json)

    return JSON(await listed(request, build))


def _one(
    model: type[VelesOrder] | type[VelesContract],
    render: Callable[[Any, Session], dict[str, Any]],
    noun: str,
    schema: str,
) -> Callable[[Request], Any]:
    """`GET /admin/api/<noun>s/{veles_id}`: one Veles record and its outbox rows, or 404."""

    @declare(f"One Veles {noun} and its outbox rows", answers={200: ref(schema), 404: None})
    async def endpoint(request: Request) -> Response:
        workspace_id = await scope(request)
        bridge: Context = request.app.state.bridge
        veles_id = str(request.path_params["veles_id"])

        def work() -> dict[str, Any]:
            with bridge.session_factory() as session:
                row = session.get(model, (workspace_id, veles_id))
                if row is None:
                    raise NotFound(f"no {noun} {veles_id}")
                return render(row, session)

        return JSON(await run_in_threadpool(work))

    return endpoint


get_order = _one(VelesOrder, order_json, "order", "Order")
get_contract = _one(VelesContract, contract_json, "contract", "Contract")


@declare(
    "This document: the admin API's OpenAPI 3 description, built from its routes",
    answers={200: {"type": "object"}},
)
async def openapi_json(request: Request) -> Response:
    """Behind the token like every /admin/api route: it maps the operator surface."""
    await scope(request)
    return JSON(document(request.app.routes, version=_version()))


def _version() -> str:
    try:
        return metadata.version("stripe-bridge")
    except metadata.PackageNotFoundError:
        return "unknown"


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/orders/{veles_id}", get_order),
    Route("/contracts/{veles_id}", get_contract),
    Route("/veles/customers", list_veles_customers),
    Route("/veles/products", list_veles_products),
    Route("/customers", list_customers),
    Route("/products", list_products),
    Route("/prices", list_prices),
    Route("/subscriptions", list_subscriptions),
    Route("/invoices", list_invoices),
    Route("/events", list_events),
]
