"""The status object shared by `stripe-bridge status --json` and GET /admin/api/connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stripe_bridge import connection
from stripe_bridge.inbox.store import counts_by_status
from stripe_bridge.matching.linking import unmatched_counts
from stripe_bridge.models import FAILED, RECEIVED, StripeEvent, utcnow
from stripe_bridge.operators.views import iso
from stripe_bridge.settings import Settings
from stripe_bridge.sync import latest_runs


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
    row = connection.get(session)
    stored_secrets = row is not None and row.webhook_secrets_encrypted is not None
    return {
        "status": connection.status_of(row),
        "account_id": row.account_id if row else None,
        "account_name": row.account_name if row else None,
        "mode": row.mode if row else settings.inbound_mode,
        "connected_at": iso(row.connected_at) if row else None,
        "customers_last_synced_at": iso(row.customers_last_synced_at) if row else None,
        "products_last_synced_at": iso(row.products_last_synced_at) if row else None,
        "subscriptions_last_synced_at": iso(row.subscriptions_last_synced_at) if row else None,
        "api_key_last4": row.api_key_last4 if row and row.api_key_encrypted else None,
        "webhook_secrets": "stored"
        if stored_secrets
        else ("environment" if settings.stripe_webhook_secrets else "none"),
        "sync": [
            {
                "kind": run.kind,
                "status": run.status,
                "seen": run.seen,
                "started_at": iso(run.started_at),
                "finished_at": iso(run.finished_at),
                "error": run.error,
            }
            for run in latest_runs(session)
        ],
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
