"""What the tests share besides fixtures: this run's servers and secrets, settings and bridges
of a test's own, signed deliveries, the job queue, and a look at the database.

Fixtures live in `conftest.py`; everything here is a plain function or constant that a test
(or a fixture) calls. Nothing here opens a connection until it is called."""

from __future__ import annotations

import copy
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
import orjson
from sqlalchemy import Engine, delete, exists, func, select, text
from starlette.testclient import TestClient

from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.context import Context
from stripe_bridge.db import Base
from stripe_bridge.inbox.door import classify, parse_event, sign
from stripe_bridge.inbox.store import store
from stripe_bridge.jobs import BULK_QUEUE, EVENTS_QUEUE, VELES_QUEUE
from stripe_bridge.models import DEFAULT_WORKSPACE, StripeEvent, Workspace
from stripe_bridge.outbox.relay import Relay, RelayOptions, relay_options
from stripe_bridge.settings import Settings
from stripe_bridge.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "events"
EVENT_TYPES = sorted(path.stem for path in (FIXTURES / "current").glob("*.json"))
PG_ADMIN_URL = os.environ.get(
    "BRIDGE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]  # names this run's database and Redis namespace
SECRET = "whsec_test_primary_0123456789"
OTHER_SECRET = "whsec_test_rolling_9876543210"
ADMIN_TOKEN = "test-admin-token"
VELES_SECRET = "veles-shared-secret-for-tests"
SECRET_KEY = "test-encryption-key-for-stored-stripe-keys"
ACCOUNT_ID = "acct_1BridgeTestAcct"
TEST_KEY = "sk_test_51BridgePrimaryKeyAbcd"
ROTATED_KEY = "rk_test_51BridgeRotatedKeyEfgh"
OTHER_ACCOUNT_KEY = "sk_test_51SomeoneElseKeyIjkl"
LIVE_KEY = "sk_live_51BridgeLiveKeyMnop"

# The fields of the connection status object (`GET /admin/api/connection`, `status --json`).
CONNECTION_FIELDS = frozenset(
    {
        "status",
        "account_id",
        "account_name",
        "mode",
        "connected_at",
        "customers_last_synced_at",
        "products_last_synced_at",
        "api_key_last4",
        "unmatched_customers",
        "unmatched_products",
    }
)


# --- settings and bridges --------------------------------------------------------------------


def make_settings(database_url: str, redis_namespace: str, **overrides: Any) -> Settings:
    """The test settings with `overrides` (an override of None unsets the variable)."""
    env = {
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_REDIS_URL": REDIS_URL,
        "BRIDGE_REDIS_NAMESPACE": redis_namespace,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "BRIDGE_VELES_SECRET": VELES_SECRET,
        "STRIPE_MODE": "test",
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_STRIPE_RETRY_BASE": "0.01",
        "BRIDGE_ENQUEUE_LINGER_MS": "0",  # jobs are queued before the answer (tests look)
    }
    env.update({key: value for key, value in overrides.items() if value is not None})
    for key in [key for key, value in overrides.items() if value is None]:
        env.pop(key, None)
    return Settings.from_env(env)


@contextmanager
def own_bridge(database_url: str, redis_namespace: str, **overrides: Any) -> Iterator[Context]:
    """A bridge of the test's own, on `make_settings(…, **overrides)`, closed at the end."""
    bridge = bootstrap(make_settings(database_url, redis_namespace, **overrides))
    try:
        yield bridge
    finally:
        bridge.close()


@contextmanager
def own_client(database_url: str, redis_namespace: str, **overrides: Any) -> Iterator[TestClient]:
    """A client of the app on a bridge of the test's own (`own_bridge`), both closed at the end."""
    with (
        own_bridge(database_url, redis_namespace, **overrides) as bridge,
        TestClient(create_app(bridge)) as client,
    ):
        yield client


def free_port() -> int:
    """A local TCP port nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> bool:
    """Poll `condition` until it is true or `seconds` have passed; answers whether it was."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- what Stripe and Veles send --------------------------------------------------------------


def load_fixture(shape: str, event_type: str) -> dict[str, Any]:
    return copy.deepcopy(orjson.loads((FIXTURES / shape / f"{event_type}.json").read_bytes()))


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int = 1_750_000_000,
    event_id: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A minimal Stripe event around `obj`."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": livemode,
        "type": event_type,
        "data": data,
    }


def veles_event(
    event_type: str, data: dict[str, Any], *, created: int = 1_750_000_000
) -> dict[str, Any]:
    return {
        "id": f"vev_{uuid.uuid4().hex[:20]}",
        "type": event_type,
        "created": created,
        "data": data,
    }


def signed_headers(
    body: bytes, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": sign(body, secret, stamp), "Content-Type": "application/json"}


# --- over HTTP -------------------------------------------------------------------------------


def post_event(client: TestClient, payload: dict[str, Any], **sign_args: Any) -> Any:
    body = orjson.dumps(payload)
    return client.post("/webhooks/stripe", content=body, headers=signed_headers(body, **sign_args))


def post_veles(client: TestClient, payload: dict[str, Any], secret: str = VELES_SECRET) -> Any:
    body = orjson.dumps(payload)
    headers = {"Veles-Signature": sign(body, secret, int(time.time()))}
    return client.post("/veles/events", content=body, headers=headers)


def deliver(client: TestClient, bridge: Context, *payloads: dict[str, Any]) -> None:
    """Deliver signed Stripe events (each answered 200) and let a real worker apply them."""
    for payload in payloads:
        response = post_event(client, payload)
        assert response.status_code == 200, response.text
    run_jobs(bridge)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def admin_get(client: TestClient, path: str, **params: Any) -> Any:
    """`GET /admin/api/<path>` with the admin token; must answer 200; answers the JSON body.
    The query goes in `path` or in `params`, not both (params replace a query in the path)."""
    response = client.get(f"/admin/api/{path}", params=params or None, headers=admin_headers())
    assert response.status_code == 200, response.text
    return response.json()


# --- the job queue ---------------------------------------------------------------------------


def relay_for(
    bridge: Context,
    options: RelayOptions | None = None,
    after_step: Callable[[str], None] | None = None,
) -> Relay:
    """The relay the `relay` role runs, on this bridge (its settings' options by default)."""
    return Relay(
        bridge.session_factory,
        bridge.box,
        bridge.gateway,
        options or relay_options(bridge.settings),
        after_step,
    )


def queued_jobs(bridge: Context, queue_name: str = EVENTS_QUEUE) -> int:
    """Messages waiting in an events queue (Redis list of message ids)."""
    client = bridge.broker.client  # type: ignore[attr-defined]
    return int(client.llen(f"{bridge.settings.redis_namespace}:{queue_name}"))


def queued_event_ids(bridge: Context, queue_name: str = EVENTS_QUEUE) -> list[str]:
    """The Stripe event ids the waiting jobs carry (a batch job carries several), in order."""
    client = bridge.broker.client  # type: ignore[attr-defined]
    queue = f"{bridge.settings.redis_namespace}:{queue_name}"
    ids: list[str] = []
    for message_id in client.lrange(queue, 0, -1):
        message = dramatiq.Message.decode(client.hget(f"{queue}.msgs", message_id))
        argument = message.args[0]  # (ids, workspace_id), or ([[workspace_id, id], …],)
        items = argument if isinstance(argument, list) else [argument]
        ids.extend(item[1] if isinstance(item, list) else item for item in items)
    return ids


def run_jobs(bridge: Context, timeout_ms: int = 30_000) -> None:
    """Run a real Dramatiq worker until every queued job is done. The queues are looked at
    every 10 ms (dramatiq's join waits 100 ms between looks), and the worker's threads notice
    the stop within 10 ms: a test's run of its jobs took 190 ms for one job, now about 35."""
    worker = dramatiq.Worker(bridge.broker, worker_threads=4, worker_timeout=10)
    worker.start()
    try:
        bridge.broker.join(EVENTS_QUEUE, timeout=timeout_ms, interval=10)
        bridge.broker.join(BULK_QUEUE, timeout=timeout_ms, interval=10)
        bridge.broker.join(VELES_QUEUE, timeout=timeout_ms, interval=10)
        worker.join()
    finally:
        worker.stop()


# --- the database ----------------------------------------------------------------------------


def store_events(bridge: Context, payloads: Sequence[dict[str, Any]]) -> list[str]:
    """Stored exactly as the webhook stores them (parsed, classified, one INSERT), but no job is
    sent: the test decides which ids go into which batch. Answers the ids, duplicates once."""
    unique = {payload["id"]: payload for payload in payloads}
    batch = []
    for payload in unique.values():
        incoming = parse_event(orjson.dumps(payload))
        classify(incoming, handled=bridge.handlers)
        batch.append(incoming)
    with bridge.session_factory.begin() as session:
        store(session, StripeEvent, batch)
    return list(unique)


def row_of(bridge: Context, model: type[Any], object_id: str) -> Any:
    """The committed row of `model` with this id, or None."""
    with bridge.session_factory() as session:
        return session.get(model, ("default", object_id))


def mirror_row(bridge: Context, model: type[Any], object_id: str) -> Any:
    """The committed row of `model` with this id, which must be there."""
    row = row_of(bridge, model, object_id)
    assert row is not None, f"no {model.__name__} {object_id}"
    return row


def all_rows(bridge: Context, model: type[Any]) -> list[Any]:
    """Every committed row of `model`, by primary key."""
    with bridge.session_factory() as session:
        return list(session.scalars(select(model).order_by(*model.__mapper__.primary_key)))


def count_rows(bridge: Context, model: type[Any], *where: Any) -> int:
    with bridge.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def inbox(bridge: Context) -> dict[str, StripeEvent]:
    """The Stripe inbox: each stored event's row, by event id."""
    return {row.id: row for row in all_rows(bridge, StripeEvent)}


def statuses(bridge: Context) -> dict[str, str]:
    """Each stored Stripe event's status, by event id."""
    return {event_id: row.status for event_id, row in inbox(bridge).items()}


def empty_tables(engine: Engine) -> None:
    """TRUNCATE every table that holds a row. TRUNCATE costs about as much for an empty table
    as for a full one, and a test writes to a few tables only. The `default` workspace, which
    the migration creates, stays."""
    workspaces = Workspace.__table__
    tables = [table for table in Base.metadata.sorted_tables if table is not workspaces]
    with engine.begin() as connection:
        filled = connection.execute(
            select(*(exists().select_from(table).label(table.name) for table in tables))
        ).one()
        names = [table.name for table, has_rows in zip(tables, filled, strict=True) if has_rows]
        if names:
            connection.execute(text(f"TRUNCATE {', '.join(names)} CASCADE"))
        connection.execute(delete(workspaces).where(workspaces.c.id != DEFAULT_WORKSPACE))
