"""The Dramatiq broker and the actors, built by the entry point and handed their dependencies.

Actors are declared on an explicit broker (never dramatiq's global one), so tests and the
embedded `serve` each get their own, and no module does I/O at import time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dramatiq
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from sqlalchemy.orm import Session

from stripe_bridge.context import Context
from stripe_bridge.errors import PermanentError
from stripe_bridge.event import Event
from stripe_bridge.inbox.apply import Key, apply_event, refusal_now
from stripe_bridge.inbox.batch import apply_events, chunks
from stripe_bridge.inbox.door import decode_veles_event
from stripe_bridge.models import DEFAULT_WORKSPACE, Inbox, StripeEvent, VelesEvent
from stripe_bridge.settings import Settings
from stripe_bridge.sync import run_sync

log = structlog.get_logger(__name__)

EVENTS_QUEUE = "stripe-events"
# Replays and recoveries: thousands of jobs of one workspace must not hold back the live
# deliveries of the others. Their actor has a lower priority (a worker takes live jobs first)
# and a queue of its own (its backlog is not in front of theirs).
BULK_QUEUE = "stripe-events-bulk"
VELES_QUEUE = "veles-events"
SYNC_QUEUE = "sync"
SYNC_TIME_LIMIT_MS = 2 * 60 * 60 * 1000
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


def _keys(items: list[str | list[str]], workspace_id: str) -> list[Key]:
    """A batch job's events: each item an event id of `workspace_id`'s, or a `[workspace_id,
    event_id]` pair (the web's job sender mixes workspaces). The workspace defaults to
    `default`: a job a 0.8 web sent still runs."""
    return [
        (item[0], item[1]) if isinstance(item, list) else (workspace_id, item) for item in items
    ]


T = TypeVar("T")

APPLY_STRIPE_EVENTS = "apply_stripe_events"
APPLY_BULK_EVENTS = "apply_stripe_events_bulk"
APPLY_VELES_EVENT = "apply_veles_event"
SYNC_STRIPE = "sync_stripe"

# A job's own retries only carry its events' attempts, which are counted on each event (a job
# sent again by the sweeper or a replay starts its retries at zero): a job gets as many
# retries as an event has attempts.
RETRY_OPTIONS = {
    "min_backoff": MIN_BACKOFF_MS,
    "max_backoff": MAX_BACKOFF_MS,
    "throws": (PermanentError,),
}


def declare_actors(context: Context) -> None:
    """The three jobs, on the context's broker: a batch of stored Stripe events, one Veles
    event, a sync."""
    broker, max_attempts = context.broker, context.settings.event_max_attempts

    def accept(session: Session, workspace_id: str, event: Event) -> str | None:
        return refusal_now(session, context.settings, workspace_id, event)

    def apply_stripe_events(
        event_ids: list[str | list[str]], workspace_id: str = DEFAULT_WORKSPACE
    ) -> None:
        """What the web, the sweeper and replays send: a batch of stored events."""
        with _job_context():
            apply_events(
                context.session_factory,
                context.handlers,
                context.claims,
                _keys(event_ids, workspace_id),
                max_attempts=max_attempts,
                accept=accept,
            )

    def apply_veles_event(event_id: str, workspace_id: str = DEFAULT_WORKSPACE) -> None:
        with _job_context(workspace_id=workspace_id, veles_event_id=event_id):
            apply_event(
                context.session_factory,
                context.veles_handlers,
                workspace_id,
                event_id,
                max_attempts=max_attempts,
                inbox=VelesEvent,
                decode=decode_veles_event,
            )

    def sync_stripe(kind: str, trigger: str, workspace_id: str = DEFAULT_WORKSPACE) -> None:
        """No retries: the next run resumes where a failed one stopped."""
        with _job_context(workspace_id=workspace_id):
            run_sync(context, workspace_id, kind, trigger=trigger)

    for fn, name, queue, priority in (
        (apply_stripe_events, APPLY_STRIPE_EVENTS, EVENTS_QUEUE, 0),
        (apply_stripe_events, APPLY_BULK_EVENTS, BULK_QUEUE, 5),
        (apply_veles_event, APPLY_VELES_EVENT, VELES_QUEUE, 0),
    ):
        dramatiq.Actor(
            fn,
            broker=broker,
            actor_name=name,
            queue_name=queue,
            priority=priority,
            options={**RETRY_OPTIONS, "max_retries": max_attempts},
        )
    dramatiq.Actor(
        sync_stripe,
        broker=broker,
        actor_name=SYNC_STRIPE,
        queue_name=SYNC_QUEUE,
        priority=10,
        options={"max_retries": 0, "time_limit": SYNC_TIME_LIMIT_MS},
    )


class Jobs:
    """The job queue on a broker whose actors `declare_actors` declared."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send_events(
        self,
        workspace_id: str,
        event_ids: Iterable[str],
        inbox: Inbox = StripeEvent,
        *,
        bulk: bool = False,
    ) -> list[str]:
        """Stripe events in batch jobs of at most `BATCH_SIZE` ids, Veles events one a job,
        each through dramatiq's public `enqueue` (a pipelined enqueue measured no faster for the
        web's usual one job a flush: benchmarks/README.md). Answers the ids sent. On a broker
        error the events stay `received` and the sweeper
        sends them once the broker is back."""
        ids = list(event_ids)
        if inbox is VelesEvent:
            actor = self.broker.get_actor(APPLY_VELES_EVENT)
            messages = [([event_id], actor.message(event_id, workspace_id)) for event_id in ids]
        else:
            actor = self.broker.get_actor(APPLY_BULK_EVENTS if bulk else APPLY_STRIPE_EVENTS)
            messages = [(batch, actor.message(batch, workspace_id)) for batch in chunks(ids)]
        return self._enqueue(messages, workspace_id=workspace_id)

    def send_keys(self, keys: Sequence[Key]) -> list[Key]:
        """Stripe events of any workspaces (the web's job sender), live, in jobs of at most
        `BATCH_SIZE` keys. Answers the keys sent; on a broker error the rest stay `received`
        for the sweeper."""
        actor = self.broker.get_actor(APPLY_STRIPE_EVENTS)
        messages = [
            (batch, actor.message([[ws, event_id] for ws, event_id in batch]))
            for batch in chunks(keys)
        ]
        return self._enqueue(messages)

    def _enqueue(
        self, messages: Sequence[tuple[list[T], dramatiq.Message[Any]]], **ids: str
    ) -> list[T]:
        """Enqueue each message in turn; answers the items of those enqueued. On a broker error
        the rest stay `received`, for the sweeper to send once the broker is back."""
        sent: list[T] = []
        try:
            for items, message in messages:
                self.broker.enqueue(message)
                sent.extend(items)
        except Exception as exc:
            log.warning(
                "broker unavailable; the sweeper will re-enqueue",
                **ids,
                events=sum(len(items) for items, _message in messages) - len(sent),
                error=type(exc).__name__,
            )
        return sent

    def send_sync(self, workspace_id: str, kind: str, trigger: str) -> None:
        self.broker.get_actor(SYNC_STRIPE).send(kind, trigger, workspace_id)
