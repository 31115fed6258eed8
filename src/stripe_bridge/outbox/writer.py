"""The outbox writer: a Veles order or contract change and its outbox row, in the caller's
transaction. Nothing is half-written: every check runs before the first write, and the caller
commits or rolls back both together."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from stripe_bridge.errors import PermanentError
from stripe_bridge.event import Event
from stripe_bridge.handlers.base import Handler
from stripe_bridge.models import (
    PENDING,
    OutboxRow,
    VelesContract,
    VelesCustomer,
    VelesOrder,
    VelesProduct,
    utcnow,
)
from stripe_bridge.uow import UnitOfWork

CHANNEL = "stripe_bridge_outbox"
_CURRENCY = re.compile(r"^[a-z]{3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INTERVALS = ("month", "year")


class InvalidChange(PermanentError):
    """A Veles change that can never be pushed (unknown ids, bad amounts, missing lines)."""

    code = "invalid_change"


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidChange(f"{key} must be a non-empty string")
    return value


def _currency(data: Mapping[str, Any]) -> str:
    value = data.get("currency")
    if not isinstance(value, str) or not _CURRENCY.match(value.lower()):
        raise InvalidChange(f"currency must be a three-letter ISO code, got {value!r}")
    return value.lower()


def _customer(session: Session, workspace_id: str, data: Mapping[str, Any]) -> str:
    customer_id = _text(data, "customer_id")
    if session.get(VelesCustomer, (workspace_id, customer_id)) is None:
        raise InvalidChange(f"unknown Veles customer {customer_id}")
    return customer_id


def _count(value: Any, name: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidChange(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _lines(session: Session, workspace_id: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidChange("lines are missing: at least one line is needed")
    clean: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise InvalidChange(f"line {n} is not an object")
        product_id = line.get("product_id")
        if not isinstance(product_id, str) or not product_id:
            raise InvalidChange(f"line {n}: product_id must be a non-empty string")
        description = line.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidChange(f"line {n}: description must be a string")
        clean.append(
            {
                "product_id": product_id,
                "description": description,
                "quantity": _count(line.get("quantity"), f"line {n}: quantity", minimum=1),
                "unit_amount": _count(line.get("unit_amount"), f"line {n}: unit_amount", minimum=0),
            }
        )
    known = set(
        session.scalars(
            select(VelesProduct.id).where(
                VelesProduct.workspace_id == workspace_id,
                VelesProduct.id.in_({line["product_id"] for line in clean}),
            )
        )
    )
    for n, line in enumerate(clean):
        if line["product_id"] not in known:
            raise InvalidChange(f"line {n}: unknown Veles product {line['product_id']}")
    return clean


def _append(
    session: Session,
    workspace_id: str,
    aggregate_type: str,
    aggregate_id: str,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str | None,
) -> OutboxRow:
    now = utcnow()
    row = OutboxRow(
        workspace_id=workspace_id,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        kind=kind,
        payload=payload,
        dedupe_key=dedupe_key,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))  # delivered when the caller commits
    return row


def _seen(session: Session, workspace_id: str, dedupe_key: str | None) -> bool:
    return dedupe_key is not None and (
        session.scalar(
            select(OutboxRow.id).where(
                OutboxRow.workspace_id == workspace_id, OutboxRow.dedupe_key == dedupe_key
            )
        )
        is not None
    )


def record_order(
    session: Session, workspace_id: str, data: Mapping[str, Any], *, dedupe_key: str | None = None
) -> OutboxRow | None:
    """`order.committed`: the order, and a row that pushes it as one finalized invoice.
    Answers None when `dedupe_key` was recorded before (nothing is written)."""
    if _seen(session, workspace_id, dedupe_key):
        return None
    order_id = _text(data, "id")
    customer_id = _customer(session, workspace_id, data)
    currency = _currency(data)
    lines = _lines(session, workspace_id, data)
    if session.get(VelesOrder, (workspace_id, order_id)) is not None:
        raise InvalidChange(f"order {order_id} is already committed")
    session.add(
        VelesOrder(
            workspace_id=workspace_id,
            id=order_id,
            customer_id=customer_id,
            currency=currency,
            lines=lines,
            status="committed",
            payment_status="pending",
            created_at=utcnow(),
        )
    )
    payload = {
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": currency,
        "lines": lines,
    }
    return _append(session, workspace_id, "order", order_id, "order.invoice", payload, dedupe_key)


def _contract_terms(session: Session, workspace_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    interval = data.get("interval")
    if interval not in INTERVALS:
        raise InvalidChange(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    start_date = data.get("start_date")
    if not isinstance(start_date, str) or not _DATE.match(start_date):
        raise InvalidChange(f"start_date must be YYYY-MM-DD, got {start_date!r}")
    lines = _lines(session, workspace_id, data)
    products = [line["product_id"] for line in lines]
    if len(set(products)) != len(products):
        # subscription items are matched to contract lines by product on amendment
        raise InvalidChange("a contract has one line per product; merge the quantities")
    return {
        "customer_id": _customer(session, workspace_id, data),
        "currency": _currency(data),
        "interval": interval,
        "start_date": start_date,
        "lines": lines,
    }


def record_contract_activated(
    session: Session, workspace_id: str, data: Mapping[str, Any], *, dedupe_key: str | None = None
) -> OutboxRow | None:
    """`contract.activated`: the contract, and a row that creates its subscription."""
    if _seen(session, workspace_id, dedupe_key):
        return None
    contract_id = _text(data, "id")
    terms = _contract_terms(session, workspace_id, data)
    if session.get(VelesContract, (workspace_id, contract_id)) is not None:
        raise InvalidChange(f"contract {contract_id} is already activated")
    now = utcnow()
    session.add(
        VelesContract(
            workspace_id=workspace_id,
            id=contract_id,
            status="active",
            created_at=now,
            updated_at=now,
            **terms,
        )
    )
    return _append(
        session,
        workspace_id,
        "contract",
        contract_id,
        "contract.activate",
        {"contract_id": contract_id, **terms},
        dedupe_key,
    )


def _active_contract(session: Session, workspace_id: str, contract_id: str) -> VelesContract:
    contract = session.get(VelesContract, (workspace_id, contract_id), with_for_update=True)
    if contract is None:
        raise InvalidChange(f"unknown contract {contract_id}")
    if contract.status != "active":
        raise InvalidChange(f"contract {contract_id} is {contract.status}")
    return contract


def record_contract_amended(
    session: Session, workspace_id: str, data: Mapping[str, Any], *, dedupe_key: str | None = None
) -> OutboxRow | None:
    """`contract.amended`: new lines and quantities for the contract's subscription."""
    if _seen(session, workspace_id, dedupe_key):
        return None
    contract = _active_contract(session, workspace_id, _text(data, "id"))
    terms = _contract_terms(session, workspace_id, data)
    for key in ("customer_id", "currency", "interval"):
        if terms[key] != getattr(contract, key):
            raise InvalidChange(f"an amendment cannot change the contract's {key}")
    contract.lines, contract.updated_at = terms["lines"], utcnow()
    payload = {"contract_id": contract.id, **terms}
    return _append(
        session, workspace_id, "contract", contract.id, "contract.amend", payload, dedupe_key
    )


def record_contract_cancelled(
    session: Session, workspace_id: str, data: Mapping[str, Any], *, dedupe_key: str | None = None
) -> OutboxRow | None:
    """`contract.cancelled`: cancel the subscription at period end (default) or now."""
    if _seen(session, workspace_id, dedupe_key):
        return None
    contract = _active_contract(session, workspace_id, _text(data, "id"))
    at_period_end = data.get("at_period_end", True)
    if not isinstance(at_period_end, bool):
        raise InvalidChange("at_period_end must be true or false")
    contract.status, contract.updated_at = "cancelled", utcnow()
    payload = {"contract_id": contract.id, "at_period_end": at_period_end}
    return _append(
        session, workspace_id, "contract", contract.id, "contract.cancel", payload, dedupe_key
    )


def _from_event(record: Callable[..., object]) -> Handler:
    """A Veles order/contract event: the change and its outbox row, in this transaction."""

    def apply(event: Event, uow: UnitOfWork) -> None:
        record(uow.session, uow.workspace_id, event.object, dedupe_key=f"veles-event:{event.id}")

    return apply


VELES_HANDLERS: dict[str, Handler] = {
    "order.committed": _from_event(record_order),
    "contract.activated": _from_event(record_contract_activated),
    "contract.amended": _from_event(record_contract_amended),
    "contract.cancelled": _from_event(record_contract_cancelled),
}
