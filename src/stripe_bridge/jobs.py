"""The Dramatiq broker and the actors, built by the entry point and handed their dependencies.

Actors are declared on an explicit broker (never dramatiq's global one), so tests and the
embedded `serve` each get their own, and no module does I/O at import time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.errors import PermanentError
from stripe_bridge.handlers import Event, Handler
from stripe_bridge.inbox import apply_event
from stripe_bridge.settings import Settings

log = structlog.get_logger(__name__)

EVENTS_QUEUE = "stripe-events"
MAX_RETRIES = 8
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 5 * 60_000


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Redis in production; an in-process stub broker for the embedded `serve`."""
    broker: dramatiq.Broker
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=3,
            health_check_interval=30,
        )
        broker = RedisBroker(client=client, namespace=settings.redis_namespace)  # type: ignore[no-untyped-call]
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    return broker


def _is_final_attempt() -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= MAX_RETRIES


@dataclass(frozen=True)
class Actors:
    apply_stripe_event: dramatiq.Actor[[str], None]


def declare_actors(
    broker: dramatiq.Broker,
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    accept: Callable[[Event], str | None] = lambda _event: None,
) -> Actors:
    def apply_stripe_event(event_id: str) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(stripe_event_id=event_id)
        try:
            apply_event(
                session_factory,
                handlers,
                event_id,
                final_attempt=_is_final_attempt(),
                accept=accept,
            )
        finally:
            structlog.contextvars.clear_contextvars()

    return Actors(
        apply_stripe_event=dramatiq.Actor(
            apply_stripe_event,
            broker=broker,
            actor_name="apply_stripe_event",
            queue_name=EVENTS_QUEUE,
            priority=0,
            options={
                "max_retries": MAX_RETRIES,
                "min_backoff": MIN_BACKOFF_MS,
                "max_backoff": MAX_BACKOFF_MS,
                "throws": (PermanentError,),
            },
        )
    )
