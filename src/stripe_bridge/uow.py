"""The unit of work a handler is given: its transaction, and what a batch locked and loaded
for all its events (so that a handler asks the database only for what was not preloaded).

One event at a time, only `session` is set; `inbox.batch` fills the rest before its events'
handlers run. Plain data: the handlers, `matching.linking` and `handlers.orders` read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from stripe_bridge.matching.linking import MatchingPools
from stripe_bridge.models import VelesContract, VelesOrder, Versioned


@dataclass
class UnitOfWork:
    session: Session
    workspace_id: str  # every row the handlers read or write is this workspace's
    # The batch's mirror rows, claimed (created, locked, loaded) in one statement per table;
    # None one event at a time, where `handlers.base.lock_row` claims each row itself.
    rows: dict[tuple[type[Versioned], str], Versioned] | None = None
    locks: set[str] = field(default_factory=set)  # the matching locks the batch holds
    pools: MatchingPools | None = None  # the Veles records the batch's records may match
    links: OrderLinks | None = None  # the Veles orders and contracts it may update


@dataclass
class OrderLinks:
    """The Veles orders and contracts a batch of events may update, looked up and locked once
    for the batch (`preload_links`); ids asked for and not found are remembered as absent."""

    order_ids: set[str] = field(default_factory=set)
    invoice_ids: set[str] = field(default_factory=set)
    orders: dict[str, VelesOrder] = field(default_factory=dict)
    orders_by_invoice: dict[str, VelesOrder] = field(default_factory=dict)
    contract_ids: set[str] = field(default_factory=set)
    subscription_ids: set[str] = field(default_factory=set)
    contracts: dict[str, VelesContract] = field(default_factory=dict)
    contracts_by_subscription: dict[str, VelesContract] = field(default_factory=dict)
