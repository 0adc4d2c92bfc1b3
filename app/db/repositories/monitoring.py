"""Monitoring: settings, reference results, alarms and the prediction figures they are
computed from. Queries only (the three tables are append-only at the database)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from app.db.models import (
    LifecycleEvent,
    MonitoringAlarm,
    MonitoringSettings,
    PredictionLog,
    ReferenceResult,
)
from app.enums import QUALIFIED_STATUSES


def add(session: Session, row: MonitoringSettings | ReferenceResult | MonitoringAlarm) -> None:
    """Insert an append-only row now (ids and defaults assigned; the caller commits)."""
    session.add(row)
    session.flush()


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def settings_of(session: Session, version_id: uuid.UUID) -> list[MonitoringSettings]:
    """A version's settings rows, oldest first (the last is in force)."""
    stmt = (
        select(MonitoringSettings)
        .where(MonitoringSettings.model_version_id == version_id)
        .order_by(MonitoringSettings.sequence)
    )
    return list(session.scalars(stmt))


def newest_settings(session: Session, version_id: uuid.UUID) -> MonitoringSettings | None:
    stmt = (
        select(MonitoringSettings)
        .where(MonitoringSettings.model_version_id == version_id)
        .order_by(MonitoringSettings.sequence.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def last_qualified_at(session: Session, version_id: uuid.UUID) -> datetime | None:
    """When the version last became approved or requalified (its newest such transition)."""
    stmt = select(func.max(LifecycleEvent.occurred_at)).where(
        LifecycleEvent.model_version_id == version_id,
        LifecycleEvent.to_status.in_(list(QUALIFIED_STATUSES)),
    )
    return session.scalar(stmt)


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------


def newest_revision(session: Session, log_id: uuid.UUID, row: int) -> ReferenceResult | None:
    """The reference in force for one predicted sample (its newest revision), if any."""
    stmt = (
        select(ReferenceResult)
        .where(ReferenceResult.prediction_log_id == log_id, ReferenceResult.row == row)
        .order_by(ReferenceResult.revision.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def references_of_log(session: Session, log_id: uuid.UUID) -> list[ReferenceResult]:
    """Every reference (every revision) for the samples of one call, by row and revision."""
    stmt = (
        select(ReferenceResult)
        .where(ReferenceResult.prediction_log_id == log_id)
        .order_by(ReferenceResult.row, ReferenceResult.revision)
    )
    return list(session.scalars(stmt))


def references_of_version(
    session: Session, version_id: uuid.UUID, *, since: datetime | None = None
) -> list[ReferenceResult]:
    """Every reference (every revision) for predictions of the version made at or after
    ``since``, in posting order."""
    stmt = select(ReferenceResult).where(ReferenceResult.model_version_id == version_id)
    if since is not None:
        stmt = stmt.where(ReferenceResult.predicted_at >= since)
    return list(session.scalars(stmt.order_by(ReferenceResult.posted_at, ReferenceResult.id)))


# --------------------------------------------------------------------------------------------
# the predictions' flags
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFlags:
    """One logged call's spectra and how many exceeded the T² and Q limits."""

    occurred_at: datetime
    n_spectra: int
    t2_exceeded: int
    q_exceeded: int
    flag_confidence: float | None


def call_flags(
    session: Session, version_id: uuid.UUID, *, since: datetime | None = None
) -> list[CallFlags]:
    """Every call of the version at or after ``since``, in time order: spectra and T²/Q
    exceedances (read from the log's flag counts, not its per-row results)."""
    log = PredictionLog
    stmt = select(
        log.occurred_at,
        log.n_spectra,
        log.flag_counts["t2_exceeded"].as_integer(),
        log.flag_counts["q_exceeded"].as_integer(),
        log.flag_counts["flag_confidence"].as_float(),
    ).where(log.model_version_id == version_id)
    if since is not None:
        stmt = stmt.where(log.occurred_at >= since)
    rows = session.execute(stmt.order_by(log.occurred_at, log.id))
    return [CallFlags(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0), r[4]) for r in rows]


# --------------------------------------------------------------------------------------------
# alarms
# --------------------------------------------------------------------------------------------


def alarms_of(session: Session, version_id: uuid.UUID) -> list[MonitoringAlarm]:
    """Every alarm of the version, oldest first."""
    stmt = (
        select(MonitoringAlarm)
        .where(MonitoringAlarm.model_version_id == version_id)
        .order_by(MonitoringAlarm.raised_at, MonitoringAlarm.id)
    )
    return list(session.scalars(stmt))


def alarms_of_versions(
    session: Session, version_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[MonitoringAlarm]]:
    """The alarms of several versions (one statement), oldest first."""
    out: dict[uuid.UUID, list[MonitoringAlarm]] = {v: [] for v in version_ids}
    if not version_ids:
        return out
    stmt = (
        select(MonitoringAlarm)
        .where(MonitoringAlarm.model_version_id.in_(version_ids))
        .order_by(MonitoringAlarm.raised_at, MonitoringAlarm.id)
    )
    for alarm in session.scalars(stmt):
        out[alarm.model_version_id].append(alarm)
    return out


_alarm, _event = MonitoringAlarm.__table__, LifecycleEvent.__table__
# Alarms raised since the version last became qualified: they stand until it is requalified.
# Both lookups run on their (model_version_id, time) indexes. Built once: the prediction path
# runs it (only for a version that is requalification_due).
_LAST_QUALIFIED = (
    select(func.max(_event.c.occurred_at))
    .where(
        _event.c.model_version_id == bindparam("version_id"),
        _event.c.to_status.in_([s.value for s in QUALIFIED_STATUSES]),
    )
    .scalar_subquery()
)
_OPEN_ALARMS = (
    select(_alarm.c.message)
    .where(
        _alarm.c.model_version_id == bindparam("version_id"),
        (_alarm.c.raised_at > _LAST_QUALIFIED) | _LAST_QUALIFIED.is_(None),
    )
    .order_by(_alarm.c.raised_at, _alarm.c.id)
)


def open_alarm_messages(connection: Connection, version_id: uuid.UUID) -> list[str]:
    """The messages of the alarms raised since the version was last approved or
    requalified, oldest first."""
    return list(connection.scalars(_OPEN_ALARMS, {"version_id": version_id}))
