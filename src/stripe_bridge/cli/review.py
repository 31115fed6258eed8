"""`stripe-bridge customers …` and `stripe-bridge products …`: listing and reviewing matches."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from stripe_bridge.cli.opened import opened, workspace_of
from stripe_bridge.matching import review
from stripe_bridge.models import NOT_MATCHED, Customer, Product
from stripe_bridge.operators.views import (
    customer_json,
    product_json,
    veles_customer_json,
    veles_product_json,
)
from stripe_bridge.settings import Settings

Action = Callable[[Session, argparse.Namespace], dict[str, Any]]


def _run(
    settings: Settings, args: argparse.Namespace, work: Callable[[Session], Any], *, write: bool
) -> Any:
    with opened(settings) as bridge:
        workspace_of(bridge, args.workspace)
        if write:
            with bridge.session_factory.begin() as session:
                return work(session)
        with bridge.session_factory() as session:
            return work(session)


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(row.get(c) or "")) for row in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))


def list_customers(settings: Settings, args: argparse.Namespace) -> int:
    def work(session: Session) -> list[dict[str, Any]]:
        query = (
            select(Customer).where(Customer.workspace_id == args.workspace).order_by(Customer.id)
        )
        if args.unmatched:
            query = query.where(Customer.match_status == NOT_MATCHED, Customer.deleted.is_(False))
        if args.q:
            pattern = f"%{args.q}%"
            query = query.where(or_(Customer.name.ilike(pattern), Customer.email.ilike(pattern)))
        return [customer_json(row) for row in session.scalars(query)]

    rows = _run(settings, args, work, write=False)
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ("id", "name", "email", "match_status", "veles_customer_id"))
    return 0


def list_products(settings: Settings, args: argparse.Namespace) -> int:
    def work(session: Session) -> list[dict[str, Any]]:
        query = select(Product).where(Product.workspace_id == args.workspace).order_by(Product.id)
        if args.unmatched:
            query = query.where(
                Product.match_status == NOT_MATCHED,
                Product.deleted.is_(False),
                Product.active.is_(True),
            )
        if args.q:
            query = query.where(Product.name.ilike(f"%{args.q}%"))
        return [product_json(row, session) for row in session.scalars(query)]

    rows = _run(settings, args, work, write=False)
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ("id", "name", "active", "match_status", "veles_product_id"))
    return 0


def _action(
    act: Action, summary: Callable[[dict[str, Any]], str]
) -> Callable[[Settings, argparse.Namespace], int]:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        result = _run(settings, args, lambda session: act(session, args), write=True)
        if args.json:
            _print_json(result)
        else:
            print(summary(result))
        return 0

    return command


def _create_customer(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    row, veles = review.create_customer(session, args.workspace, args.stripe_id)
    return {**customer_json(row), "veles_customer": veles_customer_json(veles)}


def _import_product(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    row, veles = review.import_product(session, args.workspace, args.stripe_id)
    return {**product_json(row, session), "veles_product": veles_product_json(veles)}


def _customer_summary(result: dict[str, Any]) -> str:
    return f"{result['id']}: {result['match_status']} {result['veles_customer_id'] or ''}".strip()


def _product_summary(result: dict[str, Any]) -> str:
    return f"{result['id']}: {result['match_status']} {result['veles_product_id'] or ''}".strip()


def register(commands: Any) -> None:
    """Add the `customers` and `products` groups to the top-level subparsers."""
    for noun, lister, actions in (
        (
            "customers",
            list_customers,
            (
                ("link", "link to an existing Veles customer", True, _link_customer),
                ("create", "create a Veles customer from the Stripe data", False, _create_customer),
                ("unlink", "remove the link", False, _unlink_customer),
            ),
        ),
        (
            "products",
            list_products,
            (
                ("match", "match to an existing Veles product", True, _match_product),
                ("import", "import as a new Veles product", False, _import_product),
                ("ignore", "ignore (not counted as needing review)", False, _ignore_product),
                ("unlink", "remove the link, or un-ignore", False, _unlink_product),
            ),
        ),
    ):
        group = commands.add_parser(noun, help=f"review Stripe {noun} and their Veles links")
        verbs = group.add_subparsers(dest="verb", required=True, metavar="ACTION")
        lister_parser = verbs.add_parser("list", help=f"list Stripe {noun} with match status")
        lister_parser.add_argument("--unmatched", action="store_true", help="only those to review")
        lister_parser.add_argument("--q", help="search by name")
        lister_parser.add_argument("--json", action="store_true")
        lister_parser.set_defaults(handler=lister)
        summary = _customer_summary if noun == "customers" else _product_summary
        for verb, text, takes_veles_id, act in actions:
            sub = verbs.add_parser(verb, help=text, description=text)
            sub.add_argument("stripe_id")
            if takes_veles_id:
                sub.add_argument("veles_id")
            sub.add_argument("--json", action="store_true")
            sub.set_defaults(handler=_action(act, summary))


def _link_customer(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    return customer_json(
        review.link_customer(session, args.workspace, args.stripe_id, args.veles_id)
    )


def _unlink_customer(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    return customer_json(review.unlink_customer(session, args.workspace, args.stripe_id))


def _match_product(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    return product_json(
        review.match_product(session, args.workspace, args.stripe_id, args.veles_id), session
    )


def _ignore_product(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    return product_json(review.ignore_product(session, args.workspace, args.stripe_id), session)


def _unlink_product(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    return product_json(review.unlink_product(session, args.workspace, args.stripe_id), session)
