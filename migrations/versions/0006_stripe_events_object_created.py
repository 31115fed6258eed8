"""stripe events by object and second: the stale guard's same-second lookup

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stripe_events_object_id_created",
        "stripe_events",
        ["object_id", "created"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_events_object_id_created", table_name="stripe_events")
