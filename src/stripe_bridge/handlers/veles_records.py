"""Veles' `customer.upserted` and `product.upserted` → Veles records, then rematching.

(Veles' orders and contracts go to the outbox: `outbox.writer.VELES_HANDLERS`.)"""

from __future__ import annotations

from stripe_bridge.event import Event
from stripe_bridge.handlers.base import Handler
from stripe_bridge.matching.linking import (
    CUSTOMER_LOCK,
    PRODUCT_LOCK,
    matching_lock,
    rematch_customers_for,
    rematch_products_for,
    set_keys,
    set_product_key,
)
from stripe_bridge.matching.rules import Keys
from stripe_bridge.models import VelesCustomer, VelesProduct, utcnow
from stripe_bridge.uow import UnitOfWork


def apply_customer_upserted(event: Event, uow: UnitOfWork) -> None:
    session, data = uow.session, event.object
    matching_lock(session, uow.workspace_id, CUSTOMER_LOCK)
    row = session.get(VelesCustomer, (uow.workspace_id, data["id"]), with_for_update=True)
    if row is not None and event.created < row.src_created:
        return  # an older Veles event
    old = Keys(row.email_key, row.domain_key, row.name_key) if row is not None else None
    if row is None:
        row = VelesCustomer(workspace_id=uow.workspace_id, id=data["id"])
        session.add(row)
    row.name, row.email, row.domain = data["name"], data.get("email"), data.get("domain")
    row.src_created, row.updated_at = event.created, utcnow()
    set_keys(row)
    session.flush()
    rematch_customers_for(session, row, old)


def apply_product_upserted(event: Event, uow: UnitOfWork) -> None:
    session, data = uow.session, event.object
    matching_lock(session, uow.workspace_id, PRODUCT_LOCK)
    row = session.get(VelesProduct, (uow.workspace_id, data["id"]), with_for_update=True)
    if row is not None and event.created < row.src_created:
        return
    old_name_key = row.name_key if row is not None else None
    if row is None:
        row = VelesProduct(workspace_id=uow.workspace_id, id=data["id"])
        session.add(row)
    row.name, row.sku, row.unit_label = data["name"], data.get("sku"), data.get("unit_label")
    row.src_created, row.updated_at = event.created, utcnow()
    set_product_key(row)
    session.flush()
    rematch_products_for(session, row, old_name_key)


VELES_HANDLERS: dict[str, Handler] = {
    "customer.upserted": apply_customer_upserted,
    "product.upserted": apply_product_upserted,
}
