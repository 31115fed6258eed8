"""Wires everything from Settings: the one place that builds engines, brokers and actors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dramatiq
import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.batches import chunks
from stripe_bridge.connection import refusal_now
from stripe_bridge.db import make_engine, make_session_factory
from stripe_bridge.handlers import REGISTRY, VELES_REGISTRY, Handler
from stripe_bridge.inbox import Inbox
from stripe_bridge.jobs import (
    SYNC_QUEUE,
    SYNC_TIME_LIMIT_MS,
    Actors,
    PipelinedRedisBroker,
    build_broker,
    declare_actors,
)
from stripe_bridge.models import StripeEvent, VelesEvent
from stripe_bridge.secrets_box import SecretBox, box_from_settings
from stripe_bridge.settings import Settings
from stripe_bridge.stripe_api import Backoff, StripeGateway

log = structlog.get_logger(__name__)


@dataclass
class Bridge:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    broker: dramatiq.Broker
    actors: Actors
    handlers: dict[str, Handler] = field(default_factory=lambda: dict(REGISTRY))
    veles_handlers: dict[str, Handler] = field(default_factory=lambda: dict(VELES_REGISTRY))

    def enqueue_events(self, event_ids: Iterable[str], inbox: Inbox = StripeEvent) -> list[str]:
        """Send jobs for stored events: Stripe events in batches of at most `BATCH_SIZE` ids a
        job, Veles events one a job; all in one Redis round trip on the Redis broker. Answers
        the ids sent. On a broker error the events stay `received` and the sweeper sends them
        once the broker is back."""
        ids = list(event_ids)
        messages: list[tuple[list[str], dramatiq.Message[Any]]]
        if inbox is VelesEvent:
            actor = self.actors.apply_veles_event
            messages = [([event_id], actor.message(event_id)) for event_id in ids]
        else:
            batch_actor = self.actors.apply_stripe_events
            messages = [(batch, batch_actor.message(batch)) for batch in chunks(ids)]
        sent: list[str] = []
        try:
            if isinstance(self.broker, PipelinedRedisBroker):
                self.broker.enqueue_many([message for _ids, message in messages])
                return ids
            for batch, message in messages:
                self.broker.enqueue(message)
                sent.extend(batch)
            return sent
        except Exception as exc:
            log.warning(
                "broker unavailable; the sweeper will re-enqueue",
                events=len(ids) - len(sent),
                error=type(exc).__name__,
            )
            return sent

    @cached_property
    def box(self) -> SecretBox:
        return box_from_settings(self.settings)

    def gateway(self, api_key: str) -> StripeGateway:
        return StripeGateway(
            api_key,
            api_base=self.settings.stripe_api_base,
            timeout=self.settings.stripe_timeout,
            max_attempts=self.settings.stripe_max_attempts,
            backoff=Backoff(base=self.settings.stripe_retry_base),
        )

    @cached_property
    def sync_actor(self) -> dramatiq.Actor[[str, str], None]:
        """`run_sync(kind, trigger)` as a job (admin API and scheduler); no retries: the next
        run resumes where a failed one stopped."""
        from stripe_bridge.sync import run_sync

        def sync_stripe(kind: str, trigger: str) -> None:
            run_sync(self, kind, trigger=trigger)

        return dramatiq.Actor(
            sync_stripe,
            broker=self.broker,
            actor_name="sync_stripe",
            queue_name=SYNC_QUEUE,
            priority=10,
            options={"max_retries": 0, "time_limit": SYNC_TIME_LIMIT_MS},
        )

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.broker.close()
        self.engine.dispose()


def bootstrap(settings: Settings, *, broker: dramatiq.Broker | None = None) -> Bridge:
    engine = make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    broker = broker or build_broker(settings)
    handlers, veles_handlers = dict(REGISTRY), dict(VELES_REGISTRY)
    actors = declare_actors(
        broker,
        session_factory,
        handlers,
        veles_handlers,
        accept=lambda session, event: refusal_now(session, settings, event),
        max_attempts=settings.event_max_attempts,
    )
    bridge = Bridge(settings, engine, session_factory, broker, actors, handlers, veles_handlers)
    bridge.sync_actor  # noqa: B018  (declared now, so a worker consumes its queue)
    return bridge
