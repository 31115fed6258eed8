"""Migration 0007 on a populated single-account database (the schema 0.6 left, revision 0006):
everything moves into the workspace `default`, and every old route answers the same data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import psycopg
import pytest
from alembic import command
from psycopg import sql
from sqlalchemy import MetaData, insert, select
from starlette.testclient import TestClient

from stripe_bridge.db import make_engine
from stripe_bridge.migrate import alembic_config
from stripe_bridge.models import Workspace
from stripe_bridge.web.app import create_app
from tests.support import ACCOUNT_ID, PG_ADMIN_URL, TEST_KEY, admin_headers, own_bridge

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_database() -> Iterator[str]:
    name = f"sb_migration_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{url}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def populate(url: str, sealed_key: bytes) -> None:
    """One of everything, as a 0.6 bridge wrote it (the tables as revision 0006 has them)."""
    engine = make_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    customer = {"id": "cus_1", "object": "customer", "name": "Acme", "email": "a@acme.example"}
    payload = {"id": "evt_1", "type": "customer.created", "data": {"object": customer}}
    rows = {
        "stripe_connection": [
            {"id": 1, "status": "connected", "account_id": ACCOUNT_ID, "mode": "test",
             "account_name": "Context Test Co", "api_key_encrypted": sealed_key,
             "api_key_last4": TEST_KEY[-4:], "connected_at": NOW}
        ],
        "stripe_events": [
            {"id": "evt_1", "type": "customer.created", "created": 1_763_640_000,
             "object_id": "cus_1", "payload": orjson.dumps(payload), "received_at": NOW,
             "status": "processed", "livemode": False},
            {"id": "evt_2", "type": "invoice.paid", "created": 1_763_640_001,
             "object_id": "in_gone", "payload": b"{}", "received_at": NOW, "status": "failed",
             "attempts": 8, "last_error": "PermanentError: old", "last_failed_at": NOW,
             "livemode": False},
        ],
        "customers": [
            {"id": "cus_1", "name": "Acme", "email": "a@acme.example", "match_status": "matched",
             "veles_customer_id": "v_1", "match_method": "email", "email_key": "a@acme.example"}
        ],
        "veles_customers": [{"id": "v_1", "name": "Acme", "email": "a@acme.example"}],
        "veles_products": [{"id": "vp_1", "name": "Seats"}],
        "veles_orders": [
            {"id": "ord_1", "customer_id": "v_1", "currency": "usd", "lines": [],
             "status": "committed", "stripe_invoice_id": "in_1", "invoice_status": "paid",
             "payment_status": "paid", "created_at": NOW}
        ],
        "outbox": [
            {"aggregate_type": "order", "aggregate_id": "ord_1", "kind": "order.invoice",
             "payload": {}, "dedupe_key": "veles-event:vev_1", "status": "sent",
             "next_attempt_at": NOW, "created_at": NOW, "sent_at": NOW}
        ],
        "sync_runs": [
            {"kind": "customers", "status": "completed", "pass_started_at": NOW,
             "started_at": NOW, "heartbeat_at": NOW, "finished_at": NOW, "seen": 1}
        ],
    }  # fmt: skip
    with engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(insert(tables.tables[table]), values)
    engine.dispose()


def test_a_populated_single_account_database_moves_into_default(
    old_database: str, redis_namespace: str
) -> None:
    migrate(old_database, "0006")
    with own_bridge(old_database, redis_namespace) as bridge:
        populate(old_database, bridge.box.seal(TEST_KEY))

    migrate(old_database, "head")

    with (
        own_bridge(old_database, redis_namespace) as bridge,
        TestClient(create_app(bridge)) as client,
    ):

        def get(path: str) -> dict[str, object]:
            response = client.get(f"/admin/api/{path}", headers=admin_headers())
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        connection = get("connection")
        assert (connection["status"], connection["account_id"], connection["workspace_id"]) == (
            "connected",
            ACCOUNT_ID,
            "default",
        )
        assert connection["api_key_last4"] == TEST_KEY[-4:]
        [customer] = get("customers")["data"]  # type: ignore[misc]
        assert (customer["id"], customer["match_status"], customer["veles_customer_id"]) == (
            "cus_1",
            "matched",
            "v_1",
        )
        order = get("orders/ord_1")
        assert (order["invoice_status"], order["payment_status"]) == ("paid", "paid")
        assert [row["status"] for row in order["outbox"]] == ["sent"]  # type: ignore[attr-defined]
        assert {e["id"]: e["status"] for e in get("events")["data"]} == {  # type: ignore[attr-defined]
            "evt_1": "processed",
            "evt_2": "failed",
        }
        [letter] = get("dead-letters")["data"]  # type: ignore[misc]
        assert letter["id"] == "event:evt_2"
        assert [run["status"] for run in get("sync")["data"]] == ["completed"]  # type: ignore[attr-defined]
        assert [w["id"] for w in get("workspaces")["data"]] == ["default"]  # type: ignore[attr-defined]
        with bridge.session_factory() as session:
            tables = MetaData()
            tables.reflect(session.get_bind())
            keys = tables.tables["customers"].primary_key.columns.keys()
            assert keys == ["workspace_id", "id"]
            workspaces = session.execute(select(tables.tables["outbox"].c.workspace_id)).scalars()
            assert list(workspaces) == ["default"]


def test_the_downgrade_refuses_while_another_workspace_exists(
    old_database: str, redis_namespace: str
) -> None:
    migrate(old_database, "head")
    with own_bridge(old_database, redis_namespace) as bridge, bridge.session_factory.begin() as s:
        s.add(Workspace(id="acme", name="Acme", created_at=NOW))

    with pytest.raises(RuntimeError, match="workspaces other than 'default' exist"):
        migrate(old_database, "0006", down=True)


def test_a_database_of_default_alone_goes_back_and_forth(old_database: str) -> None:
    migrate(old_database, "head")
    migrate(old_database, "0006", down=True)
    migrate(old_database, "head")
