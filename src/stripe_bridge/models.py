"""Tables. The schema changes only through alembic (migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stripe_bridge.db import Base

DEFAULT_WORKSPACE = "default"  # always exists; the unscoped routes and commands act on it


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Workspace(Base):
    """One Veles tenant. Every other table's rows belong to exactly one workspace, whose id
    leads their primary key (so the tables can be partitioned or distributed by it)."""

    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkspaceToken(Base):
    """A workspace's admin token, kept only as its SHA-256 (the token is shown once)."""

    __tablename__ = "workspace_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Scoped:
    """A row of one workspace: `workspace_id` is the first column of its primary key."""

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True, sort_order=-1)


def scoped_index(table: str, *columns: str, **kwargs: Any) -> Index:
    """A secondary index of a workspace's rows, named as the index it replaced: its own columns
    first, then the workspace. Led by the workspace, every secondary index would also answer
    `workspace_id = …` alone, and the planner took them for a primary-key lookup by
    `(workspace_id, id IN …)` (a scan of the whole workspace: measured 9x slower); the primary
    key and unique constraints are the ones led by the workspace."""
    return Index(f"ix_{table}_{'_'.join(columns)}", *columns, "workspace_id", **kwargs)


# Inbox statuses
RECEIVED = "received"
PROCESSED = "processed"
IGNORED = "ignored"
FAILED = "failed"
DISCARDED = "discarded"  # a dead letter an operator gave up on (with the reason); also outbox


class InboxRow(Scoped):
    """Columns shared by both inboxes: stored first, then applied by one job each."""

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    created: Mapped[int] = mapped_column(BigInteger)
    object_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_type: Mapped[str | None] = mapped_column(String(255))
    error_traceback: Mapped[str | None] = mapped_column(Text)
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discard_reason: Mapped[str | None] = mapped_column(Text)


class StripeEvent(InboxRow, Base):
    """The durable inbox of verified Stripe events, stored before they are answered."""

    __tablename__ = "stripe_events"

    api_version: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    account: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        scoped_index("stripe_events", "status", "received_at"),
        scoped_index("stripe_events", "type"),
        # the stale guard's same-second lookup (handlers/guard.py)
        scoped_index("stripe_events", "object_id", "created"),
        # the sweeper's, across workspaces: only what waits to be applied
        Index(
            "ix_stripe_events_waiting",
            "received_at",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )


class VelesEvent(InboxRow, Base):
    """The durable inbox of verified Veles events (`POST /veles/events`)."""

    __tablename__ = "veles_events"

    __table_args__ = (
        scoped_index("veles_events", "status", "received_at"),
        scoped_index("veles_events", "type"),
        Index(
            "ix_veles_events_waiting",
            "received_at",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )


class Versioned(Scoped):
    """A mirrored Stripe object: its common fields, and which event last wrote the row, for
    the stale-event guard (handlers/guard.py).

    `src_created` is the event's `created` (-1 for a row not written by any event yet),
    `src_rank` orders created < updated < deleted within one second, `src_prev` keeps the
    `previous_attributes` of the event that wrote the row."""

    src_created: Mapped[int] = mapped_column(BigInteger, default=-1, server_default=text("-1"))
    src_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    src_event_id: Mapped[str | None] = mapped_column(String(255))
    src_prev: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # what every mirrored Stripe object has
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    livemode: Mapped[bool | None] = mapped_column(Boolean)
    created: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Customer match statuses
MATCHED = "matched"
NOT_MATCHED = "not_matched"
# Product match statuses (plus NOT_MATCHED)
NAME_MATCH = "name_match"
IMPORT = "import"
MANUAL = "manual"
IGNORED_MATCH = "ignored"
PRODUCT_LINKED = (NAME_MATCH, IMPORT, MANUAL)


class Customer(Versioned, Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    email_key: Mapped[str | None] = mapped_column(Text)
    domain_key: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text)
    match_status: Mapped[str] = mapped_column(
        String(16), default=NOT_MATCHED, server_default=NOT_MATCHED
    )
    veles_customer_id: Mapped[str | None] = mapped_column(String(255))
    match_method: Mapped[str | None] = mapped_column(String(16))
    match_candidates: Mapped[list[str] | None] = mapped_column(JSON)
    match_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    seen_in_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        scoped_index("customers", "email_key"),
        scoped_index("customers", "domain_key"),
        scoped_index("customers", "name_key"),
        scoped_index("customers", "match_status"),
        scoped_index("customers", "veles_customer_id"),
    )


class Product(Versioned, Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text)
    match_status: Mapped[str] = mapped_column(
        String(16), default=NOT_MATCHED, server_default=NOT_MATCHED
    )
    veles_product_id: Mapped[str | None] = mapped_column(String(255))
    match_candidates: Mapped[list[str] | None] = mapped_column(JSON)
    match_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

    __table_args__ = (
        scoped_index("products", "name_key"),
        scoped_index("products", "match_status"),
        scoped_index("products", "veles_product_id"),
    )


class Price(Versioned, Base):
    """Prices, and the plans of old accounts (a plan id is also a price id in Stripe)."""

    __tablename__ = "prices"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    product_id: Mapped[str | None] = mapped_column(String(255))
    unit_amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    type: Mapped[str | None] = mapped_column(String(16))
    recurring_interval: Mapped[str | None] = mapped_column(String(8))
    recurring_interval_count: Mapped[int | None] = mapped_column(Integer)
    nickname: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

    __table_args__ = (scoped_index("prices", "product_id"),)


class Subscription(Versioned, Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (scoped_index("subscriptions", "customer_id"),)


class Invoice(Versioned, Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    amount_due: Mapped[int | None] = mapped_column(BigInteger)
    amount_paid: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    number: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        scoped_index("invoices", "customer_id"),
        scoped_index("invoices", "subscription_id"),
    )


class VelesCustomer(Scoped, Base):
    """A Veles customer (company), from `customer.upserted` or created from a Stripe customer."""

    __tablename__ = "veles_customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    email_key: Mapped[str | None] = mapped_column(Text)
    domain_key: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="veles", server_default="veles")
    src_created: Mapped[int] = mapped_column(BigInteger, default=-1, server_default=text("-1"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        scoped_index("veles_customers", "email_key"),
        scoped_index("veles_customers", "domain_key"),
        scoped_index("veles_customers", "name_key"),
    )


class VelesProduct(Scoped, Base):
    """A Veles price-book product, from `product.upserted` or imported from Stripe."""

    __tablename__ = "veles_products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    sku: Mapped[str | None] = mapped_column(Text)
    unit_label: Mapped[str | None] = mapped_column(Text)
    prices: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    name_key: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="veles", server_default="veles")
    src_created: Mapped[int] = mapped_column(BigInteger, default=-1, server_default=text("-1"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (scoped_index("veles_products", "name_key"),)


class VelesOrder(Scoped, Base):
    """A committed Veles order; pushed to Stripe as one finalized invoice."""

    __tablename__ = "veles_orders"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    invoice_status: Mapped[str | None] = mapped_column(String(32))
    payment_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        scoped_index("veles_orders", "customer_id"),
        scoped_index("veles_orders", "stripe_invoice_id"),
    )


class VelesContract(Scoped, Base):
    """A Veles contract; pushed to Stripe as a subscription (activate, amend, cancel)."""

    __tablename__ = "veles_contracts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    start_date: Mapped[str] = mapped_column(String(10))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        scoped_index("veles_contracts", "customer_id"),
        scoped_index("veles_contracts", "stripe_subscription_id"),
    )


# Outbox statuses
PENDING = "pending"
IN_FLIGHT = "in_flight"
SENT = "sent"
DEAD = "dead"


class OutboxRow(Scoped, Base):
    """One change to push to Stripe, written in the same transaction as the change itself.

    Rows of one aggregate (`aggregate_type`, `aggregate_id`) are pushed strictly in id order;
    `progress` remembers what each step already created, so a retried row resumes."""

    __tablename__ = "outbox"

    # PostgreSQL: (workspace_id, id), the id from a sequence. SQLite keeps `id` alone as its
    # primary key (SQLite numbers only a single-column INTEGER PRIMARY KEY), AUTOINCREMENT.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    aggregate_type: Mapped[str] = mapped_column(String(16))
    aggregate_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_type: Mapped[str | None] = mapped_column(String(255))
    error_traceback: Mapped[str | None] = mapped_column(Text)
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discard_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # the relay's claim, workspaces taking turns: only the rows still to push
        Index(
            "ix_outbox_open",
            "workspace_id",
            "id",
            postgresql_where=text("status IN ('pending', 'in_flight')"),
            sqlite_where=text("status IN ('pending', 'in_flight')"),
        ),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_aggregate", "aggregate_type", "aggregate_id", "workspace_id", "id"),
        Index("uq_outbox_dedupe_key", "workspace_id", "dedupe_key", unique=True),
        # ids name idempotency keys: never handed out again after a delete (migration 0008)
        {"sqlite_autoincrement": True},
    )


# Connection statuses
CONNECTED = "connected"
DISCONNECTED = "disconnected"
NOT_CONNECTED = "not_connected"


class Connection(Base):
    """A workspace's Stripe connection (one row per workspace). Keys are stored encrypted."""

    __tablename__ = "stripe_connection"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(255))
    account_name: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(8))
    api_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    api_key_last4: Mapped[str | None] = mapped_column(String(4))
    webhook_secrets_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    customers_last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    products_last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subscriptions_last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the webhook endpoint the bridge registered in the account itself (deleted on disconnect)
    webhook_endpoint_id: Mapped[str | None] = mapped_column(String(255))
    platform: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # a Stripe App install (OAuth): the access token is the key; it expires, the refresh token
    # (encrypted like keys) gets the next one before it does
    oauth_refresh_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    oauth_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # one account (in one mode) belongs to at most one workspace at a time: the only
        # constraint that spans workspaces (a reference table, if the others are distributed)
        Index(
            "uq_stripe_connection_account",
            "account_id",
            "mode",
            unique=True,
            postgresql_where=text("status = 'connected'"),
            sqlite_where=text("status = 'connected'"),
        ),
    )


class SyncRun(Scoped, Base):
    """One sync run. A pass that was interrupted is resumed by the next run of its kind from
    `cursor`, keeping `pass_started_at`; at most one run of a kind is `running` at a time."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # as outbox.id
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    pass_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor: Mapped[str | None] = mapped_column(String(255))
    seen: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_sync_runs_one_running_per_kind",
            "workspace_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        scoped_index("sync_runs", "kind", "started_at"),
    )


MIRRORS: dict[str, type[Versioned]] = {
    "customers": Customer,
    "products": Product,
    "prices": Price,
    "subscriptions": Subscription,
    "invoices": Invoice,
}


# Either inbox table: Stripe's events or Veles'.
Inbox = type[StripeEvent] | type[VelesEvent]
