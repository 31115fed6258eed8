"""Handlers: plain functions `(event, session) -> None`, registered by event type.

Each is safe to run twice and never lets an older event overwrite newer state (guard.py)."""

from __future__ import annotations

from stripe_bridge.handlers import catalog, customers, invoices, subscriptions, veles
from stripe_bridge.handlers.base import Event, Handler

REGISTRY: dict[str, Handler] = {
    **customers.HANDLERS,
    **catalog.HANDLERS,
    **subscriptions.HANDLERS,
    **invoices.HANDLERS,
}

VELES_REGISTRY: dict[str, Handler] = dict(veles.VELES_HANDLERS)

__all__ = ["REGISTRY", "VELES_REGISTRY", "Event", "Handler"]
