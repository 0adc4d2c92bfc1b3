"""The audit trail: append hash-chained events in the caller's transaction, verify the chain.

Each event's hash is sha256 over a canonical JSON of its fields and the previous event's hash
(genesis: 64 zeros). An event also holds the state of the rows its transaction wrote since
the previous event (:mod:`app.services.record_state`), inside the hashed fields, which the
reconciliation compares with the rows now; a transaction that appended events has the head
signed when it commits (:mod:`app.services.checkpoints`).

Appends lock the single ``audit_head`` row, so concurrent requests and several worker
processes on one PostgreSQL extend one chain in commit order; on SQLite the ``BEGIN
IMMEDIATE`` transactions already serialize writers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditEvent, AuditHead, User
from app.db.repositories import audit as audit_rows
from app.db.repositories import signatures as signature_rows
from app.enums import AuditAction, AuditEntityType
from app.errors import InvalidInput
from app.services import checkpoints, record_state
from app.services.canonical import sha256_hex

GENESIS = "0" * 64
HEAD_ID = audit_rows.HEAD_ID


def jsonable(value: Any) -> Any:
    """Plain JSON types for before/after snapshots (UUIDs, datetimes, enums, NaN -> None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "value"):  # enums
        return jsonable(value.value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    raise TypeError(f"cannot put {type(value).__name__} into an audit snapshot")


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    """The fields of an event its hash covers, as plain JSON values: ``state`` and
    ``state_sha256`` only on events that hold a state (older events hash as they did)."""
    fields = {
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "reason": event.reason,
        "before": event.before,
        "after": event.after,
        "prev_hash": event.prev_hash,
    }
    if event.state_sha256 is not None:
        fields["state"] = event.state
        fields["state_sha256"] = event.state_sha256
    return fields


def canonical_payload(event: AuditEvent) -> bytes:
    body = hashed_fields(event)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_payload(event)).hexdigest()


def lock_chain(session: Session) -> AuditHead:
    """Lock the chain head for the rest of the transaction (creating it on first use).

    Every writer takes this lock last, after any model row it locks; code that must serialize
    something global (e.g. transfer numbers) may take it early, in that same order.
    """
    head = audit_rows.lock_head(session)
    if head is None:
        head = AuditHead(id=HEAD_ID, seq=0, hash=GENESIS)
        session.add(head)
        session.flush()
    return head


def record(
    session: Session,
    *,
    actor: User | str,
    action: AuditAction | str,
    entity_type: AuditEntityType | str,
    entity_id: Any,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event to the chain inside the caller's transaction (never commits).

    ``action`` and ``entity_type`` must be members of their closed vocabularies (a ValueError
    otherwise: a new action is added to :class:`~app.enums.AuditAction` first, so the API's
    filters and schema know it).

    The event holds the state of every row the session wrote (flushed here) since its
    previous event: call it after the change, as every call site does.
    """
    action, entity_type = AuditAction(action), AuditEntityType(entity_type)
    session.flush()  # the caller's changes: the rows are noted as written
    state = record_state.take_written(session)
    head = lock_chain(session)
    actor_name = actor if isinstance(actor, str) else actor.username
    actor_id = None if isinstance(actor, str) else actor.id
    event = AuditEvent(
        seq=head.seq + 1,
        occurred_at=utcnow(),
        actor=actor_name,
        actor_id=actor_id,
        action=action.value,
        entity_type=entity_type.value,
        entity_id=str(entity_id),
        reason=reason,
        before=jsonable(before) if before is not None else None,
        after=jsonable(after) if after is not None else None,
        prev_hash=head.hash,
        state=state,
        state_sha256=sha256_hex(state) if state is not None else None,
    )
    event.hash = event_hash(event)
    session.add(event)
    head.seq, head.hash = event.seq, event.hash
    session.flush()
    checkpoints.mark_due(session, event.seq)
    return event


class _Keyed(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


RowT = TypeVar("RowT", bound=_Keyed)


def record_created(
    session: Session,
    row: RowT,
    *,
    actor: User | str,
    action: AuditAction | str,
    entity_type: AuditEntityType | str,
    reason: str | None,
    after: dict[str, Any],
) -> RowT:
    """Insert ``row`` and the audit event of its creation (entity id: the row's ``id``), in the
    caller's transaction; returns the row with its id assigned."""
    session.add(row)
    session.flush()  # ids now; the caller commits
    record(
        session,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=row.id,
        reason=reason,
        after=after,
    )
    return row


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    events: int
    first_bad_seq: int | None
    problem: str | None


def verify_chain(
    session: Session,
    *,
    batch: int = 5000,
    after_seq: int = 0,
    after_hash: str = GENESIS,
    seen: Callable[[int, str], None] | None = None,
) -> ChainReport:
    """Walk the chain in sequence order from the event after ``after_seq`` (whose hash is
    ``after_hash``; by default the whole chain); report the first event that breaks it.

    Detects an edited event (its hash no longer matches its content, or its state its
    ``state_sha256``), a deleted or inserted event (a gap in ``seq`` or a ``prev_hash`` that
    does not link), and a truncated tail (the newest event does not match the head pointer).
    ``seen(seq, hash)`` is called for every event read. ``events`` counts the events read.
    """
    prev_hash, expected_seq, count, last_seq = after_hash, after_seq + 1, 0, after_seq
    for event in audit_rows.in_sequence(session, batch=batch, after_seq=after_seq):
        count += 1
        if event.seq != expected_seq:
            bad = min(event.seq, expected_seq)
            return ChainReport(False, count, bad, f"sequence gap: expected {expected_seq}")
        if event.prev_hash != prev_hash:
            return ChainReport(False, count, event.seq, "previous-hash link broken")
        if event_hash(event) != event.hash:
            return ChainReport(False, count, event.seq, "event content does not match its hash")
        if event.state_sha256 is not None and sha256_hex(event.state) != event.state_sha256:
            return ChainReport(False, count, event.seq, "event state does not match its sha256")
        if seen is not None:
            seen(event.seq, event.hash)
        prev_hash, expected_seq, last_seq = event.hash, expected_seq + 1, event.seq
    head = audit_rows.head(session)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != last_seq or head_hash != prev_hash:
        return ChainReport(False, count, last_seq + 1, "events missing after the last one read")
    return ChainReport(True, count, None, None)


def check_time_bounds(since: datetime | None, until: datetime | None) -> None:
    """Filters on server UTC times: a bound without a time zone would be ambiguous."""
    for label, bound in (("since", since), ("until", until)):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInput(f"{label} needs a time zone, e.g. 2026-11-27T10:00:00Z")


def related_entities(
    session: Session, entity_type: AuditEntityType, entity_id: str
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The entities whose events belong in a record's own trail: a transfer's or a version's
    signatures (audited as signatures, beside the record's own events)."""
    if entity_type not in (AuditEntityType.transfer, AuditEntityType.model_version):
        return ()
    try:
        record_id = uuid.UUID(entity_id)
    except ValueError:
        return ()
    signatures = signature_rows.of_entities(session, [record_id])
    return ((AuditEntityType.signature.value, tuple(str(s.id) for s in signatures)),)


def list_events(
    session: Session,
    *,
    where: audit_rows.EventFilter,
    after_seq: int | None = None,
    limit: int = 100,
) -> tuple[list[AuditEvent], int | None]:
    """One page of events in sequence order, and the cursor of the next page (or None)."""
    check_time_bounds(where.since, where.until)
    rows = audit_rows.page(session, where, after_seq=after_seq, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None
