"""A committed Veles order → one finalized Stripe invoice: the invoice, one item per line,
finalize, then the order's invoice status."""

from __future__ import annotations

from functools import partial
from typing import Any

from stripe.params import (
    InvoiceCreateParams,
    InvoiceItemCreateParams,
)

from stripe_bridge.handlers.orders import record_invoice_status
from stripe_bridge.models import VelesOrder
from stripe_bridge.outbox.customers import ensure_customer, linked_products_of
from stripe_bridge.outbox.push import Push


def push_order(push: Push) -> None:
    """The `order.invoice` row: each step saved on the row before the next one starts."""
    payload = push.row.payload
    order_id, lines = payload["order_id"], payload["lines"]
    # Products before anything is created: a missing link is final.
    products = linked_products_of(push, lines)
    customer_id = ensure_customer(push, payload["customer_id"])
    invoice_id = push.progress.get("invoice") or find_invoice(push, customer_id, order_id)
    if invoice_id is None:
        invoice_id = create_invoice(push, customer_id)
    push.save("invoice", invoice=invoice_id)
    items: dict[str, str] = dict(push.progress.get("items") or {})
    if push.retried and len(items) < len(lines):
        items.update(find_items(push, invoice_id))
    for n, line in enumerate(lines):
        if str(n) not in items:
            items[str(n)] = create_item(push, customer_id, invoice_id, n, line, products)
            push.save(f"item-{n}", items=items)
    invoice = finalize(push, invoice_id)
    with push.session_factory.begin() as session:
        order = session.get(VelesOrder, (push.workspace_id, order_id), with_for_update=True)
        if order is not None:
            order.stripe_invoice_id = invoice_id
            record_invoice_status(order, invoice_id, invoice.get("status"))
    push.save("finalize", finalized=True)


def create_invoice(push: Push, customer_id: str) -> str:
    """A draft that takes only the items created for it (never pending ones)."""
    payload = push.row.payload
    params: InvoiceCreateParams = {
        "customer": customer_id,
        "currency": payload["currency"],
        "collection_method": push.options.collection_method,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "metadata": {"veles_order_id": payload["order_id"]},
    }
    if push.options.collection_method == "send_invoice":
        params["days_until_due"] = push.options.days_until_due
    invoice = push.write(
        "create invoice",
        lambda: push.gateway.v1.invoices.create(
            params=params, options={"idempotency_key": push.key("invoice")}
        ),
    )
    return str(invoice["id"])


def create_item(
    push: Push,
    customer_id: str,
    invoice_id: str,
    n: int,
    line: dict[str, Any],
    products: dict[str, str],
) -> str:
    """Line `n` as an invoice item (its metadata finds it again after the idempotency window)."""
    payload = push.row.payload
    params: InvoiceItemCreateParams = {
        "customer": customer_id,
        "invoice": invoice_id,
        "quantity": line["quantity"],
        "price_data": {
            "currency": payload["currency"],
            "product": products[line["product_id"]],
            "unit_amount": line["unit_amount"],
        },
        "metadata": {"veles_order_id": payload["order_id"], "veles_line": str(n)},
    }
    if line.get("description"):
        params["description"] = line["description"]
    item = push.write(
        f"create invoice item {n}",
        partial(
            push.gateway.v1.invoice_items.create,
            params=params,
            options={"idempotency_key": push.key(f"item-{n}")},
        ),
    )
    return str(item["id"])


def finalize(push: Push, invoice_id: str) -> dict[str, Any]:
    current = push.read("retrieve invoice", lambda: push.gateway.v1.invoices.retrieve(invoice_id))
    if current.get("status") != "draft":
        return current  # finalized already (by an earlier attempt)
    return push.write(
        "finalize invoice",
        lambda: push.gateway.v1.invoices.finalize_invoice(
            invoice_id,
            params={"auto_advance": push.options.auto_advance},
            options={"idempotency_key": push.key("finalize")},
        ),
    )


def find_invoice(push: Push, customer_id: str, order_id: str) -> str | None:
    """After Stripe's idempotency window: an invoice this order already created."""
    if not push.retried:
        return None
    for invoice in push.gateway.iterate("invoices", customer=customer_id):
        if (invoice.get("metadata") or {}).get("veles_order_id") == order_id:
            return str(invoice["id"])
    return None


def find_items(push: Push, invoice_id: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in push.gateway.iterate("invoice_items", invoice=invoice_id):
        line = (item.get("metadata") or {}).get("veles_line")
        if line is not None:
            found[str(line)] = str(item["id"])
    return found
