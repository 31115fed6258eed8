"""The Dramatiq broker and the actors, built by the entry point and handed their dependencies.

Actors are declared on an explicit broker (never dramatiq's global one), so tests and the
embedded `serve` each get their own, and no module does I/O at import time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.batches import apply_events
from stripe_bridge.errors import PermanentError
from stripe_bridge.handlers import CLAIMS, Event, Handler
from stripe_bridge.inbox import MAX_ATTEMPTS, apply_event
from stripe_bridge.models import VelesEvent
from stripe_bridge.settings import Settings
from stripe_bridge.veles import decode_veles_event

log = structlog.get_logger(__name__)

EVENTS_QUEUE = "stripe-events"
VELES_QUEUE = "veles-events"
SYNC_QUEUE = "sync"
SYNC_TIME_LIMIT_MS = 2 * 60 * 60 * 1000
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 5 * 60_000


class PipelinedRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, plus `enqueue_many`: a batch of messages in one Redis round trip
    (the webhook's group commit enqueues a whole batch at once). Each message goes through the
    same dispatch script and middleware hooks as `enqueue`."""

    def enqueue_many(self, messages: list[dramatiq.Message[Any]]) -> None:
        if not messages:
            return
        dispatch = self.scripts["dispatch"]
        prepared = []
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid4())})
            self.emit_before("enqueue", message, None)
            prepared.append(message)
        pipe = self.client.pipeline(transaction=False)
        for message in prepared:
            args = [
                "enqueue",
                current_millis(),
                message.queue_name,
                self.broker_id,
                self.heartbeat_timeout,
                self.dead_message_ttl,
                self._should_do_maintenance("enqueue"),
                self._max_unpack_size(),  # type: ignore[no-untyped-call]
                message.options["redis_message_id"],
                message.encode(),
            ]
            dispatch(args=args, keys=[self.namespace], client=pipe)
        pipe.execute()
        for message in prepared:
            self.emit_after("enqueue", message, None)


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
        broker = PipelinedRedisBroker(client=client, namespace=settings.redis_namespace)  # type: ignore[no-untyped-call]
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    return broker


def run_queued_jobs(broker: StubBroker) -> tuple[int, int]:
    """Run, in this thread, every job waiting in an in-process broker (a one-shot command on
    the embedded default has no worker to hand them to). Answers (events applied, events whose
    job failed): a failed job's events stay stored with the attempt recorded, for the running
    service's sweeper. A job never retries here, so the command never waits on a backoff."""
    applied = failed = 0
    for queue in list(broker.queues.values()):
        while not queue.empty():
            message = dramatiq.Message.decode(queue.get_nowait())
            [argument, *_] = message.args or [[]]
            count = len(argument) if isinstance(argument, list) else 1
            try:
                broker.get_actor(message.actor_name).fn(*message.args, **message.kwargs)
            except Exception as exc:
                log.warning("queued job failed", actor=message.actor_name, error=repr(exc))
                failed += count
            else:
                applied += count
    return applied, failed


@contextmanager
def _job_context(**ids: str) -> Iterator[None]:
    """Every log line of one job carries its ids, and nothing of the previous job's."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**ids)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()


@dataclass(frozen=True)
class Actors:
    apply_stripe_events: dramatiq.Actor[[list[str]], None]
    apply_stripe_event: dramatiq.Actor[[str], None]
    apply_veles_event: dramatiq.Actor[[str], None]


# A job's own retries only carry its events' attempts, which are counted on each event (a job
# sent again by the sweeper or a replay starts its retries at zero): `declare_actors` gives
# a job as many retries as an event has attempts.
RETRY_OPTIONS = {
    "min_backoff": MIN_BACKOFF_MS,
    "max_backoff": MAX_BACKOFF_MS,
    "throws": (PermanentError,),
}


def declare_actors(
    broker: dramatiq.Broker,
    session_factory: sessionmaker[Session],
    handlers: Mapping[str, Handler],
    veles_handlers: Mapping[str, Handler],
    accept: Callable[[Session, Event], str | None] = lambda _session, _event: None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Actors:
    def apply_stripe_events(event_ids: list[str]) -> None:
        """What the web, the sweeper and replays send: a batch of stored events."""
        with _job_context():
            apply_events(
                session_factory,
                handlers,
                CLAIMS,
                event_ids,
                max_attempts=max_attempts,
                accept=accept,
            )

    def apply_stripe_event(event_id: str) -> None:
        """One event a job (what versions before 0.6.0 sent; kept for messages still queued)."""
        with _job_context(stripe_event_id=event_id):
            apply_event(
                session_factory,
                handlers,
                event_id,
                max_attempts=max_attempts,
                accept=accept,
            )

    def apply_veles_event(event_id: str) -> None:
        with _job_context(veles_event_id=event_id):
            apply_event(
                session_factory,
                veles_handlers,
                event_id,
                max_attempts=max_attempts,
                inbox=VelesEvent,
                decode=decode_veles_event,
            )

    def declare(fn: Callable[[Any], None], queue: str) -> dramatiq.Actor[[Any], None]:
        return dramatiq.Actor(
            fn,
            broker=broker,
            actor_name=fn.__name__,
            queue_name=queue,
            priority=0,
            options={**RETRY_OPTIONS, "max_retries": max_attempts},
        )

    return Actors(
        apply_stripe_events=declare(apply_stripe_events, EVENTS_QUEUE),
        apply_stripe_event=declare(apply_stripe_event, EVENTS_QUEUE),
        apply_veles_event=declare(apply_veles_event, VELES_QUEUE),
    )
