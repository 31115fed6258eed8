"""connection and sync runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:51:00.797527
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "stripe_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=255), nullable=False),
        sa.Column("account_name", sa.Text(), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("api_key_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("api_key_last4", sa.String(length=4), nullable=True),
        sa.Column("webhook_secrets_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("customers_last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("products_last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("subscriptions_last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_connection")),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), server_default="manual", nullable=False),
        sa.Column("pass_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor", sa.String(length=255), nullable=True),
        sa.Column("seen", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index(
        "ix_sync_runs_kind_started_at", "sync_runs", ["kind", "started_at"], unique=False
    )
    op.create_index(
        "uq_sync_runs_one_running_per_kind",
        "sync_runs",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.add_column(
        "customers", sa.Column("seen_in_sync_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:

    op.drop_column("customers", "seen_in_sync_at")
    op.drop_index(
        "uq_sync_runs_one_running_per_kind",
        table_name="sync_runs",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.drop_index("ix_sync_runs_kind_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("stripe_connection")
