"""Veles orders and contracts follow their Stripe invoices and subscriptions: the status rules
(an invoice only moves forward), applied by the invoice and subscription handlers and by the
relay when Stripe answers a push."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.db import looked_up
from stripe_bridge.models import Invoice, Subscription, VelesContract, VelesOrder, utcnow
from stripe_bridge.uow import OrderLinks, UnitOfWork

# An invoice only moves forward (draft → open → paid/uncollectible → void, or a draft →
# deleted): the stale guard's tie-break for invoice events, and the rule for an order's
# invoice status. A deleted draft leaves nothing to pay, like a void invoice.
INVOICE_PROGRESS = {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 3, "deleted": 3}
PAYMENT_STATUS = {
    "draft": "pending",
    "open": "unpaid",
    "paid": "paid",
    "void": "void",
    "deleted": "void",
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


def preload_links(
    session: Session,
    uows: Mapping[str, UnitOfWork],
    *,
    invoices: Iterable[tuple[str, str, str | None]],
    subscriptions: Iterable[tuple[str, str, str | None]],
) -> None:
    """Lock and load, in two queries each (`_locked`), the orders of `invoices` and the
    contracts of `subscriptions` (the workspace, the Stripe id and the Veles id from its
    metadata), for every workspace of the batch (each of `uows` named gets its `links`)."""
    links: dict[str, OrderLinks] = {}
    for workspace_id, invoice_id, order_id in invoices:
        link = links.setdefault(workspace_id, OrderLinks())
        link.invoice_ids.add(invoice_id)
        if order_id:
            link.order_ids.add(order_id)
    for workspace_id, subscription_id, contract_id in subscriptions:
        link = links.setdefault(workspace_id, OrderLinks())
        link.subscription_ids.add(subscription_id)
        if contract_id:
            link.contract_ids.add(contract_id)

    def keys(attribute: str) -> set[tuple[str, str]]:
        return {(ws, id_) for ws, link in links.items() for id_ in getattr(link, attribute)}

    for order in _locked(
        session, VelesOrder, keys("order_ids"), VelesOrder.stripe_invoice_id, keys("invoice_ids")
    ):
        link = links[order.workspace_id]
        link.orders[order.id] = order
        if order.stripe_invoice_id:
            link.orders_by_invoice.setdefault(order.stripe_invoice_id, order)
    for contract in _locked(
        session,
        VelesContract,
        keys("contract_ids"),
        VelesContract.stripe_subscription_id,
        keys("subscription_ids"),
    ):
        link = links[contract.workspace_id]
        link.contracts[contract.id] = contract
        if contract.stripe_subscription_id:
            link.contracts_by_subscription.setdefault(contract.stripe_subscription_id, contract)
    for workspace_id, link in links.items():
        uows[workspace_id].links = link


R = TypeVar("R", VelesOrder, VelesContract)


def _locked(
    session: Session,
    model: type[R],
    ids: set[tuple[str, str]],
    column: Any,
    stripe_ids: set[tuple[str, str]],
) -> Sequence[R]:
    """The `model` rows named by `(workspace_id, id)` or whose `(workspace_id, column)` is one
    of `stripe_ids`, locked in key order; every row found through an index by its key, whatever
    the statistics say (`db.looked_up`; `tests/test_key_lookups.py`)."""
    if stripe_ids:
        linked = session.execute(
            looked_up(session, [model.workspace_id, model.id], model, stripe_ids, column=column)
        )
        ids = ids | {(workspace_id, id_) for workspace_id, id_ in linked}
    if not ids:
        return []
    found = looked_up(session, [model], model, ids, lock=True)
    return session.scalars(select(model).from_statement(found)).all()


def order_for_invoice(uow: UnitOfWork, invoice: Invoice) -> VelesOrder | None:
    session, links = uow.session, uow.links
    order_id = (invoice.metadata_ or {}).get("veles_order_id")
    if order_id:
        if links is not None and order_id in links.order_ids:
            return links.orders.get(order_id)
        return session.get(VelesOrder, (uow.workspace_id, order_id), with_for_update=True)
    if links is not None and invoice.id in links.invoice_ids:
        return links.orders_by_invoice.get(invoice.id)
    return session.scalars(
        select(VelesOrder)
        .where(
            VelesOrder.workspace_id == uow.workspace_id, VelesOrder.stripe_invoice_id == invoice.id
        )
        .with_for_update()
    ).first()


def invoice_applied(uow: UnitOfWork, invoice: Invoice, event_type: str) -> None:
    """An invoice event was applied to the mirror: carry its status to the order."""
    order = order_for_invoice(uow, invoice)
    if order is not None:
        record_invoice_status(
            order,
            invoice.id,
            "deleted" if invoice.deleted else invoice.status,
            payment_failed=event_type == "invoice.payment_failed",
        )
        links = uow.links
        if links is not None and order.stripe_invoice_id == invoice.id:
            links.orders_by_invoice.setdefault(invoice.id, order)


def _contract_for(uow: UnitOfWork, subscription: Subscription) -> VelesContract | None:
    session, links = uow.session, uow.links
    contract_id = (subscription.metadata_ or {}).get("veles_contract_id")
    contract = None
    if contract_id:
        if links is not None and contract_id in links.contract_ids:
            contract = links.contracts.get(contract_id)
        else:
            contract = session.get(
                VelesContract, (uow.workspace_id, contract_id), with_for_update=True
            )
    if contract is not None:
        return contract
    if links is not None and subscription.id in links.subscription_ids:
        return links.contracts_by_subscription.get(subscription.id)
    return session.scalars(
        select(VelesContract)
        .where(
            VelesContract.workspace_id == uow.workspace_id,
            VelesContract.stripe_subscription_id == subscription.id,
        )
        .with_for_update()
    ).first()


def subscription_applied(uow: UnitOfWork, subscription: Subscription) -> None:
    """A subscription event was applied to the mirror: carry its status to the contract."""
    contract = _contract_for(uow, subscription)
    if contract is not None:
        contract.stripe_subscription_id = contract.stripe_subscription_id or subscription.id
        contract.subscription_status = subscription.status
        contract.updated_at = utcnow()
        links = uow.links
        if links is not None and contract.stripe_subscription_id == subscription.id:
            links.contracts_by_subscription.setdefault(subscription.id, contract)
