"""prediction log review index

``GET /prediction-log`` lists the log in (occurred_at, id) order and pages with a keyset
cursor on the same pair; this index keeps a page's cost independent of the log's length. A
plain CREATE INDEX (no batch rebuild), so the append-only triggers stay in place on SQLite.

Revision ID: 7b2abb66f54a
Revises: 7ca29c6e3ba5
Create Date: 2026-11-27 05:04:32.035767
"""

from collections.abc import Sequence

from alembic import op


revision: str = '7b2abb66f54a'
down_revision: str | Sequence[str] | None = '7ca29c6e3ba5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_prediction_log_occurred_at_id', 'prediction_log', ['occurred_at', 'id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_prediction_log_occurred_at_id', table_name='prediction_log')
