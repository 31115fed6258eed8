"""invoice.* → the invoices mirror.

Current API versions put the subscription under `parent.subscription_details` and dropped
`paid`; classic ones have a top-level `subscription`, `paid`, `forgiven`, and (before 2018)
no `status`, which is then derived from those flags and the event type. Stripe deletes only
drafts (`invoice.deleted`): the mirror keeps the row, marked deleted (terminal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe_bridge.errors import PermanentError
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
from stripe_bridge.handlers.guard import Progress, event_to_apply, stamp
from stripe_bridge.handlers.orders import INVOICE_PROGRESS, invoice_applied
from stripe_bridge.models import Invoice, Versioned
from stripe_bridge.uow import UnitOfWork

_STATUS_BY_EVENT = {
    "invoice.created": "draft",
    "invoice.finalized": "open",
    "invoice.payment_failed": "open",
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "uncollectible",
}


def invoice_status(obj: Mapping[str, Any], event_type: str) -> str | None:
    """The invoice's status; for classic payloads without one, derived from its flags."""
    status = text(obj, "status")
    if status is not None:
        return status
    if obj.get("paid") is True:
        return "paid"
    if obj.get("forgiven") is True:
        return "uncollectible"
    if obj.get("closed") is True:
        return "void"
    if event_type in _STATUS_BY_EVENT and event_type != "invoice.created":
        return _STATUS_BY_EVENT[event_type]
    return "draft" if text(obj, "number") is None else "open"


def _row_progress(row: Versioned) -> int:
    return INVOICE_PROGRESS.get(getattr(row, "status", None) or "", 0)


def _event_progress(event: Event) -> int:
    try:
        status = invoice_status(event.object, event.type)
    except PermanentError:  # another event of the second with a bad status: it fails alone
        return 0
    return INVOICE_PROGRESS.get(status or "", 0)


# Within one second an invoice never goes back (paid → open): the guard's tie-break.
PROGRESS = Progress(of_row=_row_progress, of_event=_event_progress)


def apply_invoice(event: Event, uow: UnitOfWork) -> None:
    row = lock_row(uow, Invoice, event.object["id"])
    applied = event_to_apply(uow.session, row, event, progress=PROGRESS)
    if applied is None:
        return
    obj = applied.object
    status = invoice_status(obj, applied.type)
    subscription = obj.get("subscription") or dig(
        obj, "parent", "subscription_details", "subscription"
    )
    amount_due = integer(obj, "amount_due")
    amount_paid = integer(obj, "amount_paid")
    if amount_paid is None:
        amount_paid = amount_due if status == "paid" else 0
    paid_at = dig(obj, "status_transitions", "paid_at")
    if paid_at is None and status == "paid":
        paid_at = applied.created  # classic payloads have no status_transitions
    row.customer_id = ref_id(obj.get("customer"))
    row.subscription_id = ref_id(subscription)
    row.status = status
    row.amount_due = amount_due
    row.amount_paid = amount_paid
    row.currency = text(obj, "currency")
    row.number = text(obj, "number")
    row.paid_at = timestamp(paid_at)
    row.metadata_ = mapping(obj, "metadata")
    row.created = timestamp(obj.get("created") or obj.get("date"))
    row.livemode = obj.get("livemode", applied.livemode)
    row.deleted = applied.type == "invoice.deleted"  # a draft Stripe deleted: no longer live
    stamp(row, applied)
    invoice_applied(uow, row, applied.type)


HANDLERS: dict[str, Handler] = {
    f"invoice.{action}": apply_invoice
    for action in (
        "created",
        "finalized",
        "updated",
        "paid",
        "payment_succeeded",
        "payment_failed",
        "voided",
        "marked_uncollectible",
        "deleted",
    )
}

CLAIMS: dict[str, Claim] = {key: Claim(Invoice) for key in HANDLERS}
