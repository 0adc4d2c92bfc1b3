"""The baseline: an audited state for every record row that existed before events carried
states (run once, by the migration that introduced them).

What it attests, honestly: the row *as it was when the migration ran*. A row altered behind
the application's back before that is baselined as altered; the older events' ``before`` and
``after`` snapshots, which the chain has always protected, are what an investigator compares
it with. From the baseline on, any change that is not an audited one is reported.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect

from app.db.base import utcnow
from app.db.models import AuditEvent
from app.db.repositories import audit as audit_rows
from app.enums import AuditAction
from app.services import audit, record_state
from app.services.canonical import sha256_hex

BASELINE_ACTOR = "migration"


def record_baseline(connection: Connection, *, reason: str) -> int:
    """Append one ``audit.baseline`` event per row of every reconciled table (the columns
    the database has now), chained after the head; returns how many. Core only: it runs
    inside a migration, where the ORM models may be ahead of the schema."""
    present = inspect(connection)
    tables = set(present.get_table_names())
    head = audit_rows.head_values(connection)
    seq, prev_hash = head if head else (0, audit.GENESIS)
    rows: list[dict[str, Any]] = []
    for table in record_state.reconciled_tables():
        if table.name not in tables:
            continue
        names = {c["name"] for c in present.get_columns(table.name)}
        columns = [c for c in table.columns if c.name in names]
        for row in audit_rows.rows_of(connection, table, columns):
            key, state = record_state.mapping_state(table, row._mapping, columns)
            _, entity_type, entity_id = record_state.entity_of(key)
            seq += 1
            states = {key: state}
            event = AuditEvent(
                seq=seq,
                occurred_at=utcnow(),
                actor=BASELINE_ACTOR,
                actor_id=None,
                action=AuditAction.audit_baseline.value,
                entity_type=entity_type,
                entity_id=entity_id,
                reason=reason,
                before=None,
                after=None,
                prev_hash=prev_hash,
                state=states,
                state_sha256=sha256_hex(states),
            )
            event.hash = audit.event_hash(event)
            rows.append({name: getattr(event, name) for name in (*_COLUMNS, "hash")})
            prev_hash = event.hash
    if not rows:
        return 0
    audit_rows.append_events(connection, rows, seq=seq, hash=prev_hash, had_head=head is not None)
    return len(rows)


_COLUMNS = (
    "seq",
    "occurred_at",
    "actor",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "reason",
    "before",
    "after",
    "prev_hash",
    "state",
    "state_sha256",
)
