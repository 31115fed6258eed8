"""Automatic matching against the database: keeps each Stripe mirror's link to Veles current.

Runs inside the transaction of the handler that changed a record, Stripe's or Veles'. Both sides
take the same advisory lock first, so a Stripe customer and a Veles customer arriving at the same
moment cannot miss each other: whichever commits second sees the first. Manual decisions
(`match_manual`) are never touched here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.orm import Session

from stripe_bridge.db import looked_up
from stripe_bridge.matching.rules import (
    NO_MATCH,
    Decision,
    Keys,
    decide_customer,
    decide_product,
    normalise_product_name,
)
from stripe_bridge.models import (
    IGNORED_MATCH,
    IMPORT,
    MANUAL,
    MATCHED,
    NAME_MATCH,
    NOT_MATCHED,
    Customer,
    Product,
    VelesCustomer,
    VelesProduct,
)

CUSTOMER_LOCK = "stripe-bridge:customer-matching"
PRODUCT_LOCK = "stripe-bridge:product-matching"


def matching_lock(
    session: Session, workspace_id: str, name: str, held: Collection[str] = ()
) -> None:
    """Serialise matching of one kind in one workspace for this transaction (SQLite writers are
    serial anyway); `held`: the locks a batch took already for all its events."""
    if name in held:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
            {"name": _lock_key(workspace_id, name)},
        )


def _lock_key(workspace_id: str, name: str) -> str:
    """What a matching lock's id is hashed from: one lock per kind and workspace."""
    return f"{name}:{workspace_id}"


@dataclass
class MatchingPools:
    """The Veles customers and products a batch of Stripe events may match, read once for the
    batch (under the matching locks). A superset of what one record's query would return is
    fine: the decisions filter by exact key; records whose keys were not read still query."""

    emails: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    customers: list[tuple[str, Keys]] = field(default_factory=list)
    product_names: set[str] = field(default_factory=set)
    products: list[tuple[str, str | None]] = field(default_factory=list)

    def covers(self, keys: Keys) -> bool:
        return (
            (keys.email is None or keys.email in self.emails)
            and (keys.domain is None or keys.domain in self.domains)
            and (keys.name is None or keys.name in self.names)
        )


def matching_locks(session: Session, held: Iterable[tuple[str, str]]) -> None:
    """`matching_lock` for many `(workspace_id, name)` at once (a batch of several workspaces),
    in one statement that takes them in the order of their lock ids: every batch takes its
    locks in the same order, so two batches cannot deadlock on them."""
    keys = sorted({_lock_key(workspace_id, name) for workspace_id, name in held})
    if keys and session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(lock_id) FROM (SELECT DISTINCT hashtext(key)"
                " AS lock_id FROM unnest(CAST(:keys AS text[])) AS key ORDER BY lock_id"
                " OFFSET 0) AS sorted"
            ),
            {"keys": keys},
        )


def preload_pools(
    session: Session,
    customers: Iterable[tuple[str, Keys]],
    product_names: Iterable[tuple[str, str | None]],
) -> dict[str, MatchingPools]:
    """Read the candidates for every customer key and product name of a batch, `(workspace_id,
    …)` of any workspaces: one query per key kind, each key looked up through its index."""
    pools: dict[str, MatchingPools] = defaultdict(MatchingPools)
    for workspace_id, keys in customers:
        pool = pools[workspace_id]
        for column in ("email", "domain", "name"):
            value = getattr(keys, column)
            if value is not None:
                getattr(pool, f"{column}s").add(value)
    for workspace_id, name in product_names:
        pool = pools[workspace_id]
        if name is not None:
            pool.product_names.add(name)
    found: set[tuple[str, str]] = set()
    for column in ("email", "domain", "name"):
        wanted = [(ws, key) for ws, pool in pools.items() for key in getattr(pool, f"{column}s")]
        if not wanted:
            continue
        query = looked_up(
            session,
            [
                VelesCustomer.workspace_id,
                VelesCustomer.id,
                VelesCustomer.email_key,
                VelesCustomer.domain_key,
                VelesCustomer.name_key,
            ],
            VelesCustomer,
            wanted,
            column=getattr(VelesCustomer, f"{column}_key"),
        )
        for workspace_id, veles_id, email, domain, name in session.execute(query):
            if (workspace_id, veles_id) not in found:
                found.add((workspace_id, veles_id))
                pools[workspace_id].customers.append((veles_id, Keys(email, domain, name)))
    names = [(ws, name) for ws, pool in pools.items() for name in pool.product_names]
    if names:
        products = looked_up(
            session,
            [VelesProduct.workspace_id, VelesProduct.id, VelesProduct.name_key],
            VelesProduct,
            names,
            column=VelesProduct.name_key,
        )
        for workspace_id, veles_id, key in session.execute(products):
            pools[workspace_id].products.append((veles_id, key))
    return dict(pools)


def set_keys(row: Customer | VelesCustomer) -> Keys:
    keys = Keys.of(row.name, row.email, row.domain)
    row.email_key, row.domain_key, row.name_key = keys.email, keys.domain, keys.name
    return keys


def _where_keys(model: type[Customer] | type[VelesCustomer], *keys: Keys) -> list[object]:
    conditions: list[object] = []
    for column in ("email", "domain", "name"):
        values = {getattr(key, column) for key in keys} - {None}
        if values:
            conditions.append(getattr(model, f"{column}_key").in_(values))
    return conditions


def _apply_customer(row: Customer, decision: Decision) -> None:
    row.veles_customer_id = decision.linked
    row.match_status = MATCHED if decision.linked else NOT_MATCHED
    row.match_method = decision.method
    row.match_candidates = list(decision.candidates)


def rematch_customer(
    session: Session, row: Customer, preloaded: MatchingPools | None = None
) -> None:
    """Match one Stripe customer: email → company domain → normalised name."""
    if row.match_manual:
        return
    if row.deleted:
        _apply_customer(row, NO_MATCH)  # a deleted Stripe customer is not matched
        return
    keys = Keys(row.email_key, row.domain_key, row.name_key)
    if preloaded is not None and preloaded.covers(keys):
        _apply_customer(row, decide_customer(keys, preloaded.customers))
        return
    conditions = _where_keys(VelesCustomer, keys)
    pool: list[tuple[str, Keys]] = []
    if conditions:
        query = select(VelesCustomer).where(
            VelesCustomer.workspace_id == row.workspace_id,
            or_(*conditions),  # type: ignore[arg-type]
        )
        pool = [
            (vc.id, Keys(vc.email_key, vc.domain_key, vc.name_key)) for vc in session.scalars(query)
        ]
    _apply_customer(row, decide_customer(keys, pool))


def rematch_customers_for(session: Session, veles: VelesCustomer, old: Keys | None) -> None:
    """A Veles customer appeared or changed: rematch every Stripe customer it may concern."""
    new = Keys(veles.email_key, veles.domain_key, veles.name_key)
    conditions = [
        *_where_keys(Customer, new, *([old] if old else [])),
        Customer.veles_customer_id == veles.id,
    ]
    query: Select[Customer] = (
        select(Customer)
        .where(
            Customer.workspace_id == veles.workspace_id,
            Customer.match_manual.is_(False),
            or_(*conditions),  # type: ignore[arg-type]
        )
        .order_by(Customer.id)
        .with_for_update()
    )
    for row in session.scalars(query):
        rematch_customer(session, row)


def set_product_key(row: Product | VelesProduct) -> None:
    row.name_key = normalise_product_name(row.name)


def rematch_product(session: Session, row: Product, preloaded: MatchingPools | None = None) -> None:
    """`name_match` when the normalised name equals exactly one Veles product's.

    Imports, manual matches and ignored products are left alone. An inactive product is never
    newly matched; a `name_match` whose names no longer agree breaks back to `not_matched`."""
    if row.match_manual or row.match_status in (IMPORT, MANUAL, IGNORED_MATCH):
        return
    pool: list[tuple[str, str | None]] = []
    if preloaded is not None and row.name_key in preloaded.product_names:
        pool = preloaded.products
    elif row.name_key:
        query = select(VelesProduct.id, VelesProduct.name_key).where(
            VelesProduct.workspace_id == row.workspace_id, VelesProduct.name_key == row.name_key
        )
        pool = [(veles_id, key) for veles_id, key in session.execute(query)]
    decision = decide_product(row.name_key, pool)
    if not row.active or row.deleted:
        if row.match_status == NAME_MATCH and decision.linked != row.veles_product_id:
            row.match_status, row.veles_product_id = NOT_MATCHED, None
        row.match_candidates = list(decision.candidates)
        return
    row.veles_product_id = decision.linked
    row.match_status = NAME_MATCH if decision.linked else NOT_MATCHED
    row.match_candidates = list(decision.candidates)


def rematch_products_for(session: Session, veles: VelesProduct, old_name_key: str | None) -> None:
    names = {veles.name_key, old_name_key} - {None}
    query: Select[Product] = (
        select(Product)
        .where(
            Product.workspace_id == veles.workspace_id,
            Product.match_manual.is_(False),
            Product.match_status.in_((NAME_MATCH, NOT_MATCHED)),
            or_(Product.name_key.in_(names), Product.veles_product_id == veles.id),
        )
        .order_by(Product.id)
        .with_for_update()
    )
    for row in session.scalars(query):
        rematch_product(session, row)


def unmatched_counts(session: Session, workspace_id: str) -> tuple[int, int]:
    """A workspace's Stripe customers and products that need review (deleted and inactive ones
    do not)."""
    customers = session.scalar(
        select(func.count())
        .select_from(Customer)
        .where(
            Customer.workspace_id == workspace_id,
            Customer.match_status == NOT_MATCHED,
            Customer.deleted.is_(False),
        )
    )
    products = session.scalar(
        select(func.count())
        .select_from(Product)
        .where(
            Product.workspace_id == workspace_id,
            Product.match_status == NOT_MATCHED,
            Product.deleted.is_(False),
            Product.active.is_(True),
        )
    )
    return int(customers or 0), int(products or 0)
