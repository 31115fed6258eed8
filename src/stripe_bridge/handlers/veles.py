"""Veles' `customer.upserted` and `product.upserted` → Veles records, then rematching."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from stripe_bridge import outbox
from stripe_bridge.handlers.base import Event, Handler
from stripe_bridge.linking import (
    CUSTOMER_LOCK,
    PRODUCT_LOCK,
    matching_lock,
    rematch_customers_for,
    rematch_products_for,
    set_keys,
    set_product_key,
)
from stripe_bridge.matching import Keys
from stripe_bridge.models import VelesCustomer, VelesProduct, utcnow


def apply_customer_upserted(event: Event, session: Session) -> None:
    data = event.object
    matching_lock(session, CUSTOMER_LOCK)
    row = session.get(VelesCustomer, data["id"], with_for_update=True)
    if row is not None and event.created < row.src_created:
        return  # an older Veles event
    old = Keys(row.email_key, row.domain_key, row.name_key) if row is not None else None
    if row is None:
        row = VelesCustomer(id=data["id"])
        session.add(row)
    row.name, row.email, row.domain = data["name"], data.get("email"), data.get("domain")
    row.src_created, row.updated_at = event.created, utcnow()
    set_keys(row)
    session.flush()
    rematch_customers_for(session, row, old)


def apply_product_upserted(event: Event, session: Session) -> None:
    data = event.object
    matching_lock(session, PRODUCT_LOCK)
    row = session.get(VelesProduct, data["id"], with_for_update=True)
    if row is not None and event.created < row.src_created:
        return
    old_name_key = row.name_key if row is not None else None
    if row is None:
        row = VelesProduct(id=data["id"])
        session.add(row)
    row.name, row.sku, row.unit_label = data["name"], data.get("sku"), data.get("unit_label")
    row.src_created, row.updated_at = event.created, utcnow()
    set_product_key(row)
    session.flush()
    rematch_products_for(session, row, old_name_key)


def _outbox(record: Callable[..., object]) -> Handler:
    """A Veles order/contract event: the change and its outbox row, in this transaction."""

    def apply(event: Event, session: Session) -> None:
        record(session, event.object, dedupe_key=f"veles-event:{event.id}")

    return apply


VELES_HANDLERS: dict[str, Handler] = {
    "customer.upserted": apply_customer_upserted,
    "product.upserted": apply_product_upserted,
    "order.committed": _outbox(outbox.record_order),
    "contract.activated": _outbox(outbox.record_contract_activated),
    "contract.amended": _outbox(outbox.record_contract_amended),
    "contract.cancelled": _outbox(outbox.record_contract_cancelled),
}
