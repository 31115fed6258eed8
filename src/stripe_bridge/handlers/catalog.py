"""product.*, price.* and plan.* (old accounts) → the products and prices mirrors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe_bridge.event import Event
from stripe_bridge.handlers.base import (
    Claim,
    Handler,
    dig,
    integer,
    lock_row,
    mapping,
    ref_id,
    text,
    timestamp,
)
from stripe_bridge.handlers.guard import event_to_apply, stamp
from stripe_bridge.matching.linking import (
    PRODUCT_LOCK,
    matching_lock,
    rematch_product,
    set_product_key,
)
from stripe_bridge.models import Price, Product
from stripe_bridge.uow import UnitOfWork


def apply_product(event: Event, uow: UnitOfWork) -> None:
    matching_lock(uow.session, uow.workspace_id, PRODUCT_LOCK, uow.locks)
    row = lock_row(uow, Product, event.object["id"])
    applied = event_to_apply(uow.session, row, event)
    if applied is None:
        return
    obj = applied.object
    deleted = applied.type == "product.deleted" or obj.get("deleted") is True
    if "name" in obj or not deleted:
        row.name = text(obj, "name")
        row.description = text(obj, "description")
        row.metadata_ = mapping(obj, "metadata")
        row.created = timestamp(obj.get("created"))
    row.active = bool(obj.get("active", True)) and not deleted
    row.deleted = deleted
    row.livemode = obj.get("livemode", applied.livemode)
    stamp(row, applied)
    set_product_key(row)
    rematch_product(uow.session, row, uow.pools)


def _price_fields(obj: Mapping[str, Any], *, is_plan: bool) -> dict[str, Any]:
    if is_plan:
        recurring_interval = obj.get("interval")
        return {
            "unit_amount": integer(obj, "amount"),
            "type": "recurring",
            "recurring_interval": recurring_interval,
            "recurring_interval_count": integer(obj, "interval_count"),
        }
    recurring = obj.get("recurring")
    price_type = obj.get("type") or ("recurring" if recurring else "one_time")
    return {
        "unit_amount": integer(obj, "unit_amount"),
        "type": price_type,
        "recurring_interval": dig(obj, "recurring", "interval"),
        "recurring_interval_count": dig(obj, "recurring", "interval_count"),
    }


def apply_price(event: Event, uow: UnitOfWork) -> None:
    row = lock_row(uow, Price, event.object["id"])
    applied = event_to_apply(uow.session, row, event)
    if applied is None:
        return
    obj = applied.object
    is_plan = applied.type.startswith("plan.")
    deleted = applied.type.endswith(".deleted") or obj.get("deleted") is True
    if "currency" in obj or not deleted:
        for key, value in _price_fields(obj, is_plan=is_plan).items():
            setattr(row, key, value)
        row.product_id = ref_id(obj.get("product"))
        row.currency = text(obj, "currency")
        row.nickname = text(obj, "nickname")
        row.metadata_ = mapping(obj, "metadata")
        row.created = timestamp(obj.get("created"))
    row.active = bool(obj.get("active", True)) and not deleted
    row.deleted = deleted
    row.livemode = obj.get("livemode", applied.livemode)
    stamp(row, applied)


HANDLERS: dict[str, Handler] = {
    f"{family}.{action}": handler
    for family, handler in (
        ("product", apply_product),
        ("price", apply_price),
        ("plan", apply_price),
    )
    for action in ("created", "updated", "deleted")
}

CLAIMS: dict[str, Claim] = {
    key: Claim(Product, PRODUCT_LOCK) if key.startswith("product.") else Claim(Price)
    for key in HANDLERS
}
