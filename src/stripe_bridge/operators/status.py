"""The status object shared by `stripe-bridge status --json` and GET /admin/api/connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stripe_bridge import connection
from stripe_bridge.inbox.store import counts_by_status
from stripe_bridge.matching.linking import unmatched_counts
from stripe_bridge.models import DEFAULT_WORKSPACE, FAILED, RECEIVED, StripeEvent, utcnow
from stripe_bridge.operators.views import iso
from stripe_bridge.settings import Settings
from stripe_bridge.sync import latest_runs


def status_object(session: Session, settings: Settings, workspace_id: str) -> dict[str, Any]:
    """One workspace's: every query is led by its id (cheap however many workspaces exist)."""
    unmatched_customers, unmatched_products = unmatched_counts(session, workspace_id)
    row = connection.get(session, workspace_id)
    stored_secrets = row is not None and row.webhook_secrets_encrypted is not None
    environment = settings.stripe_webhook_secrets and workspace_id == DEFAULT_WORKSPACE
    return {
        "workspace_id": workspace_id,
        "status": connection.status_of(row),
        "account_id": row.account_id if row else None,
        "account_name": row.account_name if row else None,
        "mode": row.mode if row else settings.inbound_mode,
        "connected_at": iso(row.connected_at) if row else None,
        "disconnected_at": iso(row.disconnected_at) if row else None,
        "customers_last_synced_at": iso(row.customers_last_synced_at) if row else None,
        "products_last_synced_at": iso(row.products_last_synced_at) if row else None,
        "subscriptions_last_synced_at": iso(row.subscriptions_last_synced_at) if row else None,
        "api_key_last4": row.api_key_last4 if row and row.api_key_encrypted else None,
        "webhook_endpoint_id": row.webhook_endpoint_id if row else None,
        "platform": bool(row and row.platform),
        "webhook_secrets": "stored"
        if stored_secrets
        else ("environment" if environment else "none"),
        "sync": [
            {
                "kind": run.kind,
                "status": run.status,
                "seen": run.seen,
                "started_at": iso(run.started_at),
                "finished_at": iso(run.finished_at),
                "error": run.error,
            }
            for run in latest_runs(session, workspace_id)
        ],
        "unmatched_customers": unmatched_customers,
        "unmatched_products": unmatched_products,
        "inbox": _inbox(session, workspace_id),
    }


def _inbox(session: Session, workspace_id: str) -> dict[str, Any]:
    mine = StripeEvent.workspace_id == workspace_id
    oldest = session.scalar(
        select(func.min(StripeEvent.received_at)).where(mine, StripeEvent.status == RECEIVED)
    )
    failures = session.execute(
        select(StripeEvent.id, StripeEvent.type, StripeEvent.attempts, StripeEvent.last_error)
        .where(mine, StripeEvent.status == FAILED)
        .order_by(StripeEvent.received_at.desc())
        .limit(5)
    ).all()
    return {
        "by_status": counts_by_status(session, StripeEvent, workspace_id),
        "oldest_unprocessed_age_seconds": (
            round((utcnow() - oldest).total_seconds(), 1) if oldest else None
        ),
        "recent_failures": [
            {"id": row.id, "type": row.type, "attempts": row.attempts, "last_error": row.last_error}
            for row in failures
        ],
    }
