"""workspaces: every row belongs to one, whose id leads its primary key and indexes

An existing single-account database moves whole into the workspace `default`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT = "default"

# table → the secondary indexes that gain `workspace_id` after their own columns (name →
# columns); the primary keys and unique constraints are led by it (models.scoped_index says why)
SCOPED: dict[str, dict[str, list[str]]] = {
    "stripe_events": {
        "ix_stripe_events_status_received_at": ["status", "received_at"],
        "ix_stripe_events_type": ["type"],
        "ix_stripe_events_object_id_created": ["object_id", "created"],
    },
    "veles_events": {
        "ix_veles_events_status_received_at": ["status", "received_at"],
        "ix_veles_events_type": ["type"],
    },
    "customers": {
        f"ix_customers_{column}": [column]
        for column in ("email_key", "domain_key", "name_key", "match_status", "veles_customer_id")
    },
    "products": {
        f"ix_products_{column}": [column]
        for column in ("name_key", "match_status", "veles_product_id")
    },
    "prices": {"ix_prices_product_id": ["product_id"]},
    "subscriptions": {"ix_subscriptions_customer_id": ["customer_id"]},
    "invoices": {
        "ix_invoices_customer_id": ["customer_id"],
        "ix_invoices_subscription_id": ["subscription_id"],
    },
    "veles_customers": {
        f"ix_veles_customers_{column}": [column]
        for column in ("email_key", "domain_key", "name_key")
    },
    "veles_products": {"ix_veles_products_name_key": ["name_key"]},
    "veles_orders": {
        "ix_veles_orders_customer_id": ["customer_id"],
        "ix_veles_orders_stripe_invoice_id": ["stripe_invoice_id"],
    },
    "veles_contracts": {
        "ix_veles_contracts_customer_id": ["customer_id"],
        "ix_veles_contracts_stripe_subscription_id": ["stripe_subscription_id"],
    },
    "outbox": {"ix_outbox_aggregate": ["aggregate_type", "aggregate_id"]},
    "sync_runs": {"ix_sync_runs_kind_started_at": ["kind", "started_at"]},
}
# SQLite numbers only a single-column INTEGER PRIMARY KEY: these keep `id` alone there.
ROWID_TABLES = {"outbox", "sync_runs"}
WORKSPACE = sa.String(length=64)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    workspaces = op.create_table(
        "workspaces",
        sa.Column("id", WORKSPACE, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    op.bulk_insert(
        workspaces, [{"id": DEFAULT, "name": "Default", "created_at": datetime.now(UTC)}]
    )
    op.create_table(
        "workspace_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", WORKSPACE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_workspace_tokens")),
    )
    op.create_index(
        "ix_workspace_tokens_workspace_id", "workspace_tokens", ["workspace_id"], unique=False
    )
    for table, indexes in SCOPED.items():
        _scope(table, indexes, sqlite)
    for inbox in ("stripe_events", "veles_events"):
        op.create_index(
            f"ix_{inbox}_waiting",
            inbox,
            ["received_at"],
            unique=False,
            postgresql_where=sa.text("status = 'received'"),
            sqlite_where=sa.text("status = 'received'"),
        )
    _scope_outbox_and_sync_runs()
    _scope_connection()


def _scope(table: str, indexes: dict[str, list[str]], sqlite: bool) -> None:
    """`workspace_id` (every existing row: `default`) first in the primary key and indexes."""
    for name in indexes:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table(table) as batch:
        batch.add_column(
            sa.Column("workspace_id", WORKSPACE, nullable=False, server_default=DEFAULT)
        )
    with op.batch_alter_table(table) as batch:
        batch.alter_column("workspace_id", server_default=None)
        if not (sqlite and table in ROWID_TABLES):
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["workspace_id", "id"])
    for name, columns in indexes.items():
        tail = ["workspace_id", "id"] if name == "ix_outbox_aggregate" else ["workspace_id"]
        op.create_index(name, table, [*columns, *tail], unique=False)


def _scope_outbox_and_sync_runs() -> None:
    op.create_index(
        "ix_outbox_open",
        "outbox",
        ["workspace_id", "id"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'in_flight')"),
        sqlite_where=sa.text("status IN ('pending', 'in_flight')"),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_dedupe_key", type_="unique")
    op.create_index("uq_outbox_dedupe_key", "outbox", ["workspace_id", "dedupe_key"], unique=True)
    op.drop_index("uq_sync_runs_one_running_per_kind", table_name="sync_runs")
    op.create_index(
        "uq_sync_runs_one_running_per_kind",
        "sync_runs",
        ["workspace_id", "kind"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )


def _scope_connection() -> None:
    """One row per workspace instead of the single row `id = 1`."""
    with op.batch_alter_table("stripe_connection") as batch:
        batch.add_column(
            sa.Column("workspace_id", WORKSPACE, nullable=False, server_default=DEFAULT)
        )
        batch.add_column(sa.Column("webhook_endpoint_id", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("platform", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch.add_column(sa.Column("oauth_refresh_encrypted", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("oauth_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("stripe_connection") as batch:
        batch.alter_column("workspace_id", server_default=None)
        batch.drop_constraint("pk_stripe_connection", type_="primary")
        batch.drop_column("id")
        batch.create_primary_key("pk_stripe_connection", ["workspace_id"])
    op.create_index(
        "uq_stripe_connection_account",
        "stripe_connection",
        ["account_id", "mode"],
        unique=True,
        postgresql_where=sa.text("status = 'connected'"),
        sqlite_where=sa.text("status = 'connected'"),
    )


def downgrade() -> None:
    """Back to one account per database: refused while a workspace other than `default`
    exists (its rows would have nowhere to go)."""
    bind = op.get_bind()
    others = bind.execute(sa.text("SELECT count(*) FROM workspaces WHERE id <> :d"), {"d": DEFAULT})
    if others.scalar_one():
        raise RuntimeError("cannot downgrade: workspaces other than 'default' exist")
    sqlite = bind.dialect.name == "sqlite"
    op.drop_index("uq_stripe_connection_account", table_name="stripe_connection")
    with op.batch_alter_table("stripe_connection") as batch:
        batch.drop_constraint("pk_stripe_connection", type_="primary")
        batch.add_column(sa.Column("id", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("stripe_connection") as batch:
        batch.alter_column("id", server_default=None)
        batch.create_primary_key("pk_stripe_connection", ["id"])
        batch.drop_column("oauth_expires_at")
        batch.drop_column("oauth_refresh_encrypted")
        batch.drop_column("platform")
        batch.drop_column("webhook_endpoint_id")
        batch.drop_column("workspace_id")
    op.drop_index("uq_sync_runs_one_running_per_kind", table_name="sync_runs")
    op.create_index(
        "uq_sync_runs_one_running_per_kind",
        "sync_runs",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.drop_index("uq_outbox_dedupe_key", table_name="outbox")
    op.drop_index("ix_outbox_open", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.create_unique_constraint("uq_outbox_dedupe_key", ["dedupe_key"])
    for inbox in ("stripe_events", "veles_events"):
        op.drop_index(f"ix_{inbox}_waiting", table_name=inbox)
    for table, indexes in SCOPED.items():
        for name in indexes:
            op.drop_index(name, table_name=table)
        with op.batch_alter_table(table) as batch:
            if not (sqlite and table in ROWID_TABLES):
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", ["id"])
            batch.drop_column("workspace_id")
        for name, columns in indexes.items():
            tail = ["id"] if name == "ix_outbox_aggregate" else []
            op.create_index(name, table, [*columns, *tail], unique=False)
    op.drop_index("ix_workspace_tokens_workspace_id", table_name="workspace_tokens")
    op.drop_table("workspace_tokens")
    op.drop_table("workspaces")
