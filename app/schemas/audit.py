from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from app.enums import AuditAction, AuditEntityType
from app.schemas.common import Schema


class AuditEventRead(Schema):
    seq: int
    occurred_at: datetime
    actor: str
    actor_id: uuid.UUID | None
    # Every event the service writes uses the vocabularies; a row written behind its back may
    # not, and must still be readable by the auditor investigating it (GET /audit/verify).
    action: AuditAction | str
    entity_type: AuditEntityType | str
    entity_id: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str
    # The rows the event's transaction wrote, as they were after it ({"<table>:<id>":
    # {column: value or {"sha256": ...}}}) and the sha256 of that canonical JSON; both are
    # covered by ``hash``. None on events that wrote no row and on older events.
    state: dict[str, Any] | None = None
    state_sha256: str | None = None


class AuditPage(Schema):
    events: list[AuditEventRead]
    next_cursor: int | None


class CheckpointRead(Schema):
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    kind: Literal["chain", "seal"]


class FieldDifference(Schema):
    field: str
    audited: Any = Field(description="the value (or {sha256}) in the last audited state")
    current: Any = Field(description="the value (or {sha256}) in the row now")


class RecordDifference(Schema):
    kind: Literal["changed", "unaudited", "missing", "rows_removed", "changed_between"]
    table: str
    entity_type: str | None
    entity_id: str | None
    audited_seq: int | None = Field(description="the event whose state the row was compared with")
    earlier_seq: int | None = Field(
        default=None, description="changed_between: the previous event that held the row"
    )
    fields: list[FieldDifference]
    detail: str


class ReconciliationRead(Schema):
    scope: Literal["all", "since_full_reconciliation"] = Field(
        description="``all``: every record row and every audited state were compared; "
        "``since_full_reconciliation``: only the rows the events after ``since_seq`` (the head "
        "the last recorded full reconciliation read) wrote, and every table's row count "
        "against the newest seal"
    )
    since_seq: int | None = Field(description="``since_full_reconciliation``: see ``scope``")
    events: int = Field(description="events whose states were read")
    valid: bool = Field(description="what was compared matches (see ``not_checked``)")
    rows_checked: int
    tables: dict[str, int] = Field(description="rows read per table")
    differences: list[RecordDifference] = Field(description="the first 1000")
    differences_total: int
    not_checked: str | None = Field(
        description="what this reconciliation did not see (null when ``scope`` is ``all``)"
    )


class RecordedReconciliationRead(Schema):
    """The newest full reconciliation recorded by ``ssreg audit verify --full --record``."""

    seq: int = Field(description="its ``audit.reconcile`` event, signed by the seal at this seq")
    recorded_at: datetime
    head_seq: int = Field(description="the head of the chain when it read the records")
    valid: bool = Field(description="it found no difference")
    rows_checked: int
    differences: int
    key_id: str = Field(description="the key of the seal that signs it")


class ChainVerification(Schema):
    valid: bool = Field(
        description="chain, checkpoints and (when run) the reconciliation pass, and, when the "
        "reconciliation was incremental, the recorded full one it starts from passed"
    )
    events: int = Field(description="events read: those after the anchor checkpoint")
    first_bad_seq: int | None
    problem: str | None = Field(default=None, description="the first of ``problems``")
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    head_seq: int
    checked_from_seq: int = Field(description="the chain was walked from the event after this")
    anchored: bool = Field(description="a signed checkpoint outside the database anchored it")
    anchor: CheckpointRead | None = None
    key_id: str | None = None
    checkpoints_checked: int = 0
    reconciliation: ReconciliationRead | None = Field(
        default=None, description="null with ``reconcile=none``"
    )
    last_full_reconciliation: RecordedReconciliationRead | None = Field(
        default=None,
        description="the newest recorded full reconciliation whose seal verifies (null when "
        "none is recorded, or without a signing key)",
    )
