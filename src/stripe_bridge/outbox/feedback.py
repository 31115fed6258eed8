"""Stripe's answers flowing back onto Veles orders and contracts (webhooks and the relay)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.models import Invoice, Subscription, VelesContract, VelesOrder, utcnow

# An invoice only moves forward (draft → open → paid/uncollectible → void): the stale guard's
# tie-break for invoice events, and the rule for an order's invoice status.
INVOICE_PROGRESS = {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 3}
PAYMENT_STATUS = {
    "draft": "pending",
    "open": "unpaid",
    "paid": "paid",
    "void": "void",
    "uncollectible": "uncollectible",
}


def record_invoice_status(
    order: VelesOrder, invoice_id: str, status: str | None, *, payment_failed: bool = False
) -> None:
    """Set the order's invoice and payment status, never moving them backwards."""
    order.stripe_invoice_id = order.stripe_invoice_id or invoice_id
    if status is None:
        return
    current = INVOICE_PROGRESS.get(order.invoice_status or "", -1)
    if INVOICE_PROGRESS.get(status, 0) < current:
        return
    order.invoice_status = status
    order.payment_status = (
        "failed" if payment_failed and status == "open" else PAYMENT_STATUS.get(status)
    )
    order.updated_at = utcnow()


def order_for_invoice(session: Session, invoice: Invoice) -> VelesOrder | None:
    order_id = (invoice.metadata_ or {}).get("veles_order_id")
    if order_id:
        return session.get(VelesOrder, order_id, with_for_update=True)
    return session.scalars(
        select(VelesOrder).where(VelesOrder.stripe_invoice_id == invoice.id).with_for_update()
    ).first()


def invoice_applied(session: Session, invoice: Invoice, event_type: str) -> None:
    """An invoice event was applied to the mirror: carry its status to the order."""
    order = order_for_invoice(session, invoice)
    if order is not None:
        record_invoice_status(
            order, invoice.id, invoice.status, payment_failed=event_type == "invoice.payment_failed"
        )


def subscription_applied(session: Session, subscription: Subscription) -> None:
    """A subscription event was applied to the mirror: carry its status to the contract."""
    contract_id = (subscription.metadata_ or {}).get("veles_contract_id")
    contract = (
        session.get(VelesContract, contract_id, with_for_update=True) if contract_id else None
    )
    if contract is None:
        contract = session.scalars(
            select(VelesContract)
            .where(VelesContract.stripe_subscription_id == subscription.id)
            .with_for_update()
        ).first()
    if contract is not None:
        contract.stripe_subscription_id = contract.stripe_subscription_id or subscription.id
        contract.subscription_status = subscription.status
        contract.updated_at = utcnow()
