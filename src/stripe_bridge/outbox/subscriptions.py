"""A Veles contract → its Stripe subscription: activate (create), amend (items and
quantities, with the configured proration), cancel (at period end or now)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import (
    SubscriptionCreateParams,
    SubscriptionCreateParamsItem,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsItem,
)

from stripe_bridge.models import VelesContract, utcnow
from stripe_bridge.outbox.customers import ensure_customer, linked_products_of
from stripe_bridge.outbox.push import Push
from stripe_bridge.stripe_api import StripeRejected


def item_params(
    push: Push, payload: dict[str, Any], products: dict[str, str], line: dict[str, Any]
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


def activate_contract(push: Push) -> None:
    payload = push.row.payload
    contract_id = payload["contract_id"]
    products = linked_products_of(push, payload["lines"])
    customer_id = ensure_customer(push, payload["customer_id"])
    subscription_id = push.progress.get("subscription") or find_subscription(
        push, customer_id, contract_id
    )
    if subscription_id is None:
        params: SubscriptionCreateParams = {
            "customer": customer_id,
            "items": [item_params(push, payload, products, line) for line in payload["lines"]],
            "metadata": {"veles_contract_id": contract_id},
            "collection_method": push.options.collection_method,
        }
        if push.options.collection_method == "send_invoice":
            params["days_until_due"] = push.options.days_until_due
        start = int(datetime.fromisoformat(payload["start_date"]).replace(tzinfo=UTC).timestamp())
        now = int(utcnow().timestamp())
        if start < now - 60:
            params["backdate_start_date"] = start
        elif start > now + 60:
            params["billing_cycle_anchor"] = start
            params["proration_behavior"] = "none"
        subscription = push.write(
            "create subscription",
            lambda: push.gateway.v1.subscriptions.create(
                params=params, options={"idempotency_key": push.key("subscription")}
            ),
        )
        subscription_id = subscription["id"]
        status = subscription.get("status")
    else:
        status = retrieve_subscription(push, subscription_id).get("status")
    push.save("subscription", subscription=subscription_id)
    record_contract(push, contract_id, subscription_id, status)


def amend_contract(push: Push) -> None:
    payload = push.row.payload
    contract_id = payload["contract_id"]
    products = linked_products_of(push, payload["lines"])
    subscription_id = contract_subscription(push, contract_id)
    current = retrieve_subscription(push, subscription_id)
    by_product = {
        (item.get("metadata") or {}).get("veles_product_id"): item
        for item in (current.get("items") or {}).get("data", [])
    }
    items: list[SubscriptionUpdateParamsItem] = []
    wanted = set()
    for line in payload["lines"]:
        wanted.add(line["product_id"])
        existing = by_product.get(line["product_id"])
        fresh = item_params(push, payload, products, line)
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
        "proration_behavior": push.options.proration_behavior,
    }
    updated = push.write(
        "amend subscription",
        lambda: push.gateway.v1.subscriptions.update(
            subscription_id, params=params, options={"idempotency_key": push.key("amend")}
        ),
    )
    push.save("amend", amended=True)
    record_contract(push, contract_id, subscription_id, updated.get("status"))


def cancel_contract(push: Push) -> None:
    payload = push.row.payload
    contract_id = payload["contract_id"]
    subscription_id = contract_subscription(push, contract_id)
    options: stripe.RequestOptions = {"idempotency_key": push.key("cancel")}
    if payload.get("at_period_end", True):
        result = push.write(
            "cancel subscription at period end",
            lambda: push.gateway.v1.subscriptions.update(
                subscription_id, params={"cancel_at_period_end": True}, options=options
            ),
        )
    else:
        current = retrieve_subscription(push, subscription_id)
        if current.get("status") == "canceled":
            result = current
        else:
            result = push.write(
                "cancel subscription",
                lambda: push.gateway.v1.subscriptions.cancel(subscription_id, options=options),
            )
    push.save("cancel", cancelled=True)
    record_contract(push, contract_id, subscription_id, result.get("status"))


def contract_subscription(push: Push, contract_id: str) -> str:
    with push.session_factory() as session:
        contract = session.get(VelesContract, (push.workspace_id, contract_id))
        subscription_id = contract.stripe_subscription_id if contract else None
    if not subscription_id:
        raise StripeRejected(
            f"contract {contract_id} has no Stripe subscription yet",
            stripe_code=None,
            param=None,
            status=None,
        )
    return subscription_id


def retrieve_subscription(push: Push, subscription_id: str) -> dict[str, Any]:
    return push.read(
        "retrieve subscription", lambda: push.gateway.v1.subscriptions.retrieve(subscription_id)
    )


def find_subscription(push: Push, customer_id: str, contract_id: str) -> str | None:
    if not push.retried:
        return None
    for subscription in push.gateway.iterate("subscriptions", customer=customer_id, status="all"):
        if (subscription.get("metadata") or {}).get("veles_contract_id") == contract_id:
            return str(subscription["id"])
    return None


def record_contract(push: Push, contract_id: str, subscription_id: str, status: Any) -> None:
    with push.session_factory.begin() as session:
        contract = session.get(
            VelesContract, (push.workspace_id, contract_id), with_for_update=True
        )
        if contract is not None:
            contract.stripe_subscription_id = subscription_id
            contract.subscription_status = str(status) if status else contract.subscription_status
            contract.updated_at = utcnow()
