"""What the console shows beside an id: the names of the Veles records and Stripe objects a
page of the admin API refers to, read with one query per table for the whole page.

- customers: `veles_customer_name`, and `candidate_customers` (id, name, email, domain of each
  candidate), so that an operator sees which "Hooli" they pick;
- products: `veles_product_name`, `veles_product_url` (BRIDGE_VELES_URL), `candidate_products`;
- subscriptions: `customer_name`, and each item's `product_name`, `unit_amount`, `currency`
  and `interval` from the price mirror."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.models import Customer, Price, Product, VelesCustomer, VelesProduct
from stripe_bridge.operators.views import veles_customer_json, veles_product_json

Page = dict[str, Any]


def _by_id(
    session: Session, model: Any, workspace_id: str, ids: Iterable[str | None]
) -> dict[str, Any]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = session.scalars(
        select(model).where(model.workspace_id == workspace_id, model.id.in_(wanted))
    )
    return {row.id: row for row in rows}


def customers(session: Session, workspace_id: str, page: Page) -> Page:
    items = page["data"]
    ids = [i for c in items for i in (c["veles_customer_id"], *c["candidates"])]
    known = _by_id(session, VelesCustomer, workspace_id, ids)
    for item in items:
        linked = known.get(item["veles_customer_id"])
        item["veles_customer_name"] = linked.name if linked is not None else None
        item["candidate_customers"] = [
            veles_customer_json(known[i]) for i in item["candidates"] if i in known
        ]
    return page


def products(session: Session, workspace_id: str, page: Page, url: str | None) -> Page:
    items = page["data"]
    ids = [i for p in items for i in (p["veles_product_id"], *p["candidates"])]
    known = _by_id(session, VelesProduct, workspace_id, ids)
    for item in items:
        linked = known.get(item["veles_product_id"])
        item["veles_product_name"] = linked.name if linked is not None else None
        item["veles_product_url"] = (
            veles_url(url, workspace_id, linked.id) if url and linked is not None else None
        )
        item["candidate_products"] = [
            veles_product_json(known[i]) for i in item["candidates"] if i in known
        ]
    return page


def veles_url(template: str, workspace_id: str, record_id: str) -> str:
    return template.replace("{workspace}", quote(workspace_id, safe="")).replace(
        "{id}", quote(record_id, safe="")
    )


def subscriptions(session: Session, workspace_id: str, page: Page) -> Page:
    items = page["data"]
    lines = [line for s in items for line in s["items"]]
    names = _by_id(session, Customer, workspace_id, (s["customer"] for s in items))
    prices = _by_id(session, Price, workspace_id, (line["price"] for line in lines))
    product_ids = [line["product"] or _product_of(prices.get(line["price"])) for line in lines]
    products_ = _by_id(session, Product, workspace_id, product_ids)
    for item in items:
        customer = names.get(item["customer"])
        item["customer_name"] = customer.name if customer is not None else None
        for line in item["items"]:
            price = prices.get(line["price"])
            product = products_.get(line["product"] or _product_of(price) or "")
            line["product_name"] = product.name if product is not None else None
            line["unit_amount"] = price.unit_amount if price is not None else None
            line["currency"] = price.currency if price is not None else None
            line["interval"] = price.recurring_interval if price is not None else None
    return page


def _product_of(price: Price | None) -> str | None:
    return price.product_id if price is not None else None
