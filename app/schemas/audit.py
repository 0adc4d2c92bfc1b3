from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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


class AuditPage(Schema):
    events: list[AuditEventRead]
    next_cursor: int | None


class ChainVerification(Schema):
    valid: bool
    events: int
    first_bad_seq: int | None
    problem: str | None = None
