"""The prediction log as reviewers read it: filtered pages in time order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, defer

from app.db.models import ModelVersion, PredictionLog, SoftSensorModel, TransferRecord


@dataclass(frozen=True)
class LogFilter:
    """Conditions on log rows; None matches everything. ``until`` is exclusive."""

    model_id: uuid.UUID | None = None
    version_id: uuid.UUID | None = None
    transfer_id: uuid.UUID | None = None
    caller: str | None = None
    flagged: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class LogRow:
    """A log row with the names a reader needs beside it."""

    row: PredictionLog
    model: str
    version: int
    transfer_number: int | None


def page(
    session: Session,
    where: LogFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[LogRow]:
    """Up to ``limit`` rows matching ``where`` in (occurred_at, id) order, after the keyset
    ``after``; one statement, joined with the model, the version and the transfer."""
    log, mv, m, tr = PredictionLog, ModelVersion, SoftSensorModel, TransferRecord
    stmt = (
        select(log, m.name, mv.version, tr.number)
        .join(mv, mv.id == log.model_version_id)
        .join(m, m.id == mv.model_id)
        .outerjoin(tr, tr.id == log.transfer_id)
        .options(defer(log.results, raiseload=True))  # per-row content: GET /{id} only
        .order_by(log.occurred_at, log.id)
    )
    if where.model_id is not None:
        stmt = stmt.where(m.id == where.model_id)
    if where.version_id is not None:
        stmt = stmt.where(mv.id == where.version_id)
    if where.transfer_id is not None:
        stmt = stmt.where(log.transfer_id == where.transfer_id)
    if where.caller is not None:
        stmt = stmt.where(log.caller == where.caller)
    if where.flagged is not None:
        any_flag = log.flag_counts["any_flag"].as_integer()
        stmt = stmt.where(any_flag > 0 if where.flagged else any_flag == 0)
    if where.since is not None:
        stmt = stmt.where(log.occurred_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(log.occurred_at < where.until)
    if after is not None:
        stmt = stmt.where(tuple_(log.occurred_at, log.id) > tuple_(*after))
    return [LogRow(r[0], r[1], r[2], r[3]) for r in session.execute(stmt.limit(limit))]


def by_id(session: Session, log_id: uuid.UUID) -> LogRow | None:
    """One log row with its results and the names beside it."""
    log, mv, m, tr = PredictionLog, ModelVersion, SoftSensorModel, TransferRecord
    stmt = (
        select(log, m.name, mv.version, tr.number)
        .join(mv, mv.id == log.model_version_id)
        .join(m, m.id == mv.model_id)
        .outerjoin(tr, tr.id == log.transfer_id)
        .where(log.id == log_id)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else LogRow(row[0], row[1], row[2], row[3])
