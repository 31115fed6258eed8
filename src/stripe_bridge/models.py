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


# Inbox statuses
RECEIVED = "received"
PROCESSED = "processed"
IGNORED = "ignored"
FAILED = "failed"
DISCARDED = "discarded"  # a dead letter an operator gave up on (with the reason); also outbox


class InboxRow:
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
        Index("ix_stripe_events_status_received_at", "status", "received_at"),
        Index("ix_stripe_events_type", "type"),
        # the stale guard's same-second lookup (handlers/guard.py)
        Index("ix_stripe_events_object_id_created", "object_id", "created"),
    )


class VelesEvent(InboxRow, Base):
    """The durable inbox of verified Veles events (`POST /veles/events`)."""

    __tablename__ = "veles_events"

    __table_args__ = (
        Index("ix_veles_events_status_received_at", "status", "received_at"),
        Index("ix_veles_events_type", "type"),
    )


class Versioned:
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
    email_key: Mapped[str | None] = mapped_column(Text, index=True)
    domain_key: Mapped[str | None] = mapped_column(Text, index=True)
    name_key: Mapped[str | None] = mapped_column(Text, index=True)
    match_status: Mapped[str] = mapped_column(
        String(16), default=NOT_MATCHED, server_default=NOT_MATCHED, index=True
    )
    veles_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    match_method: Mapped[str | None] = mapped_column(String(16))
    match_candidates: Mapped[list[str] | None] = mapped_column(JSON)
    match_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    seen_in_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Product(Versioned, Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text, index=True)
    match_status: Mapped[str] = mapped_column(
        String(16), default=NOT_MATCHED, server_default=NOT_MATCHED, index=True
    )
    veles_product_id: Mapped[str | None] = mapped_column(String(255), index=True)
    match_candidates: Mapped[list[str] | None] = mapped_column(JSON)
    match_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))


class Price(Versioned, Base):
    """Prices, and the plans of old accounts (a plan id is also a price id in Stripe)."""

    __tablename__ = "prices"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    product_id: Mapped[str | None] = mapped_column(String(255), index=True)
    unit_amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    type: Mapped[str | None] = mapped_column(String(16))
    recurring_interval: Mapped[str | None] = mapped_column(String(8))
    recurring_interval_count: Mapped[int | None] = mapped_column(Integer)
    nickname: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))


class Subscription(Versioned, Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Invoice(Versioned, Base):
    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    amount_due: Mapped[int | None] = mapped_column(BigInteger)
    amount_paid: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    number: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VelesCustomer(Base):
    """A Veles customer (company), from `customer.upserted` or created from a Stripe customer."""

    __tablename__ = "veles_customers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str | None] = mapped_column(Text)
    email_key: Mapped[str | None] = mapped_column(Text, index=True)
    domain_key: Mapped[str | None] = mapped_column(Text, index=True)
    name_key: Mapped[str | None] = mapped_column(Text, index=True)
    origin: Mapped[str] = mapped_column(String(16), default="veles", server_default="veles")
    src_created: Mapped[int] = mapped_column(BigInteger, default=-1, server_default=text("-1"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VelesProduct(Base):
    """A Veles price-book product, from `product.upserted` or imported from Stripe."""

    __tablename__ = "veles_products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    sku: Mapped[str | None] = mapped_column(Text)
    unit_label: Mapped[str | None] = mapped_column(Text)
    prices: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    name_key: Mapped[str | None] = mapped_column(Text, index=True)
    origin: Mapped[str] = mapped_column(String(16), default="veles", server_default="veles")
    src_created: Mapped[int] = mapped_column(BigInteger, default=-1, server_default=text("-1"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VelesOrder(Base):
    """A committed Veles order; pushed to Stripe as one finalized invoice."""

    __tablename__ = "veles_orders"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_status: Mapped[str | None] = mapped_column(String(32))
    payment_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VelesContract(Base):
    """A Veles contract; pushed to Stripe as a subscription (activate, amend, cancel)."""

    __tablename__ = "veles_contracts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    start_date: Mapped[str] = mapped_column(String(10))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Outbox statuses
PENDING = "pending"
IN_FLIGHT = "in_flight"
SENT = "sent"
DEAD = "dead"


class OutboxRow(Base):
    """One change to push to Stripe, written in the same transaction as the change itself.

    Rows of one aggregate (`aggregate_type`, `aggregate_id`) are pushed strictly in id order;
    `progress` remembers what each step already created, so a retried row resumes."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    aggregate_type: Mapped[str] = mapped_column(String(16))
    aggregate_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
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
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_aggregate", "aggregate_type", "aggregate_id", "id"),
    )


# Connection statuses
CONNECTED = "connected"
DISCONNECTED = "disconnected"
NOT_CONNECTED = "not_connected"


class Connection(Base):
    """The one Stripe connection (a single row, id 1). Keys are stored encrypted."""

    __tablename__ = "stripe_connection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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


class SyncRun(Base):
    """One sync run. A pass that was interrupted is resumed by the next run of its kind from
    `cursor`, keeping `pass_started_at`; at most one run of a kind is `running` at a time."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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
            "kind",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_sync_runs_kind_started_at", "kind", "started_at"),
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
