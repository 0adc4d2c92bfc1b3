"""transfer cancellation

A transfer still awaiting its standards can be cancelled with a reason: who, when and why are
recorded on the row (plain ADD COLUMN, no batch rebuild, so SQLite's append-only triggers
stay), and a cancelled record is immutable like a completed one (database trigger).

Revision ID: 3c1f0a9d2b7e
Revises: 7b2abb66f54a
Create Date: 2026-12-02 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c1f0a9d2b7e"
down_revision: str | Sequence[str] | None = "7b2abb66f54a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GUARD = "transfer_no_update_when_cancelled"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("transfer", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    if sqlite:  # ADD COLUMN with an inline REFERENCES: no table rebuild, triggers kept
        op.execute("ALTER TABLE transfer ADD COLUMN cancelled_by_id CHAR(32) REFERENCES app_user (id)")
    else:
        op.add_column(
            "transfer",
            sa.Column("cancelled_by_id", sa.Uuid(), sa.ForeignKey("app_user.id"), nullable=True),
        )
    op.add_column("transfer", sa.Column("cancel_reason", sa.Text(), nullable=True))
    if not sqlite:
        op.execute(
            f"CREATE TRIGGER {_GUARD} BEFORE UPDATE ON transfer FOR EACH ROW "
            "WHEN (OLD.status = 'cancelled') EXECUTE FUNCTION registry_refuse_change()"
        )
    else:
        op.execute(
            f"CREATE TRIGGER {_GUARD} BEFORE UPDATE ON transfer WHEN (OLD.status = 'cancelled') "
            "BEGIN SELECT RAISE(ABORT, 'UPDATE on transfer is not allowed: records are "
            "append-only'); END"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(f"DROP TRIGGER IF EXISTS {_GUARD}" + ("" if sqlite else " ON transfer"))
    op.drop_column("transfer", "cancel_reason")
    op.drop_column("transfer", "cancelled_by_id")
    op.drop_column("transfer", "cancelled_at")
