"""The status object shared by `stripe-bridge status --json` and GET /admin/api/connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stripe_bridge.inbox import counts_by_status
from stripe_bridge.linking import unmatched_counts
from stripe_bridge.models import FAILED, RECEIVED, StripeEvent, utcnow
from stripe_bridge.settings import Settings


def status_object(session: Session, settings: Settings) -> dict[str, Any]:
    oldest = session.scalar(
        select(func.min(StripeEvent.received_at)).where(StripeEvent.status == RECEIVED)
    )
    failures = session.execute(
        select(StripeEvent.id, StripeEvent.type, StripeEvent.attempts, StripeEvent.last_error)
        .where(StripeEvent.status == FAILED)
        .order_by(StripeEvent.received_at.desc())
        .limit(5)
    ).all()
    unmatched_customers, unmatched_products = unmatched_counts(session)
    key = settings.stripe_api_key
    return {
        "status": "not_connected",
        "account_id": None,
        "account_name": None,
        "mode": settings.inbound_mode,
        "connected_at": None,
        "customers_last_synced_at": None,
        "products_last_synced_at": None,
        "api_key_last4": key[-4:] if key else None,
        "webhook_secrets": len(settings.stripe_webhook_secrets),
        "unmatched_customers": unmatched_customers,
        "unmatched_products": unmatched_products,
        "inbox": {
            "by_status": counts_by_status(session),
            "oldest_unprocessed_age_seconds": (
                round((utcnow() - oldest).total_seconds(), 1) if oldest else None
            ),
            "recent_failures": [
                {
                    "id": row.id,
                    "type": row.type,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                }
                for row in failures
            ],
        },
    }
