"""The review actions an operator takes on unmatched records (admin API and CLI share these).

Every action is a manual decision (`match_manual`): automatic matching never undoes it.
Errors: unknown id → NotFound (404); deleted, inactive or already linked → Conflict (409)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.errors import Conflict, NotFound
from stripe_bridge.matching.linking import (
    CUSTOMER_LOCK,
    PRODUCT_LOCK,
    matching_lock,
    rematch_product,
    set_keys,
    set_product_key,
)
from stripe_bridge.models import (
    IGNORED_MATCH,
    IMPORT,
    MANUAL,
    MATCHED,
    NOT_MATCHED,
    PRODUCT_LINKED,
    Customer,
    Price,
    Product,
    VelesCustomer,
    VelesProduct,
    utcnow,
)

IMPORTED_PREFIX = "imported-"


def _customer(session: Session, workspace_id: str, stripe_id: str) -> Customer:
    matching_lock(session, workspace_id, CUSTOMER_LOCK)
    row = session.get(Customer, (workspace_id, stripe_id), with_for_update=True)
    if row is None:
        raise NotFound(f"no Stripe customer {stripe_id}")
    return row


def _linkable_customer(session: Session, workspace_id: str, stripe_id: str) -> Customer:
    row = _customer(session, workspace_id, stripe_id)
    if row.deleted:
        raise Conflict(f"Stripe customer {stripe_id} is deleted in Stripe")
    if row.match_status == MATCHED:
        raise Conflict(
            f"Stripe customer {stripe_id} is already linked to "
            f"{row.veles_customer_id}; unlink first"
        )
    return row


def _link_customer(row: Customer, veles_id: str, method: str) -> None:
    row.veles_customer_id, row.match_status, row.match_method = veles_id, MATCHED, method
    row.match_manual = True


def link_customer(session: Session, workspace_id: str, stripe_id: str, veles_id: str) -> Customer:
    row = _linkable_customer(session, workspace_id, stripe_id)
    if session.get(VelesCustomer, (workspace_id, veles_id)) is None:
        raise NotFound(f"no Veles customer {veles_id}")
    _link_customer(row, veles_id, "manual")
    return row


def create_customer(
    session: Session, workspace_id: str, stripe_id: str
) -> tuple[Customer, VelesCustomer]:
    """A new Veles customer from the Stripe customer's name, email and domain, linked to it."""
    row = _linkable_customer(session, workspace_id, stripe_id)
    veles_id = IMPORTED_PREFIX + stripe_id
    veles = session.get(VelesCustomer, (workspace_id, veles_id)) or VelesCustomer(
        workspace_id=workspace_id, id=veles_id, origin="stripe"
    )
    veles.name = row.name or row.email or stripe_id
    veles.email, veles.domain = row.email, row.domain
    veles.updated_at = utcnow()
    set_keys(veles)
    session.add(veles)
    _link_customer(row, veles_id, "created")
    return row, veles


def unlink_customer(session: Session, workspace_id: str, stripe_id: str) -> Customer:
    row = _customer(session, workspace_id, stripe_id)
    if row.match_status != MATCHED:
        raise Conflict(f"Stripe customer {stripe_id} is not linked")
    row.veles_customer_id, row.match_status, row.match_method = None, NOT_MATCHED, None
    row.match_manual = True
    return row


def _product(session: Session, workspace_id: str, stripe_id: str) -> Product:
    matching_lock(session, workspace_id, PRODUCT_LOCK)
    row = session.get(Product, (workspace_id, stripe_id), with_for_update=True)
    if row is None:
        raise NotFound(f"no Stripe product {stripe_id}")
    return row


def _linkable_product(session: Session, workspace_id: str, stripe_id: str) -> Product:
    row = _product(session, workspace_id, stripe_id)
    if row.deleted or not row.active:
        raise Conflict(f"Stripe product {stripe_id} is inactive; reactivate it in Stripe first")
    if row.match_status in PRODUCT_LINKED:
        raise Conflict(
            f"Stripe product {stripe_id} is already linked to {row.veles_product_id}; unlink first"
        )
    return row


def match_product(session: Session, workspace_id: str, stripe_id: str, veles_id: str) -> Product:
    row = _linkable_product(session, workspace_id, stripe_id)
    if session.get(VelesProduct, (workspace_id, veles_id)) is None:
        raise NotFound(f"no Veles product {veles_id}")
    row.veles_product_id, row.match_status, row.match_manual = veles_id, MANUAL, True
    return row


def pricing_structure(session: Session, workspace_id: str, stripe_id: str) -> list[dict[str, Any]]:
    """The product's active prices as Veles pricing: one-time or recurring, with interval."""
    prices = session.scalars(
        select(Price)
        .where(
            Price.workspace_id == workspace_id,
            Price.product_id == stripe_id,
            Price.active.is_(True),
            Price.deleted.is_(False),
        )
        .order_by(Price.id)
    )
    return [
        {
            "stripe_price_id": price.id,
            "type": price.type,
            "unit_amount": price.unit_amount,
            "currency": price.currency,
            "interval": price.recurring_interval,
            "interval_count": price.recurring_interval_count,
        }
        for price in prices
    ]


def import_product(
    session: Session, workspace_id: str, stripe_id: str
) -> tuple[Product, VelesProduct]:
    """A new Veles product from the Stripe product: name, SKU (metadata `sku`, else the Stripe
    id), pricing structure from its active prices, and a blank unit label (Stripe has none)."""
    row = _linkable_product(session, workspace_id, stripe_id)
    veles_id = IMPORTED_PREFIX + stripe_id
    veles = session.get(VelesProduct, (workspace_id, veles_id)) or VelesProduct(
        workspace_id=workspace_id, id=veles_id, origin="stripe"
    )
    veles.name = row.name or stripe_id
    sku = (row.metadata_ or {}).get("sku")
    veles.sku = sku if isinstance(sku, str) and sku else stripe_id
    veles.unit_label = None
    veles.prices = pricing_structure(session, workspace_id, stripe_id)
    veles.updated_at = utcnow()
    set_product_key(veles)
    session.add(veles)
    row.veles_product_id, row.match_status, row.match_manual = veles_id, IMPORT, True
    return row, veles


def ignore_product(session: Session, workspace_id: str, stripe_id: str) -> Product:
    row = _product(session, workspace_id, stripe_id)
    if row.match_status in PRODUCT_LINKED:
        raise Conflict(
            f"Stripe product {stripe_id} is linked to {row.veles_product_id}; unlink it first"
        )
    row.veles_product_id, row.match_status, row.match_manual = None, IGNORED_MATCH, True
    return row


def unlink_product(session: Session, workspace_id: str, stripe_id: str) -> Product:
    """Unlink a linked product (it stays Not Matched until reviewed), or un-ignore an ignored
    one (it is matched automatically again)."""
    row = _product(session, workspace_id, stripe_id)
    if row.match_status == NOT_MATCHED:
        raise Conflict(f"Stripe product {stripe_id} is not linked")
    was_ignored = row.match_status == IGNORED_MATCH
    row.veles_product_id, row.match_status = None, NOT_MATCHED
    row.match_manual = not was_ignored
    if was_ignored:
        rematch_product(session, row)
    return row
