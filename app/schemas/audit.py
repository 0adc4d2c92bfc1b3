from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.schemas.common import Schema


class AuditEventRead(Schema):
    seq: int
    occurred_at: datetime
    actor: str
    actor_id: uuid.UUID | None
    action: str
    entity_type: str
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
