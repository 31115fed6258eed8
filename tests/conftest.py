"""Test fixtures: a PostgreSQL database and a Redis namespace of this run's own.

Every run creates `sb_test_<random>` on the local PostgreSQL (at `alembic upgrade head`) and
prefixes its Redis keys with `sb-test-<random>`, so parallel runs never collide; both are
removed at the end. Override the servers with BRIDGE_TEST_PG_ADMIN_URL / BRIDGE_TEST_REDIS_URL.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import orjson
import psycopg
import pytest
import redis
import structlog
from psycopg import sql
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.context import Context
from stripe_bridge.db import Base, make_engine
from stripe_bridge.inbox.signatures import sign
from stripe_bridge.jobs import EVENTS_QUEUE, VELES_QUEUE
from stripe_bridge.migrate import upgrade
from stripe_bridge.settings import Settings
from stripe_bridge.web.app import create_app
from tests.fake_stripe import FakeStripe

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "events"
PG_ADMIN_URL = os.environ.get(
    "BRIDGE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
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
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"sb_test_{RUN_ID}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def redis_namespace() -> Iterator[str]:
    namespace = f"sb-test-{RUN_ID}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


def make_settings(database_url: str, redis_namespace: str, **overrides: Any) -> Settings:
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


@pytest.fixture(scope="session")
def admin_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`stripe_bridge.logs.configure` replaces the root handlers; put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> None:
    """Every test that touches the database or Redis starts from empty tables and queues."""
    if "database_url" not in request.fixturenames:
        return
    engine: Engine = request.getfixturevalue("admin_engine")
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables}"))
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{request.getfixturevalue('redis_namespace')}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    fake.start()
    fake.add_account(TEST_KEY, ACCOUNT_ID, display_name="Context Test Co")
    fake.add_account(ROTATED_KEY, ACCOUNT_ID)
    fake.add_account(OTHER_ACCOUNT_KEY, "acct_1SomeoneElse00", display_name="Someone Else")
    fake.add_account(LIVE_KEY, "acct_1BridgeLiveAcct", display_name="Context Live")
    yield fake
    fake.stop()


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripe) -> FakeStripe:
    """The fake Stripe API, emptied for this test (accounts and keys stay)."""
    fake_stripe_server.reset()
    return fake_stripe_server


@pytest.fixture
def settings(database_url: str, redis_namespace: str, fake_stripe: FakeStripe) -> Settings:
    return make_settings(database_url, redis_namespace, STRIPE_API_BASE=fake_stripe.url)


@pytest.fixture
def bridge(settings: Settings) -> Iterator[Context]:
    instance = bootstrap(settings)
    yield instance
    instance.close()


@pytest.fixture
def client(bridge: Context) -> Iterator[TestClient]:
    with TestClient(create_app(bridge)) as test_client:
        yield test_client


def queued_jobs(bridge: Context) -> int:
    """Messages waiting in the events queue (Redis list of message ids)."""
    client = bridge.broker.client  # type: ignore[attr-defined]
    return int(client.llen(f"{bridge.settings.redis_namespace}:{EVENTS_QUEUE}"))


def queued_event_ids(bridge: Context) -> list[str]:
    """The Stripe event ids the waiting jobs carry (a batch job carries several), in order."""
    client = bridge.broker.client  # type: ignore[attr-defined]
    queue = f"{bridge.settings.redis_namespace}:{EVENTS_QUEUE}"
    ids: list[str] = []
    for message_id in client.lrange(queue, 0, -1):
        message = dramatiq.Message.decode(client.hget(f"{queue}.msgs", message_id))
        [argument] = message.args
        ids.extend(argument if isinstance(argument, list) else [argument])
    return ids


def run_jobs(bridge: Context, timeout_ms: int = 30_000) -> None:
    """Run a real Dramatiq worker until every queued job is done."""
    worker = dramatiq.Worker(bridge.broker, worker_threads=4, worker_timeout=50)
    worker.start()
    try:
        bridge.broker.join(EVENTS_QUEUE, timeout=timeout_ms)
        bridge.broker.join(VELES_QUEUE, timeout=timeout_ms)
        worker.join()
    finally:
        worker.stop()


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


def signed_headers(
    body: bytes, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": sign(body, secret, stamp), "Content-Type": "application/json"}


def post_event(client: TestClient, payload: dict[str, Any], **sign_args: Any) -> Any:
    body = orjson.dumps(payload)
    return client.post("/webhooks/stripe", content=body, headers=signed_headers(body, **sign_args))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def veles_event(
    event_type: str, data: dict[str, Any], *, created: int = 1_750_000_000
) -> dict[str, Any]:
    return {
        "id": f"vev_{uuid.uuid4().hex[:20]}",
        "type": event_type,
        "created": created,
        "data": data,
    }


def post_veles(client: TestClient, payload: dict[str, Any], secret: str = VELES_SECRET) -> Any:
    body = orjson.dumps(payload)
    headers = {"Veles-Signature": sign(body, secret, int(time.time()))}
    return client.post("/veles/events", content=body, headers=headers)


@pytest.fixture
def connected(bridge: Context) -> Context:
    """The bridge connected to the fake Stripe's test account."""
    from stripe_bridge import connection

    with bridge.session_factory.begin() as session:
        connection.connect(session, bridge.box, bridge.gateway, TEST_KEY)
    return bridge


@pytest.fixture
def cli(
    database_url: str,
    redis_namespace: str,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """`stripe-bridge …` in-process against this run's database, Redis and the fake Stripe;
    answers (exit code, stdout, stderr)."""
    from stripe_bridge.cli.main import main

    monkeypatch.chdir(tmp_path)
    for key, value in {
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_REDIS_URL": REDIS_URL,
        "BRIDGE_REDIS_NAMESPACE": redis_namespace,
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "STRIPE_API_BASE": fake_stripe.url,
        "BRIDGE_STRIPE_RETRY_BASE": "0.01",
        "BRIDGE_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(key, value)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
