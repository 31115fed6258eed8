"""Wires everything from Settings: the one place that builds engines, brokers and actors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dramatiq
import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.db import make_engine, make_session_factory
from stripe_bridge.handlers import REGISTRY, Handler
from stripe_bridge.jobs import Actors, build_broker, declare_actors
from stripe_bridge.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class Bridge:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    broker: dramatiq.Broker
    actors: Actors
    handlers: dict[str, Handler] = field(default_factory=lambda: dict(REGISTRY))

    def enqueue_events(self, event_ids: Iterable[str]) -> list[str]:
        """Send one job per event id; answers the ids sent. Stops at the first broker error:
        the events stay `received` and the sweeper sends them once the broker is back."""
        sent: list[str] = []
        for event_id in event_ids:
            try:
                self.actors.apply_stripe_event.send(event_id)
            except Exception as exc:
                log.warning(
                    "broker unavailable; the sweeper will re-enqueue",
                    stripe_event_id=event_id,
                    error=type(exc).__name__,
                )
                break
            sent.append(event_id)
        return sent

    def close(self) -> None:
        self.broker.close()
        self.engine.dispose()


def bootstrap(settings: Settings, *, broker: dramatiq.Broker | None = None) -> Bridge:
    engine = make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    broker = broker or build_broker(settings)
    handlers = dict(REGISTRY)
    actors = declare_actors(broker, session_factory, handlers)
    return Bridge(settings, engine, session_factory, broker, actors, handlers)
