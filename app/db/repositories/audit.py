"""The audit trail and its chain head: queries and the chain lock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, AuditHead

HEAD_ID = 1


def lock_head(session: Session) -> AuditHead | None:
    """The chain-head row, locked until the transaction ends (None before the first event)."""
    stmt = select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
    return session.scalars(stmt).one_or_none()


def head(session: Session) -> AuditHead | None:
    return session.get(AuditHead, HEAD_ID)


def add_event(session: Session, event: AuditEvent) -> None:
    session.add(event)


def in_sequence(session: Session, *, batch: int) -> Iterator[AuditEvent]:
    """Every event in sequence order, read ``batch`` rows at a time."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch)
    yield from session.scalars(stmt)


@dataclass(frozen=True)
class EventFilter:
    """Conditions on events; None matches everything. ``until`` is exclusive."""

    entity_type: str | None = None
    entity_ids: tuple[str, ...] | None = None
    # Events of other entities that belong to the same record (its signatures, say), matched
    # as well as, not instead of, the entity above: ((entity type, ids), ...).
    related: tuple[tuple[str, tuple[str, ...]], ...] = ()
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def page(
    session: Session, where: EventFilter, *, after_seq: int | None, limit: int
) -> list[AuditEvent]:
    """Up to ``limit`` events matching ``where`` in sequence order, after ``after_seq``."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq)
    entity = []
    if where.entity_type is not None:
        entity.append(AuditEvent.entity_type == where.entity_type)
    if where.entity_ids is not None:
        entity.append(AuditEvent.entity_id.in_(where.entity_ids))
    if where.related:
        alternatives = [
            and_(AuditEvent.entity_type == kind, AuditEvent.entity_id.in_(ids))
            for kind, ids in where.related
            if ids
        ]
        stmt = stmt.where(or_(and_(*entity), *alternatives))
    elif entity:
        stmt = stmt.where(*entity)
    if where.actor is not None:
        stmt = stmt.where(AuditEvent.actor == where.actor)
    if where.action is not None:
        stmt = stmt.where(AuditEvent.action == where.action)
    if where.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < where.until)
    if after_seq is not None:
        stmt = stmt.where(AuditEvent.seq > after_seq)
    return list(session.scalars(stmt.limit(limit)))
