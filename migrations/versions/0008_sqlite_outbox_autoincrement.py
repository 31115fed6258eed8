"""SQLite: outbox ids never handed out again (AUTOINCREMENT)

An outbox id names the idempotency keys of its pushes (`veles-outbox-{id}-{step}`), which
Stripe remembers for 24 hours per account. SQLite's plain rowid hands the highest ids out again
once their rows are deleted (deleting a workspace deletes its outbox rows), so a workspace
connected to the same account within a day could get a deleted row's stored answer. PostgreSQL
numbers the rows from a sequence and is not affected: nothing changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 21:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_outbox(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    kwargs = {"sqlite_autoincrement": autoincrement}
    with op.batch_alter_table("outbox", recreate="always", table_kwargs=kwargs):
        pass  # the copy keeps every row, id and index; SQLite's sequence starts at the max id


def upgrade() -> None:
    _rebuild_outbox(True)


def downgrade() -> None:
    _rebuild_outbox(False)
