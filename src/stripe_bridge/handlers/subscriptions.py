"""customer.subscription.* → the subscriptions mirror.

Two payload shapes: current API versions keep the price and the billing period on each item
(`items.data[].price`, `items.data[].current_period_*`); classic ones (2017-era) have a `plan`
per item and a top-level `plan`, `quantity` and `current_period_*`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe_bridge.event import Event
from stripe_bridge.handlers.base import (
    Claim,
    Handler,
    dig,
    lock_row,
    mapping,
    ref_id,
    text,
    timestamp,
)
from stripe_bridge.handlers.guard import event_to_apply, stamp
from stripe_bridge.handlers.orders import subscription_applied
from stripe_bridge.models import Subscription
from stripe_bridge.uow import UnitOfWork


def _item(raw: Mapping[str, Any], fallback_quantity: Any) -> dict[str, Any]:
    price = raw.get("price") or raw.get("plan")
    quantity = raw.get("quantity", fallback_quantity)
    return {
        "id": raw.get("id"),
        "price": ref_id(price),
        "product": ref_id(price.get("product")) if isinstance(price, Mapping) else None,
        "quantity": int(quantity) if quantity is not None else None,
    }


def _items(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    data = dig(obj, "items", "data")
    if isinstance(data, list) and data:
        return [_item(raw, obj.get("quantity")) for raw in data]
    if isinstance(obj.get("plan"), Mapping):  # very old payloads: a single top-level plan
        return [_item({"plan": obj["plan"]}, obj.get("quantity"))]
    return []


def _period(obj: Mapping[str, Any], key: str) -> Any:
    """Top-level period (classic) or the items' period (current API: the earliest end,
    the latest start, which is the same for a single billing cycle)."""
    if obj.get(key) is not None:
        return obj[key]
    values = [
        raw[key]
        for raw in dig(obj, "items", "data") or []
        if isinstance(raw, Mapping) and raw.get(key) is not None
    ]
    if not values:
        return None
    return min(values) if key.endswith("_end") else max(values)


def apply_subscription(event: Event, uow: UnitOfWork) -> None:
    row = lock_row(uow, Subscription, event.object["id"])
    applied = event_to_apply(uow.session, row, event)
    if applied is None:
        return
    obj = applied.object
    row.customer_id = ref_id(obj.get("customer"))
    row.status = text(obj, "status")
    row.items = _items(obj)
    row.current_period_start = timestamp(_period(obj, "current_period_start"))
    row.current_period_end = timestamp(_period(obj, "current_period_end"))
    row.cancel_at_period_end = bool(obj.get("cancel_at_period_end", False))
    row.canceled_at = timestamp(obj.get("canceled_at"))
    row.metadata_ = mapping(obj, "metadata")
    row.created = timestamp(obj.get("created") or obj.get("start"))
    row.deleted = applied.type == "customer.subscription.deleted"
    row.livemode = obj.get("livemode", applied.livemode)
    stamp(row, applied)
    subscription_applied(uow, row)


HANDLERS: dict[str, Handler] = {
    f"customer.subscription.{action}": apply_subscription
    for action in ("created", "updated", "deleted", "paused", "resumed")
}

CLAIMS: dict[str, Claim] = {key: Claim(Subscription) for key in HANDLERS}
