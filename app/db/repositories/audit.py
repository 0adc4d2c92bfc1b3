"""The audit trail and its chain head: queries and the chain lock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    Connection,
    Row,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db.models import AuditCheckpoint, AuditEvent, AuditHead

HEAD_ID = 1


def lock_head(session: Session) -> AuditHead | None:
    """The chain-head row, locked until the transaction ends (None before the first event)."""
    stmt = select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
    return session.scalars(stmt).one_or_none()


def head(session: Session) -> AuditHead | None:
    return session.get(AuditHead, HEAD_ID)


def add_event(session: Session, event: AuditEvent) -> None:
    session.add(event)


def in_sequence(session: Session, *, batch: int, after_seq: int = 0) -> Iterator[AuditEvent]:
    """Every event after ``after_seq`` in sequence order, read ``batch`` rows at a time."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.seq > after_seq)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=batch)
    )
    yield from session.scalars(stmt)


def event_hash_at(session: Session, seq: int) -> str | None:
    return session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))


def states(
    session: Session, *, batch: int, after_seq: int = 0
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(seq, state) of every event after ``after_seq`` that holds a state, in sequence order."""
    stmt = (
        select(AuditEvent.seq, AuditEvent.state)
        .where(AuditEvent.state_sha256.is_not(None), AuditEvent.seq > after_seq)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=batch)
    )
    for row in session.execute(stmt):
        yield row.seq, row.state


_ENTITY_STATES = (
    select(AuditEvent.seq, AuditEvent.state)
    .where(
        AuditEvent.entity_type == bindparam("entity_type"),
        AuditEvent.entity_id == bindparam("entity_id"),
        AuditEvent.state_sha256.is_not(None),
    )
    .order_by(AuditEvent.seq.desc())
)


def entity_states(
    connection: Connection, entity_type: str, entity_id: str
) -> list[tuple[int, dict[str, Any]]]:
    """(seq, state) of the entity's events that hold a state, newest first."""
    rows = connection.execute(_ENTITY_STATES, {"entity_type": entity_type, "entity_id": entity_id})
    return [(seq, state) for seq, state in rows]


def table_rows(session: Session, table: Table, *, batch: int) -> Iterator[Row[Any]]:
    """Every row of ``table`` (its primary key's order), ``batch`` rows at a time."""
    stmt = select(table).order_by(*table.primary_key.columns).execution_options(yield_per=batch)
    yield from session.execute(stmt)


def rows_by_id(session: Session, table: Table, ids: list[Any]) -> list[Row[Any]]:
    """The rows of ``table`` whose ``id`` is one of ``ids``."""
    return list(session.execute(select(table).where(table.c.id.in_(ids))))


def newest_event(session: Session, action: str) -> AuditEvent | None:
    """The newest event of ``action`` (the column is indexed)."""
    stmt = select(AuditEvent).where(AuditEvent.action == action)
    return session.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(1)).first()


def checkpoint_at(session: Session, seq: int, kind: str) -> AuditCheckpoint | None:
    return session.get(AuditCheckpoint, (seq, kind))


def count_rows(session: Session, table: Table) -> int:
    return int(session.scalar(select(func.count()).select_from(table)) or 0)


def newest_checkpoint(session: Session, *, kind: str | None = None) -> AuditCheckpoint | None:
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    if kind is not None:
        stmt = stmt.where(AuditCheckpoint.kind == kind)
    return session.scalars(stmt).first()


def all_checkpoints(session: Session) -> list[AuditCheckpoint]:
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.seq, AuditCheckpoint.kind)
    return list(session.scalars(stmt))


def add_checkpoint(session: Session, checkpoint: AuditCheckpoint) -> None:
    session.add(checkpoint)


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


# Core statements for the baseline, which runs inside a migration (the ORM models may be
# ahead of the schema there): only the columns given.
_EVENTS, _HEAD = cast(Table, AuditEvent.__table__), cast(Table, AuditHead.__table__)


def head_values(connection: Connection) -> tuple[int, str] | None:
    row = connection.execute(
        select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ID)
    ).one_or_none()
    return None if row is None else (row.seq, row.hash)


def rows_of(connection: Connection, table: Table, columns: list[Column[Any]]) -> Iterator[Row[Any]]:
    yield from connection.execute(select(*columns).order_by(table.c.id))


def append_events(
    connection: Connection, rows: list[dict[str, Any]], *, seq: int, hash: str, had_head: bool
) -> None:
    """Insert events and move the head to (seq, hash)."""
    connection.execute(insert(_EVENTS), rows)
    if had_head:
        connection.execute(update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=seq, hash=hash))
    else:
        connection.execute(insert(_HEAD), {"id": HEAD_ID, "seq": seq, "hash": hash})
