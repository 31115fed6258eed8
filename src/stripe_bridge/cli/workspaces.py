"""`workspaces list|create|delete|token`: the workspaces one deployment serves."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from stripe_bridge import workspaces
from stripe_bridge.cli.opened import opened
from stripe_bridge.models import NOT_CONNECTED, Connection
from stripe_bridge.operators.views import iso
from stripe_bridge.settings import Settings


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory() as session:
        rows = []
        for row in workspaces.list_all(session):
            connection = session.get(Connection, row.id)
            rows.append(
                {
                    "id": row.id,
                    "name": row.name,
                    "created_at": iso(row.created_at),
                    "status": connection.status if connection else NOT_CONNECTED,
                    "account_id": connection.account_id if connection else None,
                }
            )
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    for item in rows:
        print(f"{item['id']}  {item['status']}  {item['account_id'] or '-'}  {item['name']}")
    return 0


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory.begin() as session:
        workspaces.create(session, args.id, args.name)
    print(f"workspace {args.id} created")
    return 0


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory.begin() as session:
        workspaces.delete_workspace(session, args.id)
    print(f"workspace {args.id} deleted, with every record it held")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory.begin() as session:
        token = workspaces.issue_token(session, args.id)
    print(token)  # shown once: only its hash is kept
    return 0


def register(commands: Any) -> None:
    group = commands.add_parser("workspaces", help="the workspaces this deployment serves")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", help="every workspace and its connection")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    create = verbs.add_parser("create", help="a new workspace (id: letters, digits, - and _)")
    create.add_argument("id")
    create.add_argument("--name")
    create.set_defaults(handler=cmd_create)
    delete = verbs.add_parser("delete", help="delete a disconnected workspace and its records")
    delete.add_argument("id")
    delete.set_defaults(handler=cmd_delete)
    token = verbs.add_parser("token", help="issue a workspace admin token (shown once)")
    token.add_argument("id")
    token.set_defaults(handler=cmd_token)
