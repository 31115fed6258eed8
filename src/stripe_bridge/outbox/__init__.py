"""The transactional outbox: Veles orders → Stripe invoices, contracts → Stripe subscriptions.

`record_*` write the change and its outbox row in the caller's session (commit both or
neither); the relay (relay.py) pushes the rows to Stripe, exactly once in effect."""

from stripe_bridge.outbox.writer import (
    VELES_HANDLERS,
    InvalidChange,
    record_contract_activated,
    record_contract_amended,
    record_contract_cancelled,
    record_order,
)

__all__ = [
    "VELES_HANDLERS",
    "InvalidChange",
    "record_contract_activated",
    "record_contract_amended",
    "record_contract_cancelled",
    "record_order",
]
