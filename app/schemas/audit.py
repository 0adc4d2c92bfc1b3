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
    valid: bool
    rows_checked: int
    tables: dict[str, int] = Field(description="rows read per table")
    differences: list[RecordDifference] = Field(description="the first 1000")
    differences_total: int


class ChainVerification(Schema):
    valid: bool = Field(description="chain, checkpoints and (when run) reconciliation all pass")
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
    reconciliation: ReconciliationRead | None = None
