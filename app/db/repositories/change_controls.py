"""Queries on change-control references: which rows carry one, and the rows under one.

A reference is carried by ``transfer.change_control`` and by the optional ``change_control``
of signatures, lifecycle events, alias moves and domain events. Queries only: no commit, no
business rules; each function runs one statement (none for an empty id set).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from app.db.base import UTCDateTime
from app.db.models import (
    AliasAssignment,
    AuditCheckpoint,
    AuditEvent,
    DomainEvent,
    LifecycleEvent,
    Signature,
    TransferRecord,
)
from app.enums import SignedEntity

# The kinds of row that carry a reference, as counted in a summary.
KINDS = ("transfers", "signatures", "lifecycle_events", "alias_moves", "domain_events")


@dataclass(frozen=True)
class ReferenceSummary:
    """One reference in use: rows per kind and the first and last server time among them."""

    ref: str
    counts: dict[str, int]
    first_at: datetime
    last_at: datetime


def _uses() -> Subquery:
    """One row per use of a reference: (ref, kind, first time, last time)."""
    t = TransferRecord
    # A transfer's activity runs from its opening to its completion or cancellation.
    transfer_last = func.coalesce(t.completed_at, t.cancelled_at, t.created_at)
    parts = [
        select(
            t.change_control.label("ref"),
            literal("transfers").label("kind"),
            t.created_at.label("first_at"),
            transfer_last.label("last_at"),
        ),
        select(
            Signature.change_control,
            literal("signatures"),
            Signature.signed_at,
            Signature.signed_at,
        ).where(Signature.change_control.is_not(None)),
        select(
            LifecycleEvent.change_control,
            literal("lifecycle_events"),
            LifecycleEvent.occurred_at,
            LifecycleEvent.occurred_at,
        ).where(LifecycleEvent.change_control.is_not(None)),
        select(
            AliasAssignment.change_control,
            literal("alias_moves"),
            AliasAssignment.assigned_at,
            AliasAssignment.assigned_at,
        ),
        select(
            DomainEvent.change_control,
            literal("domain_events"),
            DomainEvent.recorded_at,  # server time (occurred_at is as reported)
            DomainEvent.recorded_at,
        ).where(DomainEvent.change_control.is_not(None)),
    ]
    return union_all(*parts).subquery("uses")


def summaries(
    session: Session, *, before: tuple[datetime, str] | None, limit: int
) -> list[ReferenceSummary]:
    """References in use, most recent activity first (ties: by reference), ``limit`` of them.

    ``before`` is the (last activity, reference) of the previous page's last row: the page
    continues strictly after it in this order (keyset paging).
    """
    uses = _uses()
    first_at = type_coerce(func.min(uses.c.first_at), UTCDateTime())
    last_at = type_coerce(func.max(uses.c.last_at), UTCDateTime())
    counts = [func.sum(case((uses.c.kind == kind, 1), else_=0)).label(kind) for kind in KINDS]
    stmt = (
        select(uses.c.ref, first_at.label("first_at"), last_at.label("last_at"), *counts)
        .group_by(uses.c.ref)
        .order_by(last_at.desc(), uses.c.ref)
        .limit(limit)
    )
    if before is not None:
        at, ref = before
        at_param = literal(at, UTCDateTime())
        stmt = stmt.having(or_(last_at < at_param, and_(last_at == at_param, uses.c.ref > ref)))
    return [
        ReferenceSummary(
            ref=row.ref,
            counts={kind: int(getattr(row, kind) or 0) for kind in KINDS},
            first_at=row.first_at,
            last_at=row.last_at,
        )
        for row in session.execute(stmt)
    ]


def transfers_under(session: Session, ref: str) -> list[TransferRecord]:
    stmt = (
        select(TransferRecord)
        .where(TransferRecord.change_control == ref)
        .order_by(TransferRecord.number)
    )
    return list(session.scalars(stmt))


def signatures_of(
    session: Session,
    *,
    ref: str,
    transfer_ids: Iterable[uuid.UUID],
    version_ids: Iterable[uuid.UUID],
) -> list[Signature]:
    """Signatures carrying ``ref`` or bound to one of the records, in signing order."""
    condition: ColumnElement[bool] = Signature.change_control == ref
    for entity, ids in (
        (SignedEntity.transfer, set(transfer_ids)),
        (SignedEntity.model_version, set(version_ids)),
    ):
        if ids:
            condition = or_(
                condition, and_(Signature.entity_type == entity, Signature.entity_id.in_(ids))
            )
    stmt = select(Signature).where(condition).order_by(Signature.signed_at, Signature.id)
    return list(session.scalars(stmt))


def lifecycle_events_of(
    session: Session, *, ref: str, version_ids: Iterable[uuid.UUID]
) -> list[LifecycleEvent]:
    """Lifecycle events carrying ``ref`` or of one of the versions, in time order."""
    condition: ColumnElement[bool] = LifecycleEvent.change_control == ref
    ids = set(version_ids)
    if ids:
        condition = or_(condition, LifecycleEvent.model_version_id.in_(ids))
    stmt = (
        select(LifecycleEvent)
        .where(condition)
        .order_by(LifecycleEvent.occurred_at, LifecycleEvent.id)
    )
    return list(session.scalars(stmt))


def alias_moves_under(session: Session, ref: str) -> list[AliasAssignment]:
    stmt = (
        select(AliasAssignment)
        .where(AliasAssignment.change_control == ref)
        .order_by(AliasAssignment.assigned_at, AliasAssignment.sequence, AliasAssignment.id)
    )
    return list(session.scalars(stmt))


def domain_events_of(
    session: Session, *, ref: str, ids: Iterable[uuid.UUID | None]
) -> list[DomainEvent]:
    """Domain events carrying ``ref`` or with one of ``ids``, in the order they were recorded."""
    condition: ColumnElement[bool] = DomainEvent.change_control == ref
    wanted = {i for i in ids if i is not None}
    if wanted:
        condition = or_(condition, DomainEvent.id.in_(wanted))
    stmt = select(DomainEvent).where(condition).order_by(DomainEvent.recorded_at, DomainEvent.id)
    return list(session.scalars(stmt))


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def audit_events_of(
    session: Session,
    *,
    entities: Iterable[tuple[str, str]],
    mentioning: str | None = None,
) -> list[AuditEvent]:
    """Audit events about one of ``entities`` ((entity_type, entity_id) pairs), or whose
    ``reason`` or ``after`` text contains ``mentioning``, in sequence order.

    The text match is a scan of the audit table (no index can serve a substring): candidates
    only — the caller checks that the reference really is a value there.
    """
    by_type: dict[str, set[str]] = {}
    for entity_type, entity_id in entities:
        by_type.setdefault(entity_type, set()).add(entity_id)
    conditions: list[ColumnElement[bool]] = [
        and_(AuditEvent.entity_type == entity_type, AuditEvent.entity_id.in_(ids))
        for entity_type, ids in sorted(by_type.items())
    ]
    if mentioning is not None:
        pattern = f"%{_like_escaped(mentioning)}%"
        conditions.append(AuditEvent.reason.like(pattern, escape="\\"))
        conditions.append(cast(AuditEvent.after, String).like(pattern, escape="\\"))
    if not conditions:
        return []
    stmt = select(AuditEvent).where(or_(*conditions)).order_by(AuditEvent.seq)
    return list(session.scalars(stmt))


def audit_segment(session: Session, *, first_seq: int, last_seq: int) -> list[AuditEvent]:
    """The contiguous run of events ``first_seq`` .. ``last_seq`` (inclusive), in order."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.seq >= first_seq, AuditEvent.seq <= last_seq)
        .order_by(AuditEvent.seq)
    )
    return list(session.scalars(stmt))


def first_checkpoint_from(session: Session, seq: int) -> int | None:
    """The seq of the first signed checkpoint at or after ``seq`` (None: none yet)."""
    stmt = select(func.min(AuditCheckpoint.seq)).where(AuditCheckpoint.seq >= seq)
    return session.scalar(stmt)


def checkpoints_within(session: Session, *, first_seq: int, last_seq: int) -> list[AuditCheckpoint]:
    stmt = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.seq >= first_seq, AuditCheckpoint.seq <= last_seq)
        .order_by(AuditCheckpoint.seq, AuditCheckpoint.kind)
    )
    return list(session.scalars(stmt))
