"""Finding, and where needed creating, the Stripe side of a Veles record."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.errors import PermanentError
from stripe_bridge.models import MATCHED, PRODUCT_LINKED, Customer, Product, VelesCustomer, utcnow


class MissingLink(PermanentError):
    """A Veles record with no usable Stripe counterpart (e.g. an unmatched product)."""

    code = "missing_link"


def linked_customer(session: Session, workspace_id: str, veles_customer_id: str) -> str | None:
    """The Stripe customer linked to a Veles customer (the most recently updated one)."""
    return session.scalar(
        select(Customer.id)
        .where(
            Customer.workspace_id == workspace_id,
            Customer.veles_customer_id == veles_customer_id,
            Customer.match_status == MATCHED,
            Customer.deleted.is_(False),
        )
        .order_by(Customer.updated_at.desc().nulls_last(), Customer.id)
        .limit(1)
    )


def linked_products(
    session: Session, workspace_id: str, veles_product_ids: set[str]
) -> dict[str, str]:
    """Veles product id → Stripe product id; MissingLink names every product without one."""
    rows = session.execute(
        select(Product.veles_product_id, Product.id)
        .where(
            Product.workspace_id == workspace_id,
            Product.veles_product_id.in_(veles_product_ids),
            Product.match_status.in_(PRODUCT_LINKED),
            Product.deleted.is_(False),
        )
        .order_by(Product.id)
    ).all()
    found: dict[str, str] = {}
    for veles_id, stripe_id in rows:
        if veles_id is not None:
            found.setdefault(veles_id, stripe_id)
    missing = sorted(veles_product_ids - found.keys())
    if missing:
        raise MissingLink(
            f"Veles product(s) {', '.join(missing)} have no Stripe product: match or import them"
        )
    return found


def veles_customer(session: Session, workspace_id: str, veles_customer_id: str) -> VelesCustomer:
    row = session.get(VelesCustomer, (workspace_id, veles_customer_id))
    if row is None:
        raise MissingLink(f"unknown Veles customer {veles_customer_id}")
    return row


def record_created_customer(
    session: Session, workspace_id: str, stripe_customer: dict[str, object], veles_customer_id: str
) -> None:
    """Link a Stripe customer the bridge created to its Veles customer, as a manual link (the
    customer.created webhook that follows only refreshes its fields)."""
    stripe_id = str(stripe_customer["id"])
    row = session.get(Customer, (workspace_id, stripe_id), with_for_update=True)
    if row is None:
        row = Customer(
            workspace_id=workspace_id, id=stripe_id, src_created=-1, src_rank=0, deleted=False
        )
        session.add(row)
    row.name = stripe_customer.get("name")  # type: ignore[assignment]
    row.email = stripe_customer.get("email")  # type: ignore[assignment]
    row.veles_customer_id, row.match_status = veles_customer_id, MATCHED
    row.match_method, row.match_manual, row.updated_at = "created", True, utcnow()
