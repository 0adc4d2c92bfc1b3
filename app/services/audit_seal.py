"""A seal: a signed checkpoint of the chain head that also counts every table's rows."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.services import audit, checkpoints, reconcile


def seal(session: Session) -> checkpoints.Checkpoint | None:
    """Sign the head with every counted table's row count, under the chain lock (so no event
    is appended meanwhile); None when the chain is empty or the head already sealed."""
    key = checkpoints.signing_key()
    if key is None:
        raise InvalidInput("no signing key configured (REGISTRY_AUDIT_SIGNING_KEY)")
    audit.lock_chain(session)
    rows = reconcile.count_tables(session)
    return checkpoints.sign_head(session, key, kind=checkpoints.SEAL, rows=rows)
