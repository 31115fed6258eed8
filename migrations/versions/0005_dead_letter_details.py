"""dead letter details

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 14:12:39.867828
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.add_column("outbox", sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("error_type", sa.String(length=255), nullable=True))
    op.add_column("outbox", sa.Column("error_traceback", sa.Text(), nullable=True))
    op.add_column(
        "outbox", sa.Column("replays", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("outbox", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("discard_reason", sa.Text(), nullable=True))
    op.add_column(
        "stripe_events", sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "stripe_events", sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("stripe_events", sa.Column("error_type", sa.String(length=255), nullable=True))
    op.add_column("stripe_events", sa.Column("error_traceback", sa.Text(), nullable=True))
    op.add_column(
        "stripe_events",
        sa.Column("replays", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "stripe_events", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("stripe_events", sa.Column("discard_reason", sa.Text(), nullable=True))
    op.add_column(
        "veles_events", sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "veles_events", sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("veles_events", sa.Column("error_type", sa.String(length=255), nullable=True))
    op.add_column("veles_events", sa.Column("error_traceback", sa.Text(), nullable=True))
    op.add_column(
        "veles_events",
        sa.Column("replays", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "veles_events", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("veles_events", sa.Column("discard_reason", sa.Text(), nullable=True))


def downgrade() -> None:

    op.drop_column("veles_events", "discard_reason")
    op.drop_column("veles_events", "replayed_at")
    op.drop_column("veles_events", "replays")
    op.drop_column("veles_events", "error_traceback")
    op.drop_column("veles_events", "error_type")
    op.drop_column("veles_events", "last_failed_at")
    op.drop_column("veles_events", "first_failed_at")
    op.drop_column("stripe_events", "discard_reason")
    op.drop_column("stripe_events", "replayed_at")
    op.drop_column("stripe_events", "replays")
    op.drop_column("stripe_events", "error_traceback")
    op.drop_column("stripe_events", "error_type")
    op.drop_column("stripe_events", "last_failed_at")
    op.drop_column("stripe_events", "first_failed_at")
    op.drop_column("outbox", "discard_reason")
    op.drop_column("outbox", "replayed_at")
    op.drop_column("outbox", "replays")
    op.drop_column("outbox", "error_traceback")
    op.drop_column("outbox", "error_type")
    op.drop_column("outbox", "last_failed_at")
    op.drop_column("outbox", "first_failed_at")
