"""A seal: a signed checkpoint of the chain head that also counts every table's rows; and the
recorded full reconciliation, whose event such a seal signs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import User
from app.db.repositories import audit as audit_rows
from app.enums import AuditAction, AuditEntityType
from app.errors import InvalidInput
from app.services import audit, checkpoints, reconcile

CHAIN_ENTITY_ID = "chain"


def seal(session: Session) -> checkpoints.Checkpoint | None:
    """Sign the head with every counted table's row count, under the chain lock (so no event
    is appended meanwhile); None when the chain is empty or the head already sealed."""
    key = checkpoints.signing_key()
    if key is None:
        raise InvalidInput("no signing key configured (REGISTRY_AUDIT_SIGNING_KEY)")
    audit.lock_chain(session)
    rows = reconcile.count_tables(session)
    return checkpoints.sign_head(session, key, kind=checkpoints.SEAL, rows=rows)


@dataclass(frozen=True)
class RecordedReconciliation:
    """A full reconciliation's result as its ``audit.reconcile`` event holds it."""

    seq: int  # the event
    recorded_at: datetime
    head_seq: int  # the head of the chain the reconciliation read
    valid: bool
    rows_checked: int
    differences: int
    key_id: str  # of the seal that signs the event


def record_reconciliation(
    session: Session, rec: reconcile.Reconciliation, *, head_seq: int, actor: User | str
) -> tuple[int, checkpoints.Checkpoint]:
    """Append the ``audit.reconcile`` event of a full reconciliation that read the chain up to
    ``head_seq`` and seal the head at that event, so the result is signed (the seal's hash is
    the event's, which covers its ``after``). Returns the event's seq and the seal."""
    if rec.since_seq is not None:
        raise ValueError("only a full reconciliation is recorded")
    if checkpoints.signing_key() is None:
        raise InvalidInput("no signing key configured (REGISTRY_AUDIT_SIGNING_KEY)")
    event = audit.record(
        session,
        actor=actor,
        action=AuditAction.audit_reconcile,
        entity_type=AuditEntityType.audit_chain,
        entity_id=CHAIN_ENTITY_ID,
        reason="full reconciliation of every record with its audited state",
        after={
            "head_seq": head_seq,
            "valid": rec.valid,
            "rows_checked": rec.rows_checked,
            "differences": len(rec.differences),
            "tables": rec.tables,
        },
    )
    sealed = seal(session)
    if sealed is None or sealed.seq != event.seq:  # the event is new: its head has no seal
        raise RuntimeError(f"the reconciliation event {event.seq} could not be sealed")
    return event.seq, sealed


def recorded_reconciliation(
    session: Session, public: checkpoints.PublicKey, problems: list[str]
) -> RecordedReconciliation | None:
    """The newest recorded full reconciliation if the seal at its event signs it with
    ``public``; None when none is recorded. One that is not signed so (appended behind the
    application's back, or by another key) is added to ``problems`` and not returned."""
    event = audit_rows.newest_event(session, AuditAction.audit_reconcile.value)
    if event is None:
        return None
    row = audit_rows.checkpoint_at(session, event.seq, checkpoints.SEAL)
    cp = checkpoints.Checkpoint.from_row(row) if row is not None else None
    after = event.after or {}
    values: list[Any] = [after.get(k) for k in ("head_seq", "rows_checked", "differences")]
    if (
        cp is None
        or not public.verifies(cp)
        or cp.hash != event.hash
        or audit.event_hash(event) != event.hash
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        or not isinstance(after.get("valid"), bool)
    ):
        problems.append(
            f"the reconciliation recorded in event {event.seq} is not signed by a seal of key "
            f"{public.key_id} at that event: its result is not trusted (recorded behind the "
            "application's back, or with another key)"
        )
        return None
    head_seq, rows_checked, differences = (int(v) for v in values)
    return RecordedReconciliation(
        seq=event.seq,
        recorded_at=event.occurred_at,
        head_seq=head_seq,
        valid=bool(after["valid"]),
        rows_checked=rows_checked,
        differences=differences,
        key_id=cp.key_id,
    )
