"""Handlers: plain functions `(event, uow) -> None`, registered by event type.

Each is safe to run twice and never lets an older event overwrite newer state (guard.py)."""

from __future__ import annotations

from stripe_bridge.handlers import catalog, customers, invoices, subscriptions, veles_records
from stripe_bridge.handlers.base import Claim, Handler

STRIPE_HANDLERS: dict[str, Handler] = {
    **customers.HANDLERS,
    **catalog.HANDLERS,
    **subscriptions.HANDLERS,
    **invoices.HANDLERS,
}

# What each Stripe handler locks (batches lock it once for all their events).
CLAIMS: dict[str, Claim] = {
    **customers.CLAIMS,
    **catalog.CLAIMS,
    **subscriptions.CLAIMS,
    **invoices.CLAIMS,
}

VELES_HANDLERS: dict[str, Handler] = dict(veles_records.VELES_HANDLERS)

__all__ = ["CLAIMS", "STRIPE_HANDLERS", "VELES_HANDLERS"]
