"""`connect`, `update-key`, `disconnect` and `sync`: the operator's side of the connection."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

import orjson
import structlog
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from stripe_bridge import connection, endpoints
from stripe_bridge.cli.opened import opened, workspace_of
from stripe_bridge.errors import BridgeError
from stripe_bridge.models import DEFAULT_WORKSPACE, DISCONNECTED
from stripe_bridge.operators.status import status_object
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings, mode_of_key
from stripe_bridge.stripe_api import GatewayFactory
from stripe_bridge.sync import KINDS, SyncResult, check_kind, run_sync

log = structlog.get_logger(__name__)


def _change(settings: Settings, args: argparse.Namespace, action: str) -> int:
    with opened(settings) as bridge:
        workspace_id = workspace_of(bridge, args.workspace)
        with bridge.session_factory.begin() as session:
            if action == "connect" and getattr(args, "account", None):
                if not settings.stripe_platform_key:
                    raise BridgeError("connect --account is platform mode: set STRIPE_PLATFORM_KEY")
                mode = mode_of_key(settings.stripe_platform_key)
                connection.connect_account(
                    session, bridge.gateway, workspace_id, args.account, mode
                )
            elif action != "disconnect" and not args.api_key:
                raise BridgeError(f"{action} needs --api-key (or, in platform mode, --account)")
            elif action == "connect":
                connection.connect(
                    session,
                    bridge.box,
                    bridge.gateway,
                    workspace_id,
                    args.api_key,
                    args.webhook_secret,
                    plan=bridge.endpoint_plan,
                )
            elif action == "update-key":
                connection.update_key(
                    session,
                    bridge.box,
                    bridge.gateway,
                    workspace_id,
                    args.api_key,
                    args.webhook_secret,
                )
            else:
                connection.disconnect(session, workspace_id, bridge.box, bridge.gateway)
        with bridge.session_factory() as session:
            status = status_object(session, settings, workspace_id)
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    elif action == "disconnect":
        print(f"disconnected from {status['account_id']}; every record is kept")
    else:
        print(
            f"{status['status']}: {status['account_name'] or '-'} ({status['account_id']}, "
            f"{status['mode']} mode), "
            + (
                f"key …{status['api_key_last4']}"
                if status["api_key_last4"]
                else "through the platform"
            )
        )
    return 0


def cmd_connect(settings: Settings, args: argparse.Namespace) -> int:
    return _change(settings, args, "connect")


def cmd_update_key(settings: Settings, args: argparse.Namespace) -> int:
    return _change(settings, args, "update-key")


def cmd_disconnect(settings: Settings, args: argparse.Namespace) -> int:
    return _change(settings, args, "disconnect")


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    kinds = list(KINDS) if args.kind == "all" else [check_kind(args.kind)]
    results: list[SyncResult] = []
    with opened(settings) as bridge:
        workspace_id = workspace_of(bridge, args.workspace)
        for kind in kinds:
            with tqdm(
                desc=f"sync {kind}",
                unit=" objects",
                file=sys.stderr,
                disable=args.json or not sys.stderr.isatty(),
            ) as bar:

                def progress(resource: str, seen: int, bar: Any = bar) -> None:
                    bar.set_postfix_str(resource)
                    bar.update(seen - bar.n)

                results.append(run_sync(bridge, workspace_id, kind, progress=progress))
    if args.json:
        print(orjson.dumps([asdict(result) for result in results]).decode())
    else:
        for result in results:
            resumed = " (resumed)" if result.resumed else ""
            print(
                f"{result.kind}: {result.seen} objects, {result.status}{resumed} "
                f"in {result.seconds:.1f} s"
            )
    return 0


def connect_from_settings(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    gateways: GatewayFactory,
    settings: Settings,
) -> None:
    """STRIPE_API_KEY / STRIPE_WEBHOOK_SECRET in the environment connect the `default`
    workspace at start (serve, scheduler, migrate). An operator's explicit `disconnect` is
    respected: no auto-reconnect."""
    if not settings.stripe_api_key:
        return
    try:
        with session_factory.begin() as session:
            row = connection.get(session, DEFAULT_WORKSPACE, lock=True)
            if row is not None and row.status == DISCONNECTED:
                log.warning(
                    "STRIPE_API_KEY is set but the connection was disconnected; not reconnecting"
                )
                return
            if connection.api_key(row, box) != settings.stripe_api_key.strip():
                change = connection.update_key if row is not None else connection.connect
                row = change(session, box, gateways, DEFAULT_WORKSPACE, settings.stripe_api_key)
            env_secrets = settings.stripe_webhook_secrets[: endpoints.MAX_WEBHOOK_SECRETS]
            if row and env_secrets and set(endpoints.webhook_secrets(row, box)) != set(env_secrets):
                endpoints.set_webhook_secrets(row, box, list(env_secrets))
    except BridgeError as exc:
        log.error("could not connect from STRIPE_API_KEY", error=str(exc))


def register(commands: Any) -> None:
    for name, handler, text in (
        ("connect", cmd_connect, "check an API key with Stripe and connect its account"),
        ("update-key", cmd_update_key, "replace the API key of the connected account"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--api-key", help="sk_… or rk_… (test or live)")
        if name == "connect":
            sub.add_argument(
                "--account", help="platform mode: acct_… of an account connected to the platform"
            )
        sub.add_argument(
            "--webhook-secret",
            help="whsec_…: rolls (new first, previous kept); a,b sets both",
        )
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler)
    sub = commands.add_parser(
        "disconnect", help="stop sync, pushes and event application; keep all records"
    )
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=cmd_disconnect)
    sub = commands.add_parser("sync", help="backfill from Stripe's list API now")
    sub.add_argument("kind", choices=[*KINDS, "all"])
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=cmd_sync)
