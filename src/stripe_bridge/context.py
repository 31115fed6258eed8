"""What the composition root (`bootstrap.py`) builds and hands down: a plain record, no logic.

The roles, the web app and the CLI's commands take the whole record; the modules they call take
only the parts their signatures name (a session factory, a gateway factory, the job queue)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.endpoints import EndpointPlan
from stripe_bridge.handlers.base import Claim, Handler
from stripe_bridge.models import Inbox, StripeEvent
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings
from stripe_bridge.stripe_api import GatewayFactory


class JobQueue(Protocol):
    """Sending work to the workers (`jobs.Jobs` on the configured broker)."""

    def send_events(
        self,
        workspace_id: str,
        event_ids: Iterable[str],
        inbox: Inbox = StripeEvent,
        *,
        bulk: bool = False,
    ) -> list[str]:
        """Jobs for a workspace's stored events; answers the ids sent (the rest stay for the
        sweeper). `bulk`: replays and recoveries, which live deliveries go before."""
        ...

    def send_keys(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Live jobs for stored Stripe events of any workspaces, `(workspace_id, event_id)`
        (the web's job sender); answers the keys sent."""
        ...

    def send_sync(self, workspace_id: str, kind: str, trigger: str) -> None:
        """A sync run of `kind` for the workspace, as a job."""
        ...


@dataclass
class Context:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    broker: dramatiq.Broker
    jobs: JobQueue
    box: SecretBox
    gateway: GatewayFactory  # a Stripe client for an API key (and account)
    endpoint_plan: EndpointPlan | None  # set: `connect` registers webhook endpoints itself
    handlers: dict[str, Handler]  # Stripe event type → handler
    claims: dict[str, Claim]  # Stripe event type → what its handler locks
    veles_handlers: dict[str, Handler]  # Veles event type → handler

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.broker.close()
        self.engine.dispose()
