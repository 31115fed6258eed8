"""Pushing one outbox row to Stripe, step by step, exactly once in effect.

Every write carries an idempotency key derived from the row and the step
(`veles-outbox-<row>-invoice`, `…-item-<n>`, `…-finalize`, `…-subscription`, …), and what each
step created is saved on the row before the next step starts. A retried row therefore skips
what is done; a retry inside Stripe's 24-hour idempotency window gets the stored answer; a
retry after it looks the object up by its metadata (`veles_order_id`, `veles_line`,
`veles_contract_id`) before creating anything. The one write keyed by the Veles customer
instead of the row is the customer creation, so two rows racing for a new customer create one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import stripe
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from stripe.params import (
    CustomerCreateParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
    SubscriptionCreateParams,
    SubscriptionCreateParamsItem,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsItem,
)

from stripe_bridge.connection import get as get_connection
from stripe_bridge.connection import is_connected
from stripe_bridge.handlers.orders import record_invoice_status
from stripe_bridge.models import OutboxRow, VelesContract, VelesOrder, utcnow
from stripe_bridge.outbox.links import (
    linked_customer,
    linked_products,
    record_created_customer,
    veles_customer,
)
from stripe_bridge.stripe_api import StripeGateway, StripeRejected, plain


class Disconnected(Exception):
    """The connection was disconnected mid-row: stop, and leave the row for later."""


@dataclass(frozen=True)
class PushOptions:
    collection_method: str = "send_invoice"
    days_until_due: int = 30
    auto_advance: bool = True
    proration_behavior: str = "create_prorations"


class Push:
    """One row's push. `after_step` is a test hook (simulates a crash between steps)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        gateway: StripeGateway,
        row: OutboxRow,
        options: PushOptions,
        after_step: Callable[[str], None] | None = None,
    ) -> None:
        self.session_factory, self.gateway, self.row, self.options = (
            session_factory,
            gateway,
            row,
            options,
        )
        self.progress: dict[str, Any] = dict(row.progress or {})
        self.after_step = after_step or (lambda _step: None)

    # --- plumbing ---------------------------------------------------------------------------

    def key(self, step: str) -> str:
        return f"veles-outbox-{self.row.id}-{step}"

    def save(self, step: str, **values: Any) -> None:
        """Persist what a step created, then let the test hook interrupt."""
        self.progress.update(values)
        with self.session_factory.begin() as session:
            session.execute(
                update(OutboxRow).where(OutboxRow.id == self.row.id).values(progress=self.progress)
            )
        self.after_step(step)

    def write(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """A Stripe write, only while connected (a disconnect stops the row at once)."""
        with self.session_factory() as session:
            if not is_connected(get_connection(session)):
                raise Disconnected()
        return plain(self.gateway.call(what, fn))

    @property
    def retried(self) -> bool:
        return self.row.attempts > 1

    def run(self) -> None:
        kind = self.row.kind
        if kind == "order.invoice":
            self.push_order()
        elif kind == "contract.activate":
            self.activate_contract()
        elif kind == "contract.amend":
            self.amend_contract()
        elif kind == "contract.cancel":
            self.cancel_contract()
        else:
            raise StripeRejected(
                f"unknown outbox row kind {kind}", stripe_code=None, param=None, status=None
            )

    # --- shared steps -----------------------------------------------------------------------

    def ensure_customer(self, veles_customer_id: str) -> str:
        if customer_id := self.progress.get("customer"):
            return str(customer_id)
        with self.session_factory() as session:
            customer_id = linked_customer(session, veles_customer_id)
            veles = veles_customer(session, veles_customer_id)
            name, email = veles.name, veles.email
        if customer_id is None:
            params: CustomerCreateParams = {
                "name": name,
                "metadata": {"veles_customer_id": veles_customer_id},
            }
            if email:
                params["email"] = email
            created = self.write(
                "create customer",
                lambda: self.gateway.v1.customers.create(
                    params=params,
                    options={"idempotency_key": f"veles-customer-{veles_customer_id}"},
                ),
            )
            with self.session_factory.begin() as session:
                record_created_customer(session, created, veles_customer_id)
            customer_id = str(created["id"])
        self.save("customer", customer=customer_id)
        return customer_id

    def products(self, lines: list[dict[str, Any]]) -> dict[str, str]:
        with self.session_factory() as session:
            return linked_products(session, {line["product_id"] for line in lines})

    # --- order → invoice --------------------------------------------------------------------

    def push_order(self) -> None:
        payload = self.row.payload
        order_id, lines = payload["order_id"], payload["lines"]
        products = self.products(lines)  # before anything is created: a missing link is final
        customer_id = self.ensure_customer(payload["customer_id"])
        invoice_id = self.progress.get("invoice") or self.find_invoice(customer_id, order_id)
        if invoice_id is None:
            params: InvoiceCreateParams = {
                "customer": customer_id,
                "currency": payload["currency"],
                "collection_method": self.options.collection_method,
                "auto_advance": False,
                "pending_invoice_items_behavior": "exclude",
                "metadata": {"veles_order_id": order_id},
            }
            if self.options.collection_method == "send_invoice":
                params["days_until_due"] = self.options.days_until_due
            invoice = self.write(
                "create invoice",
                lambda: self.gateway.v1.invoices.create(
                    params=params, options={"idempotency_key": self.key("invoice")}
                ),
            )
            invoice_id = invoice["id"]
        self.save("invoice", invoice=invoice_id)
        items: dict[str, str] = dict(self.progress.get("items") or {})
        if self.retried and len(items) < len(lines):
            items.update(self.find_items(invoice_id))
        for n, line in enumerate(lines):
            if str(n) in items:
                continue
            item_params: InvoiceItemCreateParams = {
                "customer": customer_id,
                "invoice": invoice_id,
                "quantity": line["quantity"],
                "price_data": {
                    "currency": payload["currency"],
                    "product": products[line["product_id"]],
                    "unit_amount": line["unit_amount"],
                },
                "metadata": {"veles_order_id": order_id, "veles_line": str(n)},
            }
            if line.get("description"):
                item_params["description"] = line["description"]
            item = self.write(
                f"create invoice item {n}",
                partial(
                    self.gateway.v1.invoice_items.create,
                    params=item_params,
                    options={"idempotency_key": self.key(f"item-{n}")},
                ),
            )
            items[str(n)] = item["id"]
            self.save(f"item-{n}", items=items)
        invoice = self.finalize(invoice_id)
        with self.session_factory.begin() as session:
            order = session.get(VelesOrder, order_id, with_for_update=True)
            if order is not None:
                order.stripe_invoice_id = invoice_id
                record_invoice_status(order, invoice_id, invoice.get("status"))
        self.save("finalize", finalized=True)

    def finalize(self, invoice_id: str) -> dict[str, Any]:
        current = plain(
            self.gateway.call(
                "retrieve invoice", lambda: self.gateway.v1.invoices.retrieve(invoice_id)
            )
        )
        if current.get("status") != "draft":
            return current  # finalized already (by an earlier attempt)
        return self.write(
            "finalize invoice",
            lambda: self.gateway.v1.invoices.finalize_invoice(
                invoice_id,
                params={"auto_advance": self.options.auto_advance},
                options={"idempotency_key": self.key("finalize")},
            ),
        )

    def find_invoice(self, customer_id: str, order_id: str) -> str | None:
        """After Stripe's idempotency window: an invoice this order already created."""
        if not self.retried:
            return None
        for invoice in self.gateway.iterate("invoices", customer=customer_id):
            if (invoice.get("metadata") or {}).get("veles_order_id") == order_id:
                return str(invoice["id"])
        return None

    def find_items(self, invoice_id: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in self.gateway.iterate("invoice_items", invoice=invoice_id):
            line = (item.get("metadata") or {}).get("veles_line")
            if line is not None:
                found[str(line)] = str(item["id"])
        return found

    # --- contract → subscription ------------------------------------------------------------

    def item_params(
        self, payload: dict[str, Any], products: dict[str, str], line: dict[str, Any]
    ) -> SubscriptionCreateParamsItem:
        return {
            "price_data": {
                "currency": payload["currency"],
                "product": products[line["product_id"]],
                "unit_amount": line["unit_amount"],
                "recurring": {"interval": payload["interval"]},
            },
            "quantity": line["quantity"],
            "metadata": {"veles_product_id": line["product_id"]},
        }

    def activate_contract(self) -> None:
        payload = self.row.payload
        contract_id = payload["contract_id"]
        products = self.products(payload["lines"])
        customer_id = self.ensure_customer(payload["customer_id"])
        subscription_id = self.progress.get("subscription") or self.find_subscription(
            customer_id, contract_id
        )
        if subscription_id is None:
            params: SubscriptionCreateParams = {
                "customer": customer_id,
                "items": [self.item_params(payload, products, line) for line in payload["lines"]],
                "metadata": {"veles_contract_id": contract_id},
                "collection_method": self.options.collection_method,
            }
            if self.options.collection_method == "send_invoice":
                params["days_until_due"] = self.options.days_until_due
            start = int(
                datetime.fromisoformat(payload["start_date"]).replace(tzinfo=UTC).timestamp()
            )
            now = int(utcnow().timestamp())
            if start < now - 60:
                params["backdate_start_date"] = start
            elif start > now + 60:
                params["billing_cycle_anchor"] = start
                params["proration_behavior"] = "none"
            subscription = self.write(
                "create subscription",
                lambda: self.gateway.v1.subscriptions.create(
                    params=params, options={"idempotency_key": self.key("subscription")}
                ),
            )
            subscription_id = subscription["id"]
            status = subscription.get("status")
        else:
            status = self.retrieve_subscription(subscription_id).get("status")
        self.save("subscription", subscription=subscription_id)
        self.record_contract(contract_id, subscription_id, status)

    def amend_contract(self) -> None:
        payload = self.row.payload
        contract_id = payload["contract_id"]
        products = self.products(payload["lines"])
        subscription_id = self.contract_subscription(contract_id)
        current = self.retrieve_subscription(subscription_id)
        by_product = {
            (item.get("metadata") or {}).get("veles_product_id"): item
            for item in (current.get("items") or {}).get("data", [])
        }
        items: list[SubscriptionUpdateParamsItem] = []
        wanted = set()
        for line in payload["lines"]:
            wanted.add(line["product_id"])
            existing = by_product.get(line["product_id"])
            fresh = self.item_params(payload, products, line)
            item: SubscriptionUpdateParamsItem = {
                "quantity": fresh["quantity"],
                "price_data": fresh["price_data"],
            }
            if existing is None:
                item["metadata"] = {"veles_product_id": line["product_id"]}
            else:
                item["id"] = existing["id"]
            items.append(item)
        for veles_product_id, old in by_product.items():
            if veles_product_id not in wanted:
                items.append({"id": old["id"], "deleted": True})
        params: SubscriptionUpdateParams = {
            "items": items,
            "proration_behavior": self.options.proration_behavior,
        }
        updated = self.write(
            "amend subscription",
            lambda: self.gateway.v1.subscriptions.update(
                subscription_id, params=params, options={"idempotency_key": self.key("amend")}
            ),
        )
        self.save("amend", amended=True)
        self.record_contract(contract_id, subscription_id, updated.get("status"))

    def cancel_contract(self) -> None:
        payload = self.row.payload
        contract_id = payload["contract_id"]
        subscription_id = self.contract_subscription(contract_id)
        options: stripe.RequestOptions = {"idempotency_key": self.key("cancel")}
        if payload.get("at_period_end", True):
            result = self.write(
                "cancel subscription at period end",
                lambda: self.gateway.v1.subscriptions.update(
                    subscription_id, params={"cancel_at_period_end": True}, options=options
                ),
            )
        else:
            current = self.retrieve_subscription(subscription_id)
            if current.get("status") == "canceled":
                result = current
            else:
                result = self.write(
                    "cancel subscription",
                    lambda: self.gateway.v1.subscriptions.cancel(subscription_id, options=options),
                )
        self.save("cancel", cancelled=True)
        self.record_contract(contract_id, subscription_id, result.get("status"))

    def contract_subscription(self, contract_id: str) -> str:
        with self.session_factory() as session:
            contract = session.get(VelesContract, contract_id)
            subscription_id = contract.stripe_subscription_id if contract else None
        if not subscription_id:
            raise StripeRejected(
                f"contract {contract_id} has no Stripe subscription yet",
                stripe_code=None,
                param=None,
                status=None,
            )
        return subscription_id

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return plain(
            self.gateway.call(
                "retrieve subscription",
                lambda: self.gateway.v1.subscriptions.retrieve(subscription_id),
            )
        )

    def find_subscription(self, customer_id: str, contract_id: str) -> str | None:
        if not self.retried:
            return None
        for subscription in self.gateway.iterate(
            "subscriptions", customer=customer_id, status="all"
        ):
            if (subscription.get("metadata") or {}).get("veles_contract_id") == contract_id:
                return str(subscription["id"])
        return None

    def record_contract(self, contract_id: str, subscription_id: str, status: Any) -> None:
        with self.session_factory.begin() as session:
            contract = session.get(VelesContract, contract_id, with_for_update=True)
            if contract is not None:
                contract.stripe_subscription_id = subscription_id
                contract.subscription_status = (
                    str(status) if status else contract.subscription_status
                )
                contract.updated_at = utcnow()
