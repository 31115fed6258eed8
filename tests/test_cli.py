"""`stripe-bridge` at the process-argument level: `main([...])` with a controlled environment."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from stripe_bridge.bootstrap import Bridge
from stripe_bridge.cli import main
from tests.conftest import REDIS_URL, SECRET, event, load_fixture, post_event, run_jobs

# Every variable the CLI reads; each test starts with all of them unset.
SETTINGS_VARS = (
    "BRIDGE_DATABASE_URL",
    "BRIDGE_REDIS_URL",
    "BRIDGE_REDIS_NAMESPACE",
    "BRIDGE_ADMIN_TOKEN",
    "BRIDGE_SECRET_KEY",
    "BRIDGE_VELES_SECRET",
    "BRIDGE_VAR_DIR",
    "BRIDGE_LOG_FORMAT",
    "BRIDGE_WEBHOOK_TOLERANCE",
    "BRIDGE_MAX_BODY_BYTES",
    "BRIDGE_SWEEP_INTERVAL",
    "BRIDGE_SWEEP_GRACE",
    "BRIDGE_WORKER_THREADS",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "STRIPE_MODE",
)

STATUS_KEYS = {
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

CONTRACT_COMMANDS = (
    "serve",
    "web",
    "worker",
    "relay",
    "scheduler",
    "migrate",
    "connect",
    "update-key",
    "disconnect",
    "status",
    "sync",
    "customers",
    "products",
    "dead-letters",
    "replay",
    "recover",
)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A tmp cwd and none of the bridge's variables set. Each is set then deleted through
    monkeypatch, so whatever `load_dotenv` writes into os.environ is undone afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS_VARS:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def shared_environment(
    environment: pytest.MonkeyPatch, database_url: str, redis_namespace: str
) -> pytest.MonkeyPatch:
    """The environment of the `bridge` fixture: this run's PostgreSQL and Redis namespace."""
    environment.setenv("BRIDGE_DATABASE_URL", database_url)
    environment.setenv("BRIDGE_REDIS_URL", REDIS_URL)
    environment.setenv("BRIDGE_REDIS_NAMESPACE", redis_namespace)
    environment.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    return environment


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def store_some_events(client: TestClient, bridge: Bridge) -> None:
    """Two applied, one ignored (unhandled type), then one stored and not yet applied."""
    for payload in (
        load_fixture("current", "customer.created"),
        load_fixture("current", "product.created"),
        event("charge.refunded", {"id": "ch_1", "object": "charge"}),
    ):
        assert post_event(client, payload).status_code == 200
    run_jobs(bridge)
    assert post_event(client, load_fixture("current", "customer.updated")).status_code == 200


# --- status --------------------------------------------------------------------------------


def test_status_json_prints_the_connection_object_and_inbox_counts(
    shared_environment: pytest.MonkeyPatch,
    client: TestClient,
    bridge: Bridge,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_some_events(client, bridge)
    capsys.readouterr()

    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err
    status: dict[str, Any] = orjson.loads(out)
    missing = sorted(STATUS_KEYS - set(status))
    assert missing == []
    assert status["status"] == "not_connected"
    assert status["mode"] == "test"
    assert (status["account_id"], status["account_name"], status["connected_at"]) == (
        None,
        None,
        None,
    )
    assert status["api_key_last4"] is None
    assert status["inbox"]["by_status"] == {"processed": 2, "ignored": 1, "received": 1}
    age = status["inbox"]["oldest_unprocessed_age_seconds"]
    assert isinstance(age, int | float)
    assert 0 <= age < 120


def test_status_json_counts_unmatched_mirrored_records(
    shared_environment: pytest.MonkeyPatch,
    client: TestClient,
    bridge: Bridge,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_some_events(client, bridge)
    capsys.readouterr()

    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err
    status = orjson.loads(out)
    assert (status["unmatched_customers"], status["unmatched_products"]) == (1, 1)


def test_status_json_of_an_empty_inbox(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err
    inbox = orjson.loads(out)["inbox"]
    assert inbox["by_status"] == {}
    assert inbox["oldest_unprocessed_age_seconds"] is None


def test_status_never_shows_an_api_key_that_is_not_connected_yet(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sk_live_51SecretPartThatMustNotLeakWxYz"
    shared_environment.setenv("STRIPE_API_KEY", key)

    code, out, err = run(capsys, "status", "--json")
    plain_code, plain_out, plain_err = run(capsys, "status")

    assert (code, plain_code) == (0, 0)
    status = orjson.loads(out)
    assert status["status"] == "not_connected"  # the key is only stored once Stripe accepts it
    assert status["api_key_last4"] is None
    assert status["mode"] == "live"  # until then the key's prefix decides the mode
    for text in (out, err, plain_out, plain_err):
        assert "SecretPart" not in text


def test_plain_status_prints_a_human_summary(
    shared_environment: pytest.MonkeyPatch,
    client: TestClient,
    bridge: Bridge,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_some_events(client, bridge)
    capsys.readouterr()

    code, out, err = run(capsys, "status")

    assert code == 0, err
    assert not out.lstrip().startswith("{")
    assert "not_connected" in out
    assert "test mode" in out
    for count in ("processed 2", "ignored 1", "received 1"):
        assert count in out
    assert "oldest unprocessed event" in out


def test_plain_status_of_an_empty_inbox_says_so(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status")

    assert code == 0, err
    assert "inbox: empty" in out
    assert "oldest unprocessed event" not in out


def test_dotenv_file_supplies_settings_and_the_environment_wins(
    shared_environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/no_such_database"
    (tmp_path / ".env").write_text(f"STRIPE_MODE=live\nBRIDGE_DATABASE_URL={unreachable}\n")

    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err  # the environment's database, not the file's unreachable one
    assert orjson.loads(out)["mode"] == "live"  # from .env: not set in the environment


# --- migrate -------------------------------------------------------------------------------


def test_migrate_creates_the_embedded_sqlite_database_under_var(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "migrate")

    assert code == 0, err
    assert out.strip()
    database = tmp_path / "var" / "stripe-bridge.db"
    assert database.is_file()
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "stripe_events", "customers", "products", "prices"} <= tables


def test_migrate_is_idempotent(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _, first_err = run(capsys, "migrate")
    second, _, second_err = run(capsys, "migrate")

    assert (first, second) == (0, 0), first_err + second_err


def test_migrate_against_postgres_at_head_exits_zero(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "migrate")

    assert code == 0, err


# --- failures: one line, non-zero ----------------------------------------------------------


@pytest.mark.parametrize("role", ["worker", "scheduler"])
def test_production_role_without_redis_exits_with_one_line_reason(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], role: str
) -> None:
    code, out, err = run(capsys, role)

    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "BRIDGE_REDIS_URL" in lines[0]


def test_unknown_stripe_mode_exits_with_one_line_reason(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("STRIPE_MODE", "banana")

    code, out, err = run(capsys, "status")

    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "STRIPE_MODE" in lines[0]
    assert "banana" in lines[0]


def test_malformed_api_key_exits_with_one_line_reason_that_hides_the_key(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("STRIPE_API_KEY", "pk_test_PublishableNotSecret")

    code, out, err = run(capsys, "status")

    assert code != 0
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert "PublishableNotSecret" not in err


# --- help ----------------------------------------------------------------------------------


def test_help_lists_every_command_of_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stripe-bridge")
    listed = set(re.findall(r"^ {4}([a-z][a-z-]*)", out, flags=re.MULTILINE))
    assert {"serve", "migrate", "status"} <= listed  # the listing was parsed at all
    missing = [command for command in CONTRACT_COMMANDS if command not in listed]
    assert missing == [], f"--help does not list {missing}"
