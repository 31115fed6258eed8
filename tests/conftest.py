"""Test fixtures: a PostgreSQL database and a Redis namespace of this run's own.

Every run creates `sb_test_<random>` on the local PostgreSQL (at `alembic upgrade head`) and
prefixes its Redis keys with `sb-test-<random>`, so parallel runs never collide; both are
removed at the end. Override the servers with BRIDGE_TEST_PG_ADMIN_URL / BRIDGE_TEST_REDIS_URL.

A test that can commit (through `bridge`, `client`, `cli` or a bridge of its own) empties the
tables it filled and its Redis keys when it ends; a test on `db_session` runs in a transaction
that is rolled back instead. The plain helpers are in tests/support.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import structlog
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.context import Context
from stripe_bridge.db import make_engine
from stripe_bridge.migrate import upgrade
from stripe_bridge.settings import Settings
from stripe_bridge.web.app import create_app
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    LIVE_KEY,
    OTHER_ACCOUNT_KEY,
    PG_ADMIN_URL,
    REDIS_URL,
    ROTATED_KEY,
    RUN_ID,
    SECRET_KEY,
    TEST_KEY,
    empty_tables,
    make_settings,
)


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
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that can commit to the database or write to Redis (its bridge, CLI or own
    settings all need the Redis namespace) leaves empty tables and queues behind it, so the
    next test starts from them. A test on `db_session` alone commits nothing: it skips this."""
    uses = set(request.fixturenames)
    if "database_url" not in uses or ("db_session" in uses and "redis_namespace" not in uses):
        yield
        return
    engine: Engine = request.getfixturevalue("admin_engine")
    namespace: str = request.getfixturevalue("redis_namespace")
    yield
    empty_tables(engine)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def db_session(admin_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back at the end, for tests of code that
    works on a session it is given (handlers, matching, the outbox writer). What that code
    commits, or nests with begin_nested(), goes to savepoints of the one transaction, so the
    test leaves nothing behind and pays no TRUNCATE."""
    empty_tables(admin_engine)  # only a probe: the committing tests clean up after themselves
    with admin_engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            transaction.rollback()


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


@pytest.fixture
def connected(bridge: Context) -> Context:
    """The bridge connected to the fake Stripe's test account."""
    from stripe_bridge import connection

    with bridge.session_factory.begin() as session:
        connection.connect(session, bridge.box, bridge.gateway, "default", TEST_KEY)
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
