"""The admin API's schemas: small JSON Schema builders and the components every route's
declaration refers to by name (`ref("Customer")`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Schema = dict[str, Any]


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def integer(**extra: Any) -> Schema:
    return {"type": "integer", **extra}


def boolean() -> Schema:
    return {"type": "boolean"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(properties: Mapping[str, Schema], *, optional: Iterable[str] = ()) -> Schema:
    """An object with these properties, all required but `optional`; more are allowed."""
    required = [name for name in properties if name not in set(optional)]
    return {"type": "object", "properties": dict(properties), "required": required}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def page(item: str) -> Schema:
    return obj(
        {"data": array(ref(item)), "next_cursor": nullable(string()), "total": integer()},
        optional=["total"],  # every row the filters select, on every page
    )


TEXT, TIME = nullable(string()), nullable(string(format="date-time"))
ANY_OBJECT: Schema = {"type": "object"}


_PRICE = {
    "id": string(),
    "product": TEXT,
    "unit_amount": nullable(integer()),
    "currency": TEXT,
    "type": TEXT,
    "recurring_interval": TEXT,
    "recurring_interval_count": nullable(integer()),
    "active": boolean(),
    "deleted": boolean(),
}
_OUTBOX = {
    "id": integer(),
    "kind": string(),
    "status": string(),
    "attempts": integer(),
    "next_attempt_at": TIME,
    "last_error": TEXT,
    "created_at": TIME,
    "sent_at": TIME,
}
_SYNC_RUN = {
    "kind": string(),
    "status": string(),
    "seen": nullable(integer()),
    "started_at": TIME,
    "finished_at": TIME,
    "error": TEXT,
}
COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": obj({"code": string(), "message": string()})}),
    "Customer": obj(
        {
            "id": string(),
            "name": TEXT,
            "email": TEXT,
            "domain": TEXT,
            "metadata": ANY_OBJECT,
            "deleted": boolean(),
            "created": TIME,
            "match_status": string(),
            "veles_customer_id": TEXT,
            "match_method": TEXT,
            "match_manual": boolean(),
            "candidates": array(string()),
        }
    ),
    "Price": obj(_PRICE),
    "Product": obj(
        {
            "id": string(),
            "name": TEXT,
            "description": TEXT,
            "active": boolean(),
            "deleted": boolean(),
            "metadata": ANY_OBJECT,
            "created": TIME,
            "match_status": string(),
            "veles_product_id": TEXT,
            "match_manual": boolean(),
            "candidates": array(string()),
            "prices": array(ref("Price")),
        }
    ),
    "Subscription": obj(
        {
            "id": string(),
            "customer": TEXT,
            "status": TEXT,
            "items": array(obj({"price": TEXT, "product": TEXT, "quantity": nullable(integer())})),
            "current_period_start": TIME,
            "current_period_end": TIME,
            "cancel_at_period_end": nullable(boolean()),
            "canceled_at": TIME,
            "created": TIME,
            "veles_contract_id": TEXT,
        }
    ),
    "Invoice": obj(
        {
            "id": string(),
            "customer": TEXT,
            "subscription": TEXT,
            "status": TEXT,
            "amount_due": nullable(integer()),
            "amount_paid": nullable(integer()),
            "currency": TEXT,
            "number": TEXT,
            "paid_at": TIME,
            "created": TIME,
            "veles_order_id": TEXT,
        }
    ),
    "Event": obj(
        {
            "id": string(),
            "type": string(),
            "status": string(enum=["received", "processed", "ignored", "failed", "discarded"]),
            "reason": TEXT,
            "attempts": integer(minimum=0),
            "last_error": TEXT,
            "object_id": TEXT,
            "livemode": nullable(boolean()),
            "created": integer(),
            "received_at": string(format="date-time"),
            "processed_at": TIME,
        }
    ),
    "VelesCustomer": obj(
        {"id": string(), "name": TEXT, "email": TEXT, "domain": TEXT, "origin": TEXT}
    ),
    "VelesProduct": obj(
        {
            "id": string(),
            "name": TEXT,
            "sku": TEXT,
            "unit_label": TEXT,
            "prices": array(ANY_OBJECT),
            "origin": TEXT,
        }
    ),
    "OutboxRow": obj(_OUTBOX),
    "Order": obj(
        {
            "id": string(),
            "customer_id": TEXT,
            "status": TEXT,
            "currency": TEXT,
            "lines": nullable(array(ANY_OBJECT)),
            "stripe_invoice_id": TEXT,
            "invoice_status": TEXT,
            "payment_status": TEXT,
            "created_at": TIME,
            "updated_at": TIME,
            "outbox": array(ref("OutboxRow")),
        }
    ),
    "Contract": obj(
        {
            "id": string(),
            "customer_id": TEXT,
            "status": TEXT,
            "currency": TEXT,
            "interval": TEXT,
            "start_date": TEXT,
            "lines": nullable(array(ANY_OBJECT)),
            "stripe_subscription_id": TEXT,
            "subscription_status": TEXT,
            "outbox": array(ref("OutboxRow")),
        }
    ),
    "SyncRun": obj(_SYNC_RUN),
    "Workspace": obj(
        {
            "id": string(),
            "name": string(),
            "created_at": TIME,
            "status": string(enum=["connected", "disconnected", "not_connected"]),
            "account_id": TEXT,
            "mode": nullable(string(enum=["test", "live"])),
        }
    ),
    "Connection": obj(
        {
            "workspace_id": string(),
            "status": string(enum=["connected", "disconnected", "not_connected"]),
            "account_id": TEXT,
            "account_name": TEXT,
            "mode": string(enum=["test", "live"]),
            "connected_at": TIME,
            "disconnected_at": TIME,
            "customers_last_synced_at": TIME,
            "products_last_synced_at": TIME,
            "subscriptions_last_synced_at": TIME,
            "api_key_last4": TEXT,
            "webhook_endpoint_id": TEXT,
            "platform": boolean(),
            "webhook_secrets": string(enum=["stored", "environment", "none"]),
            "sync": array(ref("SyncRun")),
            "unmatched_customers": integer(minimum=0),
            "unmatched_products": integer(minimum=0),
            "inbox": obj(
                {
                    "by_status": {"type": "object", "additionalProperties": integer()},
                    "oldest_unprocessed_age_seconds": nullable({"type": "number"}),
                    "recent_failures": array(
                        obj(
                            {
                                "id": string(),
                                "type": string(),
                                "attempts": integer(),
                                "last_error": TEXT,
                            }
                        )
                    ),
                }
            ),
        }
    ),
    "DeadLetter": obj(
        {
            "id": string(),
            "kind": string(enum=["event", "veles", "outbox"]),
            "type": string(),
            "subject": TEXT,
            "attempts": integer(),
            "first_failed_at": TIME,
            "last_failed_at": TIME,
            "error": TEXT,
            "error_type": TEXT,
            "replays": integer(),
            "replayed_at": TIME,
            "traceback": TEXT,
        },
        optional=("traceback",),
    ),
}
