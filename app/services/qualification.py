"""When a version is qualified: the one rule the predictions, the cards and the pages share."""

from __future__ import annotations

from datetime import datetime

from app.db.base import utcnow
from app.enums import QUALIFIED_STATUSES, VersionStatus


def is_qualified(
    status: VersionStatus, review_due_at: datetime | None, now: datetime | None = None
) -> bool:
    """Approved or requalified, and not past its periodic-review date (whether or not the
    transition to ``requalification_due`` has been recorded yet)."""
    if status not in QUALIFIED_STATUSES:
        return False
    return review_due_at is None or review_due_at > (now or utcnow())
