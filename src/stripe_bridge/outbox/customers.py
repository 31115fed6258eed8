"""The Stripe customer a push needs: the linked one, or one created from the Veles customer
(keyed by the Veles customer, so two rows racing for a new customer create one)."""

from __future__ import annotations

from typing import Any

from stripe.params import (
    CustomerCreateParams,
)

from stripe_bridge.models import DEFAULT_WORKSPACE
from stripe_bridge.outbox.links import (
    linked_customer,
    linked_products,
    record_created_customer,
    veles_customer,
)
from stripe_bridge.outbox.push import Push


def ensure_customer(push: Push, veles_customer_id: str) -> str:
    if customer_id := push.progress.get("customer"):
        return str(customer_id)
    with push.session_factory() as session:
        customer_id = linked_customer(session, push.workspace_id, veles_customer_id)
        veles = veles_customer(session, push.workspace_id, veles_customer_id)
        name, email = veles.name, veles.email
    if customer_id is None:
        params: CustomerCreateParams = {
            "name": name,
            "metadata": {"veles_customer_id": veles_customer_id},
        }
        if email:
            params["email"] = email
        created = push.write(
            "create customer",
            lambda: push.gateway.v1.customers.create(
                params=params,
                options={"idempotency_key": customer_key(push.workspace_id, veles_customer_id)},
            ),
        )
        with push.session_factory.begin() as session:
            record_created_customer(session, push.workspace_id, created, veles_customer_id)
        customer_id = str(created["id"])
    push.save("customer", customer=customer_id)
    return customer_id


def linked_products_of(push: Push, lines: list[dict[str, Any]]) -> dict[str, str]:
    with push.session_factory() as session:
        return linked_products(session, push.workspace_id, {line["product_id"] for line in lines})


def customer_key(workspace_id: str, veles_customer_id: str) -> str:
    """Veles ids are unique within a workspace: so is the key (`default`'s keeps the form it had
    before workspaces, so a push resumed across the upgrade replays, not doubles)."""
    if workspace_id == DEFAULT_WORKSPACE:
        return f"veles-customer-{veles_customer_id}"
    return f"veles-customer-{workspace_id}-{veles_customer_id}"
