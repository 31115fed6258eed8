"""customer.created|updated|deleted → the customers mirror."""

from __future__ import annotations

from stripe_bridge.event import Event
from stripe_bridge.handlers.base import Claim, Handler, lock_row, mapping, text, timestamp
from stripe_bridge.handlers.guard import event_to_apply, stamp
from stripe_bridge.matching.linking import CUSTOMER_LOCK, matching_lock, rematch_customer, set_keys
from stripe_bridge.matching.rules import derive_domain
from stripe_bridge.models import Customer
from stripe_bridge.uow import UnitOfWork


def apply_customer(event: Event, uow: UnitOfWork) -> None:
    matching_lock(uow.session, uow.workspace_id, CUSTOMER_LOCK, uow.locks)
    row = lock_row(uow, Customer, event.object["id"])
    applied = event_to_apply(uow.session, row, event)
    if applied is None:
        return
    obj = applied.object
    deleted = applied.type == "customer.deleted" or obj.get("deleted") is True
    # A deleted-customer stub carries only id and deleted: keep what the mirror knew.
    if "email" in obj or not deleted:
        row.name = text(obj, "name")
        row.email = text(obj, "email")
        row.metadata_ = mapping(obj, "metadata")
        row.domain = derive_domain(row.email, row.metadata_)
        row.created = timestamp(obj.get("created"))
    row.deleted = deleted
    row.livemode = obj.get("livemode", applied.livemode)
    stamp(row, applied)
    set_keys(row)
    rematch_customer(uow.session, row, uow.pools)


HANDLERS: dict[str, Handler] = {
    f"customer.{action}": apply_customer for action in ("created", "updated", "deleted")
}

CLAIMS: dict[str, Claim] = {key: Claim(Customer, CUSTOMER_LOCK) for key in HANDLERS}
