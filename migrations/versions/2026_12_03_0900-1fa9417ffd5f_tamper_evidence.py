"""tamper evidence: audited row states, signed checkpoints, every record table guarded

Audit events gain ``state`` and ``state_sha256`` (the rows the event's transaction wrote, as
they were after it; both inside the hashed fields, so older events hash as before). A new
append-only table ``audit_checkpoint`` holds the signed checkpoints of the chain.

Every row that exists now gets one ``audit.baseline`` event holding its state (it attests the
row as it is at this migration, not before: see app/services/baseline.py).

Then every table is guarded at the database: DELETE refused on all of them, TRUNCATE too on
PostgreSQL; UPDATE only of the columns audited transitions change (a version's status and
review date, a transfer's completion or cancellation columns, an account's administration
and login columns, a token's expiry at logout), and the chain head only one step forward.
The lists are frozen here; app/db/guards.py holds the same lists for the runtime role's
grants, and tests/db/test_guards.py checks that the database refuses what it says.

On SQLite the triggers name the immutable columns one by one: a later migration that adds a
column to a guarded table, or rebuilds one (batch), must create its guard again
(``create_update_guard`` below shows how).

Revision ID: 1fa9417ffd5f
Revises: 3e673ae96006
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1fa9417ffd5f"
down_revision: str | Sequence[str] | None = "3e673ae96006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRANSFER = (
    "status",
    "completed_at",
    "completed_by_id",
    "target_standards_dataset_id",
    "source_standards_dataset_id",
    "validation_dataset_id",
    "method_chosen",
    "artifact_sha256",
    "verdict",
    "result",
    "cancelled_at",
    "cancelled_by_id",
    "cancel_reason",
)
# table -> the columns an UPDATE may change (for the tables whose UPDATE was not refused whole).
UPDATE_GUARDS = {
    "app_user": (
        "role",
        "password_hash",
        "api_key_hash",
        "api_key_prefix",
        "is_active",
        "failed_login_count",
        "locked_until",
    ),
    "access_token": ("expires_at",),
    "model_version": ("status", "review_due_at"),
    "transfer": _TRANSFER,
}
NO_UPDATE = ("audit_checkpoint", "domain", "soft_sensor_model")
NO_DELETE = ("app_user", "access_token", "audit_head", "audit_checkpoint")
# PostgreSQL: tables without a TRUNCATE guard before this revision.
NO_TRUNCATE = (
    "app_user",
    "access_token",
    "audit_head",
    "audit_checkpoint",
    "domain",
    "dataset",
    "soft_sensor_model",
    "model_version",
    "transfer",
    "prediction_log",
)
_MESSAGE = "records are append-only; only audited transitions change them"


def upgrade() -> None:
    op.add_column("audit_event", sa.Column("state", sa.JSON(), nullable=True))
    op.add_column("audit_event", sa.Column("state_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("seq", "kind", name=op.f("pk_audit_checkpoint")),
    )
    _baseline()
    _create_guards()


def downgrade() -> None:
    bind = op.get_bind()
    held = bind.execute(sa.text("SELECT count(*) FROM audit_event WHERE state_sha256 IS NOT NULL"))
    if held.scalar_one():
        raise RuntimeError(
            "audit events hold states: dropping the columns would break their hashes (the "
            "chain); this migration cannot be undone on a database that used it"
        )
    _drop_guards()
    op.drop_table("audit_checkpoint")
    if bind.dialect.name == "sqlite":  # native DROP COLUMN: no rebuild, the triggers stay
        op.execute("ALTER TABLE audit_event DROP COLUMN state_sha256")
        op.execute("ALTER TABLE audit_event DROP COLUMN state")
    else:
        op.drop_column("audit_event", "state_sha256")
        op.drop_column("audit_event", "state")


def _baseline() -> None:
    from app.services.baseline import record_baseline

    record_baseline(
        op.get_bind(),
        reason=(
            "baseline: the row as it was when audit events began to hold row states "
            f"(migration {revision}); it attests the row from now on, not its history before"
        ),
    )


def _sqlite_raise(operation: str, table: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{operation} on {table} is not allowed: {_MESSAGE}'); END"


def create_update_guard(table: str, allowed: Sequence[str]) -> None:
    """Refuse an UPDATE of ``table`` that changes a column not in ``allowed``."""
    name = f"{table}_guard_update"
    if op.get_bind().dialect.name == "sqlite":
        columns = [c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)]
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns if c not in allowed)
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(
            f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} WHEN ({changed}) "
            + _sqlite_raise("UPDATE of an immutable column", table)
        )
    else:
        args = ", ".join(f"'{c}'" for c in allowed)
        op.execute(
            f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION registry_guard_update({args})"
        )


def _refuse(table: str, operation: str) -> None:
    name = f"{table}_no_{operation.lower()}"
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
            + _sqlite_raise(operation, table)
        )
    else:
        level = "STATEMENT" if operation == "TRUNCATE" else "ROW"
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH {level} "
            "EXECUTE FUNCTION registry_refuse_change()"
        )


def _create_guards() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.execute(
            f"""
            CREATE FUNCTION registry_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                changed text;
            BEGIN
                SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
                FROM jsonb_each(to_jsonb(NEW)) AS n
                WHERE NOT (n.key = ANY (TG_ARGV))
                  AND n.value IS DISTINCT FROM (to_jsonb(OLD) -> n.key);
                IF changed IS NOT NULL THEN
                    RAISE EXCEPTION 'UPDATE of % on % is not allowed: {_MESSAGE}',
                        changed, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END $$;
            """
        )
        op.execute(
            f"""
            CREATE FUNCTION registry_guard_head() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq IS DISTINCT FROM OLD.seq + 1 THEN
                    RAISE EXCEPTION 'the audit chain head only moves one event forward: {_MESSAGE}'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END $$;
            """
        )
        op.execute(
            "CREATE TRIGGER audit_head_guard_update BEFORE UPDATE ON audit_head FOR EACH ROW "
            "EXECUTE FUNCTION registry_guard_head()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_head_guard_update BEFORE UPDATE ON audit_head "
            "WHEN (NEW.id IS NOT OLD.id OR NEW.seq IS NOT OLD.seq + 1) "
            "BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves one event forward: "
            f"{_MESSAGE}'); END"
        )
    for table, allowed in UPDATE_GUARDS.items():
        create_update_guard(table, allowed)
    for table in NO_UPDATE:
        _refuse(table, "UPDATE")
    for table in NO_DELETE:
        _refuse(table, "DELETE")
    if not sqlite:
        for table in NO_TRUNCATE:
            _refuse(table, "TRUNCATE")


def _drop_guards() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    names = [(f"{t}_guard_update", t) for t in (*UPDATE_GUARDS, "audit_head")]
    names += [(f"{t}_no_update", t) for t in NO_UPDATE]
    names += [(f"{t}_no_delete", t) for t in NO_DELETE]
    if not sqlite:
        names += [(f"{t}_no_truncate", t) for t in NO_TRUNCATE]
    for name, table in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else f" ON {table}"))
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS registry_guard_update()")
        op.execute("DROP FUNCTION IF EXISTS registry_guard_head()")
