"""Pushing one outbox row to Stripe, step by step, exactly once in effect.

Every write carries an idempotency key derived from the row and the step
(`veles-outbox-<row>-invoice`, `…-item-<n>`, `…-finalize`, `…-subscription`, …), and what each
step created is saved on the row before the next step starts. A retried row therefore skips
what is done; a retry inside Stripe's 24-hour idempotency window gets the stored answer; a
retry after it looks the object up by its metadata (`veles_order_id`, `veles_line`,
`veles_contract_id`) before creating anything. The one write keyed by the Veles customer
instead of the row is the customer creation, so two rows racing for a new customer create one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.connection import get as get_connection
from stripe_bridge.connection import is_connected
from stripe_bridge.models import OutboxRow
from stripe_bridge.stripe_api import StripeGateway, plain


class Disconnected(Exception):
    """The connection was disconnected mid-row: stop, and leave the row for later."""


@dataclass(frozen=True)
class PushOptions:
    collection_method: str = "send_invoice"
    days_until_due: int = 30
    auto_advance: bool = True
    proration_behavior: str = "create_prorations"


class Push:
    """One row's push. `after_step` is a test hook (simulates a crash between steps)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        gateway: StripeGateway,
        row: OutboxRow,
        options: PushOptions,
        after_step: Callable[[str], None] | None = None,
    ) -> None:
        self.session_factory, self.gateway, self.row, self.options = (
            session_factory,
            gateway,
            row,
            options,
        )
        self.progress: dict[str, Any] = dict(row.progress or {})
        self.after_step = after_step or (lambda _step: None)

    @property
    def workspace_id(self) -> str:
        return self.row.workspace_id

    def key(self, step: str) -> str:
        # outbox ids come from one sequence for every workspace: the key names one row (and
        # keeps the shape rows written before workspaces resume with)
        return f"veles-outbox-{self.row.id}-{step}"

    def save(self, step: str, **values: Any) -> None:
        """Persist what a step created, then let the test hook interrupt."""
        self.progress.update(values)
        with self.session_factory.begin() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.workspace_id == self.workspace_id, OutboxRow.id == self.row.id)
                .values(progress=self.progress)
            )
        self.after_step(step)

    def write(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """A Stripe write, only while connected (a disconnect stops the row at once)."""
        with self.session_factory() as session:
            if not is_connected(get_connection(session, self.workspace_id)):
                raise Disconnected()
        return plain(self.gateway.call(what, fn))

    @property
    def retried(self) -> bool:
        return self.row.attempts > 1

    def read(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """A Stripe read (retried like every call; allowed while disconnecting)."""
        return plain(self.gateway.call(what, fn))
