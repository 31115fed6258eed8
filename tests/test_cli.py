"""`stripe-bridge` at the process-argument level: `main([...])` with a controlled environment."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from stripe_bridge.cli.main import main
from stripe_bridge.context import Context
from stripe_bridge.settings import Settings
from tests.support import (
    CONNECTION_FIELDS,
    REDIS_URL,
    SECRET,
    deliver,
    event,
    free_port,
    load_fixture,
    post_event,
)

# Every variable the CLI reads; each test starts with all of them unset.
SETTINGS_VARS = tuple(Settings.variables())

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


def failure_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs a command that must fail with nothing on stdout and one line on stderr: the line."""
    code, out, err = run(capsys, *argv)
    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def store_some_events(client: TestClient, bridge: Context) -> None:
    """Two applied, one ignored (unhandled type), then one stored and not yet applied."""
    deliver(
        client,
        bridge,
        load_fixture("current", "customer.created"),
        load_fixture("current", "product.created"),
        event("charge.refunded", {"id": "ch_1", "object": "charge"}),
    )
    assert post_event(client, load_fixture("current", "customer.updated")).status_code == 200


# --- status --------------------------------------------------------------------------------


def test_status_json_prints_the_connection_object_and_inbox_counts(
    shared_environment: pytest.MonkeyPatch,
    client: TestClient,
    bridge: Context,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_some_events(client, bridge)
    capsys.readouterr()

    code, out, err = run(capsys, "status", "--json")

    assert code == 0, err
    status: dict[str, Any] = orjson.loads(out)
    missing = sorted(CONNECTION_FIELDS - set(status))
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
    bridge: Context,
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
    bridge: Context,
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
    line = failure_line(capsys, role)

    assert "BRIDGE_REDIS_URL" in line


def test_unknown_stripe_mode_exits_with_one_line_reason(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("STRIPE_MODE", "banana")

    line = failure_line(capsys, "status")

    assert "STRIPE_MODE" in line
    assert "banana" in line


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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BRIDGE_LOG_FORMAT", "xml"),
        ("BRIDGE_LOG_LEVEL", "loud"),
        ("BRIDGE_SWEEP_INTERVAL", "soon"),
        ("BRIDGE_SWEEP_GRACE", "-1"),
        ("BRIDGE_WORKER_THREADS", "0"),
        ("BRIDGE_RELAY_LEASE", "-5"),
        ("BRIDGE_STRIPE_TIMEOUT", "zero"),
        ("BRIDGE_EVENT_MAX_ATTEMPTS", "0"),
        ("BRIDGE_ENQUEUE_LINGER_MS", "-1"),
        ("BRIDGE_INVOICE_COLLECTION_METHOD", "cash"),
        ("BRIDGE_DATABASE_URL", "not a database"),
        ("BRIDGE_REDIS_URL", "127.0.0.1:6379"),
        ("STRIPE_API_BASE", "api.stripe.example"),
    ],
)
def test_a_bad_setting_is_refused_with_one_line_naming_the_variable(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    environment.setenv(variable, value)

    line = failure_line(capsys, "status")

    assert line.startswith(f"stripe-bridge: {variable}: "), line
    assert value in line


def test_a_bad_secret_is_refused_without_showing_it(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("STRIPE_API_KEY", "sk_prod_TopSecretValue")

    code, _out, err = run(capsys, "status")

    assert code != 0
    [line] = err.splitlines()
    assert "STRIPE_API_KEY" in line
    assert "TopSecretValue" not in line


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    missing = sorted(set(Settings.variables()) - listed)
    assert missing == [], f"the README's Settings table lacks {missing}"


def test_version_is_one_number_shown_by_the_cli_and_healthz(
    capsys: pytest.CaptureFixture[str], client: TestClient
) -> None:
    from importlib.metadata import version

    import stripe_bridge

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"stripe-bridge {stripe_bridge.__version__}"
    assert version("stripe-bridge") == stripe_bridge.__version__
    assert client.get("/healthz").json() == {"status": "ok", "version": stripe_bridge.__version__}


# --- before the database is there ----------------------------------------------------------

ONE_SHOT_COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["customers", "list"],
    ["products", "list"],
    ["dead-letters", "list"],
    ["replay", "--all"],
    ["sync", "customers"],
    ["recover", "--since", "2026-11-30"],
    ["disconnect"],
]


@pytest.mark.parametrize("argv", ONE_SHOT_COMMANDS, ids=" ".join)
def test_a_command_on_a_fresh_clone_says_to_migrate_in_one_line(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    line = failure_line(capsys, *argv)

    assert "/var/stripe-bridge.db is not migrated: run `stripe-bridge migrate`" in line, line


@pytest.mark.parametrize("argv", [["migrate"], ["web"], *ONE_SHOT_COMMANDS], ids=" ".join)
def test_an_unreachable_database_is_named_in_one_line(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    port = free_port()
    environment.setenv("BRIDGE_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    environment.setenv("BRIDGE_STARTUP_WAIT", "0")  # roles would wait for it that long

    line = failure_line(capsys, *argv)

    assert f"cannot reach the database at 127.0.0.1:{port}/x" in line, line


@pytest.mark.parametrize(
    "argv", [["worker"], ["relay"], ["scheduler"], ["web"], ["replay", "--all"]], ids=" ".join
)
def test_an_unreachable_redis_is_named_in_one_line(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    port = free_port()
    shared_environment.setenv("BRIDGE_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    shared_environment.setenv("BRIDGE_STARTUP_WAIT", "0")  # roles would wait for it that long

    line = failure_line(capsys, *argv)

    assert f"cannot reach Redis at 127.0.0.1:{port}" in line, line


# --- jobs of a command on the embedded default ---------------------------------------------


def test_a_replay_on_the_embedded_default_applies_its_jobs_before_it_exits(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given the embedded default (SQLite, no Redis) with a dead-lettered event, when an
    operator replays it from a second shell, the event is applied before the command exits
    (there is no broker to hand the job to) and the command says so."""
    from stripe_bridge.bootstrap import bootstrap
    from stripe_bridge.inbox.door import parse_event
    from stripe_bridge.inbox.store import store
    from stripe_bridge.models import Customer, StripeEvent

    environment.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    assert run(capsys, "migrate")[0] == 0
    payload = event("customer.created", {"id": "cus_R", "object": "customer", "name": "Replayed"})
    with bootstrap(Settings.from_env()) as bridge, bridge.session_factory.begin() as session:
        store(session, StripeEvent, [parse_event(orjson.dumps(payload))])
        row = session.get(StripeEvent, ("default", payload["id"]))
        assert row is not None
        row.status, row.last_error = "failed", "RuntimeError: a bug, since fixed"

    code, out, err = run(capsys, "replay", "--all")

    assert code == 0, err
    assert "replayed 1 dead letter(s)" in out
    assert "applied 1 queued event(s) in this process" in err
    with bootstrap(Settings.from_env()) as bridge, bridge.session_factory() as session:
        stored = session.get(StripeEvent, ("default", payload["id"]))
        assert stored is not None and stored.status == "processed"
        customer = session.get(Customer, ("default", "cus_R"))
        assert customer is not None and customer.name == "Replayed"


def test_a_role_waits_for_redis_at_start_then_gives_the_reason(
    shared_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    shared_environment.setenv("BRIDGE_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    shared_environment.setenv("BRIDGE_STARTUP_WAIT", "2")
    started = time.monotonic()

    code, _out, err = run(capsys, "relay")

    assert code != 0
    assert time.monotonic() - started >= 2
    assert f"cannot reach Redis at 127.0.0.1:{port}" in err.splitlines()[-1]
