"""`dead-letters`, `replay` and `recover`: what an operator does after a failure or an outage."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import orjson

from stripe_bridge.cli.opened import opened, workspace_of
from stripe_bridge.errors import BadRequest
from stripe_bridge.operators import deadletters
from stripe_bridge.operators.maintenance import recover
from stripe_bridge.settings import Settings


def parse_since(value: str) -> datetime:
    """`--since`: what `deadletters.moment` reads, as argparse's kind of error."""
    try:
        return deadletters.moment(value)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory() as session:
        letters = deadletters.list_dead(
            session,
            workspace_of(bridge, args.workspace),
            kind=args.kind,
            event_type=args.type,
            since=args.since,
        )
    if args.json:
        _print([letter.as_json() for letter in letters])
        return 0
    if not letters:
        print("no dead letters")
    for letter in letters:
        when = letter.last_failed_at.isoformat(timespec="seconds") if letter.last_failed_at else "-"
        subject = letter.subject or "-"
        print(f"{letter.id}  {letter.type}  {subject}  attempts={letter.attempts}  {when}")
        print(f"    {letter.error}")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory() as session:
        letter = deadletters.get_dead(session, workspace_of(bridge, args.workspace), args.id)
    if args.json:
        _print(letter.as_json(with_traceback=True))
        return 0
    for key, value in letter.as_json().items():
        print(f"{key}: {value}")
    print("traceback:")
    print(letter.traceback or "(none stored)")
    return 0


def cmd_discard(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings) as bridge, bridge.session_factory.begin() as session:
        deadletters.discard(session, workspace_of(bridge, args.workspace), args.id, args.reason)
    print(f"{args.id} discarded: {args.reason}")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise BadRequest("give dead-letter ids, or --all (with --kind/--type to narrow it)")
    if args.ids and (args.kind or args.type):
        raise BadRequest("--kind and --type go with --all")
    with opened(settings, sends_jobs=not args.dry_run) as bridge:
        workspace_id = workspace_of(bridge, args.workspace)
        if args.all:
            replayed = deadletters.replay_matching(
                bridge, workspace_id, kind=args.kind, event_type=args.type, dry_run=args.dry_run
            )
        else:
            replayed = deadletters.replay(bridge, workspace_id, args.ids, dry_run=args.dry_run)
    if args.json:
        _print({"replayed": replayed, "dry_run": args.dry_run})
        return 0
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(replayed)} dead letter(s)")
    for ref in replayed:
        print(f"  {ref}")
    return 0


def cmd_recover(settings: Settings, args: argparse.Namespace) -> int:
    with opened(settings, sends_jobs=True) as bridge:
        result = recover(bridge, workspace_of(bridge, args.workspace), args.since)
    if args.json:
        _print(result.__dict__)
    else:
        print(
            f"listed {result.listed} event(s) from Stripe; stored {result.stored} the inbox "
            f"lacked; {result.already_had} were already there"
        )
    return 0


def register(commands: Any) -> None:
    group = commands.add_parser(
        "dead-letters", help="work that failed for good: list, show, discard"
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", help="list dead letters")
    listing.add_argument("--kind", choices=list(deadletters.MODELS))
    listing.add_argument("--type", help="event type or outbox kind")
    listing.add_argument("--since", type=parse_since, help="failed at or after (YYYY-MM-DD)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    show = verbs.add_parser("show", help="one dead letter, with its traceback")
    show.add_argument("id", help="event:evt_…, veles:…, or outbox:12")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
    discard = verbs.add_parser("discard", help="give up on a dead letter (the reason is kept)")
    discard.add_argument("id")
    discard.add_argument("--reason", required=True)
    discard.set_defaults(handler=cmd_discard)

    replay = commands.add_parser("replay", help="run dead letters through their normal path again")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument(
        "--all", action="store_true", help="every dead letter (narrow with --kind/--type)"
    )
    replay.add_argument("--kind", choices=list(deadletters.MODELS))
    replay.add_argument("--type")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(handler=cmd_replay)

    rec = commands.add_parser("recover", help="fetch events Stripe never delivered (Events API)")
    rec.add_argument("--since", type=parse_since, required=True, help="YYYY-MM-DD, within 30 days")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=cmd_recover)
