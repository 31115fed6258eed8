"""`stripe-bridge`: every operator command; each exits non-zero with a one-line reason."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import redis
import structlog
from dotenv import load_dotenv
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from stripe_bridge import __version__, logs
from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.cli import connection as connection_commands
from stripe_bridge.cli import operators as operator_commands
from stripe_bridge.cli import review as review_commands
from stripe_bridge.cli import workspaces as workspace_commands
from stripe_bridge.cli.connection import connect_from_settings
from stripe_bridge.cli.opened import opened, workspace_of
from stripe_bridge.context import Context
from stripe_bridge.errors import BridgeError
from stripe_bridge.migrate import upgrade
from stripe_bridge.preflight import (
    check_broker,
    check_database,
    database_unreachable,
    first_line,
    where,
)
from stripe_bridge.settings import Settings

log = structlog.get_logger(__name__)


def _serve_http(bridge: Context, host: str, port: int) -> None:
    """Run uvicorn until SIGINT/SIGTERM, then return so the caller can stop its other roles.

    uvicorn re-raises the signal it caught once it has shut down; with our own handlers in
    place that re-raise is harmless instead of killing the process mid-cleanup."""
    import uvicorn

    from stripe_bridge.web.app import create_app

    app = create_app(bridge)
    # Long-lived objects built so far never need collecting; collecting young objects less
    # often keeps GC pauses out of webhook latency (measured in benchmarks/README.md).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_signal(_signum: int, _frame: object) -> None:
    return None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process: migrations, web, worker, sweeper (the embedded default)."""
    from stripe_bridge.roles.threads import periodic, relay, worker

    with bootstrap(settings) as bridge:
        upgrade(bridge.engine)
        connect_from_settings(bridge.session_factory, bridge.box, bridge.gateway, bridge.settings)
        log.info(
            "serving",
            database=bridge.engine.url.render_as_string(hide_password=True),
            broker=type(bridge.broker).__name__,
            address=f"http://{args.host}:{args.port}",
        )
        with worker(bridge), periodic(bridge, schedule_syncs=True), relay(bridge, threads=2):
            _serve_http(bridge, args.host, args.port)
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    with bootstrap(settings) as bridge, _preflight(bridge):
        _serve_http(bridge, args.host, args.port)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from stripe_bridge.roles.threads import periodic, wait_for_signal, worker

    _require_redis(settings, "worker")
    with (
        bootstrap(settings) as bridge,
        _preflight(bridge),
        worker(bridge, args.threads, _queues(bridge, args.queues)),
        periodic(bridge, schedule_syncs=False),
    ):
        log.info(
            "worker running",
            threads=args.threads or settings.worker_threads,
            queues=args.queues or "all",
        )
        wait_for_signal()
    return 0


def _queues(bridge: Context, names: str | None) -> set[str] | None:
    """`--queues a,b`: only these (e.g. syncs in processes of their own, so that many
    workspaces' syncs never take every thread live deliveries need)."""
    if not names:
        return None
    queues = {name.strip() for name in names.split(",") if name.strip()}
    unknown = queues - set(bridge.broker.get_declared_queues())
    if unknown:
        known = ", ".join(sorted(bridge.broker.get_declared_queues()))
        raise BridgeError(f"unknown queue(s) {', '.join(sorted(unknown))}: one of {known}")
    return queues


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from stripe_bridge.roles.threads import relay, wait_for_signal

    _require_redis(settings, "relay")
    with bootstrap(settings) as bridge, _preflight(bridge), relay(bridge, args.threads):
        log.info("relay running", threads=args.threads or settings.relay_threads)
        wait_for_signal()
    return 0


def cmd_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    from stripe_bridge.roles.threads import periodic, wait_for_signal

    _require_redis(settings, "scheduler")
    with bootstrap(settings) as bridge, _preflight(bridge):
        connect_from_settings(bridge.session_factory, bridge.box, bridge.gateway, bridge.settings)
        with periodic(bridge, schedule_syncs=True):
            log.info("scheduler running", sync_interval=settings.sync_interval)
            wait_for_signal()
    return 0


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    with bootstrap(settings) as bridge:
        upgrade(bridge.engine)
        connect_from_settings(bridge.session_factory, bridge.box, bridge.gateway, bridge.settings)
    print("database at the latest migration")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from stripe_bridge.operators.status import status_object

    with opened(settings) as bridge, bridge.session_factory() as session:
        status = status_object(session, settings, workspace_of(bridge, args.workspace))
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"connection: {status['status']} ({status['mode']} mode)")
    print(f"webhook secrets: {status['webhook_secrets']}")
    inbox = status["inbox"]
    counts = ", ".join(f"{key} {value}" for key, value in sorted(inbox["by_status"].items()))
    print(f"inbox: {counts or 'empty'}")
    if inbox["oldest_unprocessed_age_seconds"] is not None:
        print(f"oldest unprocessed event: {inbox['oldest_unprocessed_age_seconds']} s old")
    for failure in inbox["recent_failures"]:
        print(
            f"failed: {failure['id']} {failure['type']} after {failure['attempts']} attempt(s): "
            f"{failure['last_error']}"
        )
    return 0


@contextmanager
def _preflight(bridge: Context) -> Iterator[None]:
    """A production role starts only against a migrated database and a reachable Redis: it
    waits for them up to `BRIDGE_STARTUP_WAIT` seconds (a restart, a deploy migrating), then
    exits with the reason; once running, it rides out their outages."""
    deadline = time.monotonic() + bridge.settings.startup_wait
    while True:
        try:
            check_database(bridge.engine)
            check_broker(bridge.broker)
            break
        except BridgeError as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("waiting for the services this role needs", reason=str(exc))
            time.sleep(1)
    yield


def _require_redis(settings: Settings, role: str) -> None:
    if not settings.redis_url:
        raise BridgeError(
            f"the {role} role needs BRIDGE_REDIS_URL; "
            "use `stripe-bridge serve` for the embedded default"
        )


ROLES = frozenset({"serve", "web", "worker", "relay", "scheduler"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stripe-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stripe-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[Settings, argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    for name, handler, text in (
        ("serve", cmd_serve, "every role in one process (the embedded default); migrates"),
        ("web", cmd_web, "the HTTP role (webhooks, Veles events, admin)"),
    ):
        sub = add(name, handler, text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
    sub = add("worker", cmd_worker, "the job role: applies stored events, runs syncs")
    sub.add_argument("--threads", type=int, default=None)
    sub.add_argument("--queues", help="comma-separated queues to consume (default: all)")
    add("relay", cmd_relay, "the outbox role: pushes orders and contracts to Stripe").add_argument(
        "--threads", type=int, default=None
    )
    add("scheduler", cmd_scheduler, "the periodic role: sweeper and sync cadence")
    add("migrate", cmd_migrate, "apply database migrations")
    add("status", cmd_status, "connection and inbox health").add_argument(
        "--json", action="store_true"
    )
    connection_commands.register(commands)
    operator_commands.register(commands)
    review_commands.register(commands)
    workspace_commands.register(commands)
    _workspace_option(parser, commands)
    return parser


WORKSPACE_HELP = "the workspace to act on (default: BRIDGE_WORKSPACE, else 'default')"


def _workspace_option(parser: argparse.ArgumentParser, commands: Any) -> None:
    """`--workspace WS` before or after the command name (and after a group's action)."""
    parser.add_argument("--workspace", metavar="WS", help=WORKSPACE_HELP)
    pending = list(commands.choices.values())
    while pending:
        sub = pending.pop()
        sub.add_argument(
            "--workspace", metavar="WS", default=argparse.SUPPRESS, help=WORKSPACE_HELP
        )
        for action in sub._actions:  # a group's own actions (`customers link`, …)
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_dotenv(".env", override=False)
    try:
        settings = Settings.from_env()
        args.workspace = args.workspace or settings.workspace
        # Long-running roles log; one-shot commands print their result and, on failure, one
        # line (set BRIDGE_LOG_LEVEL=info to see their logs too).
        level = settings.log_level or ("INFO" if args.command in ROLES else "CRITICAL")
        logs.configure(settings.log_format, level=logging.getLevelName(level))
        code: int = args.handler(settings, args)
        return code
    except BridgeError as exc:
        print(f"stripe-bridge: {exc}", file=sys.stderr)
        return 1
    except (OperationalError, InterfaceError) as exc:
        print(f"stripe-bridge: {database_unreachable(settings.database_url, exc)}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"stripe-bridge: database error at {where(settings.database_url)}: {first_line(exc)}",
            file=sys.stderr,
        )
        return 1
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"stripe-bridge: cannot reach Redis: {first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
