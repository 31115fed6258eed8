"""The composition root: builds everything from Settings, once, for an entry point.

Only the entry points import it (the CLI, which starts every role, and the tests); what it
builds goes down as a `Context`, and each module below takes the parts it needs."""

from __future__ import annotations

from functools import partial

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from stripe_bridge import handlers, outbox
from stripe_bridge.backoff import Backoff
from stripe_bridge.context import Context
from stripe_bridge.db import make_engine, make_session_factory
from stripe_bridge.endpoints import EndpointPlan
from stripe_bridge.jobs import Jobs, build_broker, declare_actors
from stripe_bridge.ratelimit import (
    ARRIVAL_MARGIN,
    WINDOW,
    LocalRateBudget,
    RateBudget,
    RedisRateBudget,
)
from stripe_bridge.secrets_box import box_from_settings
from stripe_bridge.settings import Settings
from stripe_bridge.stripe_api import Gateways, StripeGateway


def rate_budget(settings: Settings, broker: dramatiq.Broker) -> RateBudget:
    """Each Stripe account's budget: in Redis (on the broker's connections), shared by every
    process of the deployment; in this process for the embedded default."""
    window = WINDOW + ARRIVAL_MARGIN
    if isinstance(broker, RedisBroker):
        return RedisRateBudget(broker.client, settings.redis_namespace, window=window)
    return LocalRateBudget(window=window)


def bootstrap(settings: Settings, *, broker: dramatiq.Broker | None = None) -> Context:
    engine = make_engine(settings.database_url)
    broker = broker or build_broker(settings)
    context = Context(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        broker=broker,
        jobs=Jobs(broker),
        box=box_from_settings(settings),
        gateway=Gateways(
            partial(
                StripeGateway,
                api_base=settings.stripe_api_base,
                timeout=settings.stripe_timeout,
                max_attempts=settings.stripe_max_attempts,
                backoff=Backoff(base=settings.stripe_retry_base),
                budget=rate_budget(settings, broker),
                rate_limit=settings.stripe_rate_limit,
            ),
            settings.stripe_platform_key,
        ),
        endpoint_plan=EndpointPlan.of(settings.public_url, handlers.STRIPE_HANDLERS),
        handlers=dict(handlers.STRIPE_HANDLERS),
        claims=dict(handlers.CLAIMS),
        veles_handlers={**handlers.VELES_HANDLERS, **outbox.VELES_HANDLERS},
    )
    declare_actors(context)
    return context
