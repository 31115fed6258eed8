"""Veles orders and contracts follow their Stripe invoices and subscriptions: the status rules
(an invoice only moves forward), applied by the invoice and subscription handlers and by the
relay when Stripe answers a push."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from stripe_bridge.db import key_is_one_of, listed_ids
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
    uow: UnitOfWork,
    *,
    invoices: Iterable[tuple[str, str | None]],
    subscriptions: Iterable[tuple[str, str | None]],
) -> None:
    """Lock and load, in two queries each (`_locked`), the orders of `invoices` and the
    contracts of `subscriptions` (pairs of the Stripe id and the Veles id from its metadata)."""
    links = OrderLinks()
    for invoice_id, order_id in invoices:
        links.invoice_ids.add(invoice_id)
        if order_id:
            links.order_ids.add(order_id)
    for subscription_id, contract_id in subscriptions:
        links.subscription_ids.add(subscription_id)
        if contract_id:
            links.contract_ids.add(contract_id)
    if links.invoice_ids:
        for order in _locked(
            uow, VelesOrder, links.order_ids, VelesOrder.stripe_invoice_id, links.invoice_ids
        ):
            links.orders[order.id] = order
            if order.stripe_invoice_id:
                links.orders_by_invoice.setdefault(order.stripe_invoice_id, order)
    if links.subscription_ids:
        for contract in _locked(
            uow,
            VelesContract,
            links.contract_ids,
            VelesContract.stripe_subscription_id,
            links.subscription_ids,
        ):
            links.contracts[contract.id] = contract
            if contract.stripe_subscription_id:
                links.contracts_by_subscription.setdefault(
                    contract.stripe_subscription_id, contract
                )
    uow.links = links


R = TypeVar("R", VelesOrder, VelesContract)


def _locked(
    uow: UnitOfWork, model: type[R], ids: set[str], column: Any, stripe_ids: set[str]
) -> Sequence[R]:
    """The workspace's `model` rows named by id or whose Stripe id (`column`) is one of
    `stripe_ids`, locked in id order. PostgreSQL: every row found through an index by its key,
    whatever the statistics say (`tests/test_key_lookups.py`): written as `workspace_id = … AND
    (id IN … OR column IN …)`, or as a join with the listed keys, a table not analyzed yet was
    read whole for every batch."""
    session, workspace_id = uow.session, uow.workspace_id
    linked = session.scalars(_by_stripe_id(session, model, workspace_id, column, stripe_ids)).all()
    wanted = sorted(ids | set(linked))
    if not wanted:
        return []
    if session.get_bind().dialect.name != "postgresql":
        keys = [(workspace_id, id_) for id_ in wanted]
        return session.scalars(
            select(model)
            .where(key_is_one_of(session, model, keys))
            .order_by(model.id)
            .with_for_update()
        ).all()
    listed = listed_ids(wanted)
    one = (
        select(model)
        .where(model.workspace_id == workspace_id, model.id == listed.c.id)
        .with_for_update()
        .lateral("locked")
    )
    locked = select(model).from_statement(
        select(*one.c).select_from(listed).join(one, true()).order_by(one.c.id)
    )
    return session.scalars(locked).all()


def _by_stripe_id(
    session: Session, model: type[R], workspace_id: str, column: Any, stripe_ids: set[str]
) -> Any:
    """The ids of the rows whose `column` is one of `stripe_ids`. PostgreSQL: each looked up on
    its own through the column's index, in a LATERAL subquery that `OFFSET 0` keeps the planner
    from flattening into a join (which, on a table not analyzed yet, it planned as a hash join
    over the whole table)."""
    if session.get_bind().dialect.name != "postgresql":
        keys = [(workspace_id, id_) for id_ in sorted(stripe_ids)]
        return select(model.id).where(key_is_one_of(session, model, keys, column))
    listed = listed_ids(sorted(stripe_ids))
    one = (
        select(model.id)
        .where(model.workspace_id == workspace_id, column == listed.c.id)
        .offset(0)
        .lateral("found")
    )
    return select(one.c.id).select_from(listed).join(one, true())


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
