"""Before a command or a role starts work: is the database there and migrated, is Redis there?

Each check raises a `BridgeError` whose message is the one line an operator reads: the cause,
where, and the remedy. Nothing here prints or exits; the CLI does."""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from stripe_bridge.errors import NotMigrated, Unreachable
from stripe_bridge.migrate import current_revision, head_revision, known_revisions


def where(url: str | URL) -> str:
    """A database URL as an operator names it, without the password: `host:port/db` or the
    SQLite file."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return f"sqlite:///{parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


def first_line(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def database_unreachable(url: str | URL, exc: BaseException) -> Unreachable:
    return Unreachable(f"cannot reach the database at {where(url)}: {first_line(exc)}")


def check_database(engine: Engine) -> None:
    """The database answers and is at this version's latest migration."""
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise database_unreachable(engine.url, exc) from None
    head = head_revision()
    if current == head:
        return
    at = where(engine.url)
    if current is None:
        raise NotMigrated(f"the database at {at} is not migrated: run `stripe-bridge migrate`")
    if current in known_revisions():
        raise NotMigrated(
            f"the database at {at} is at migration {current}, not {head}: "
            "run `stripe-bridge migrate`"
        )
    raise NotMigrated(
        f"the database at {at} is at migration {current}, which this version ({head}) does "
        "not know: run the version that migrated it"
    )


def redis_unreachable(client: redis.Redis, exc: BaseException) -> Unreachable:
    kwargs = client.connection_pool.connection_kwargs
    place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return Unreachable(f"cannot reach Redis at {place}: {first_line(exc)}")


def check_broker(broker: dramatiq.Broker) -> None:
    """Redis answers (the embedded default's in-process broker always does)."""
    if not isinstance(broker, RedisBroker):
        return
    try:
        broker.client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise redis_unreachable(broker.client, exc) from None
