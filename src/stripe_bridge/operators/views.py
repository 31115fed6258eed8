"""JSON shapes of the admin API's objects (Stripe's id as `id`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.models import (
    Customer,
    Invoice,
    OutboxRow,
    Price,
    Product,
    StripeEvent,
    Subscription,
    VelesContract,
    VelesCustomer,
    VelesEvent,
    VelesOrder,
    VelesProduct,
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def customer_json(row: Customer) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "domain": row.domain,
        "metadata": row.metadata_ or {},
        "deleted": row.deleted,
        "created": iso(row.created),
        "match_status": row.match_status,
        "veles_customer_id": row.veles_customer_id,
        "match_method": row.match_method,
        "match_manual": row.match_manual,
        "candidates": row.match_candidates or [],
    }


def price_json(row: Price) -> dict[str, Any]:
    return {
        "id": row.id,
        "product": row.product_id,
        "unit_amount": row.unit_amount,
        "currency": row.currency,
        "type": row.type,
        "recurring_interval": row.recurring_interval,
        "recurring_interval_count": row.recurring_interval_count,
        "active": row.active,
        "deleted": row.deleted,
    }


def product_json(
    row: Product, session: Session, prices: list[Price] | None = None
) -> dict[str, Any]:
    if prices is None:
        prices = products_prices(session, [row])[row.id]
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "active": row.active,
        "deleted": row.deleted,
        "metadata": row.metadata_ or {},
        "created": iso(row.created),
        "match_status": row.match_status,
        "veles_product_id": row.veles_product_id,
        "match_manual": row.match_manual,
        "candidates": row.match_candidates or [],
        "prices": [price_json(price) for price in prices],
    }


def products_json(rows: list[Product], session: Session) -> list[dict[str, Any]]:
    """A page of products with their prices, read in one query for the page."""
    prices = products_prices(session, rows)
    return [product_json(row, session, prices[row.id]) for row in rows]


def products_prices(session: Session, rows: list[Product]) -> dict[str, list[Price]]:
    found: dict[str, list[Price]] = {row.id: [] for row in rows}
    if rows:
        query = select(Price).where(
            Price.workspace_id == rows[0].workspace_id, Price.product_id.in_(list(found))
        )
        for price in session.scalars(query.order_by(Price.id)):
            found[price.product_id or ""].append(price)
    return found


def subscription_json(row: Subscription) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer": row.customer_id,
        "status": row.status,
        "items": [
            {
                "price": item.get("price"),
                "product": item.get("product"),
                "quantity": item.get("quantity"),
            }
            for item in row.items or []
        ],
        "current_period_start": iso(row.current_period_start),
        "current_period_end": iso(row.current_period_end),
        "cancel_at_period_end": row.cancel_at_period_end,
        "canceled_at": iso(row.canceled_at),
        "created": iso(row.created),
        "veles_contract_id": (row.metadata_ or {}).get("veles_contract_id"),
    }


def invoice_json(row: Invoice) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer": row.customer_id,
        "subscription": row.subscription_id,
        "status": row.status,
        "amount_due": row.amount_due,
        "amount_paid": row.amount_paid,
        "currency": row.currency,
        "number": row.number,
        "paid_at": iso(row.paid_at),
        "created": iso(row.created),
        "veles_order_id": (row.metadata_ or {}).get("veles_order_id"),
        "deleted": row.deleted,
    }


def event_json(row: StripeEvent | VelesEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "reason": row.reason,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "object_id": row.object_id,
        "livemode": getattr(row, "livemode", None),
        "created": row.created,
        "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
    }


def veles_customer_json(row: VelesCustomer) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "domain": row.domain,
        "origin": row.origin,
    }


def veles_product_json(row: VelesProduct) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "sku": row.sku,
        "unit_label": row.unit_label,
        "prices": row.prices or [],
        "origin": row.origin,
    }


def outbox_json(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at),
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def _outbox_of(
    session: Session, workspace_id: str, aggregate_type: str, aggregate_id: str
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(OutboxRow)
        .where(
            OutboxRow.workspace_id == workspace_id,
            OutboxRow.aggregate_type == aggregate_type,
            OutboxRow.aggregate_id == aggregate_id,
        )
        .order_by(OutboxRow.id)
    )
    return [outbox_json(row) for row in rows]


def order_json(row: VelesOrder, session: Session) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "status": row.status,
        "currency": row.currency,
        "lines": row.lines,
        "stripe_invoice_id": row.stripe_invoice_id,
        "invoice_status": row.invoice_status,
        "payment_status": row.payment_status,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "outbox": _outbox_of(session, row.workspace_id, "order", row.id),
    }


def contract_json(row: VelesContract, session: Session) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "status": row.status,
        "currency": row.currency,
        "interval": row.interval,
        "start_date": row.start_date,
        "lines": row.lines,
        "stripe_subscription_id": row.stripe_subscription_id,
        "subscription_status": row.subscription_status,
        "outbox": _outbox_of(session, row.workspace_id, "contract", row.id),
    }
