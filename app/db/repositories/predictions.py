"""Queries of the prediction routes: a version's status and immutable record (by number or
through an alias), the log insert.

Queries only: no cache, no commit, no business rule. The statements are built once, on the
tables: constructing a SELECT costs more than running it on an indexed key, and Core
statements skip the ORM's per-execution work (a prediction runs them on every call).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, select

from app.db.models import (
    AliasAssignment,
    Dataset,
    Domain,
    ModelVersion,
    PredictionLog,
    SoftSensorModel,
    TransferRecord,
)
from app.enums import IntendedUse, TransferStatus, VersionStatus


@dataclass(frozen=True)
class VersionRecord:
    """The immutable part of a version: everything but its status (safe to cache by id)."""

    id: uuid.UUID
    model_id: uuid.UUID
    model: str
    version: int
    domain_id: uuid.UUID
    domain: str
    intended_use: IntendedUse
    artifact_sha256: str
    units: str
    spectral_prefix: str
    operating_range_min: float
    operating_range_max: float
    operating_range_source: str
    t2_limit_95: float
    t2_limit_99: float
    q_limit_95: float
    q_limit_99: float
    transfer_id: uuid.UUID | None
    transfer_number: int | None
    transfer_verdict: str | None  # fixed once the transfer completed, as the version is


@dataclass(frozen=True)
class VersionStatusNow:
    """A version's id and what may change at any moment: its status and review date, its
    transfer record's status."""

    version_id: uuid.UUID
    status: VersionStatus
    transfer_status: TransferStatus | None
    review_due_at: datetime | None


_mv, _model, _ds, _tr, _dom, _alias = (
    ModelVersion.__table__,
    SoftSensorModel.__table__,
    Dataset.__table__,
    TransferRecord.__table__,
    Domain.__table__,
    AliasAssignment.__table__,
)
_STATUS = (
    select(_mv.c.id, _mv.c.status, _tr.c.status, _mv.c.review_due_at)
    .select_from(
        _mv.join(_model, _model.c.id == _mv.c.model_id).outerjoin(
            _tr, _tr.c.id == _mv.c.transfer_id
        )
    )
    .where(_model.c.name == bindparam("model_name"), _mv.c.version == bindparam("version"))
)
_RECORD = (
    select(
        _mv.c.id,
        _mv.c.model_id,
        _model.c.name.label("model"),
        _mv.c.version,
        _mv.c.domain_id,
        _dom.c.name.label("domain"),
        _mv.c.intended_use,
        _mv.c.artifact_sha256,
        _model.c.units,
        _ds.c.spectral_prefix,
        _mv.c.operating_range_min,
        _mv.c.operating_range_max,
        _mv.c.operating_range_source,
        _mv.c.t2_limit_95,
        _mv.c.t2_limit_99,
        _mv.c.q_limit_95,
        _mv.c.q_limit_99,
        _mv.c.transfer_id,
        _tr.c.number.label("transfer_number"),
        _tr.c.verdict.label("transfer_verdict"),
    )
    .select_from(
        _mv.join(_model, _model.c.id == _mv.c.model_id)
        .join(_ds, _ds.c.id == _mv.c.dataset_id)
        .join(_dom, _dom.c.id == _mv.c.domain_id)
        .outerjoin(_tr, _tr.c.id == _mv.c.transfer_id)
    )
    .where(_mv.c.id == bindparam("version_id"))
)
# The alias now: its newest assignment (the unique (model_id, alias, sequence) index answers
# the max), and the version it names with that version's current statuses. A withdrawn alias
# has a row with no version (every version column NULL).
_newest = _alias.alias("newest")
_NEWEST_SEQUENCE = (
    select(func.max(_newest.c.sequence))
    .where(_newest.c.model_id == _alias.c.model_id, _newest.c.alias == _alias.c.alias)
    .scalar_subquery()
)
_ALIAS_STATUS = (
    select(_mv.c.id, _mv.c.status, _tr.c.status, _mv.c.review_due_at)
    .select_from(
        _model.join(_alias, _alias.c.model_id == _model.c.id)
        .outerjoin(_mv, _mv.c.id == _alias.c.version_id)
        .outerjoin(_tr, _tr.c.id == _mv.c.transfer_id)
    )
    .where(
        _model.c.name == bindparam("model_name"),
        _alias.c.alias == bindparam("alias"),
        _alias.c.sequence == _NEWEST_SEQUENCE,
    )
)
_INSERT_LOG = insert(cast(Table, PredictionLog.__table__))


def version_status(
    connection: Connection, *, model_name: str, version: int
) -> VersionStatusNow | None:
    """The version's id and current statuses, or None if the model or version is unknown."""
    row = connection.execute(_STATUS, {"model_name": model_name, "version": version}).one_or_none()
    if row is None:
        return None
    version_id, status, transfer_status, review_due_at = row
    return VersionStatusNow(version_id, status, transfer_status, review_due_at)


def alias_status(
    connection: Connection, *, model_name: str, alias: str
) -> VersionStatusNow | bool | None:
    """The version the alias names now, with its current statuses; False when the alias was
    withdrawn (it names no version); None when the model or the alias is unknown."""
    row = connection.execute(
        _ALIAS_STATUS, {"model_name": model_name, "alias": alias}
    ).one_or_none()
    if row is None:
        return None
    version_id, status, transfer_status, review_due_at = row
    if version_id is None:
        return False
    return VersionStatusNow(version_id, status, transfer_status, review_due_at)


def version_record(connection: Connection, version_id: uuid.UUID) -> VersionRecord:
    """The immutable record of an existing version (the spectral prefix is its dataset's)."""
    row = connection.execute(_RECORD, {"version_id": version_id}).one()
    return VersionRecord(**row._mapping)


def insert_prediction_log(connection: Connection, values: dict[str, Any]) -> None:
    """One prediction-log row, executed now in the connection's transaction (a plain INSERT:
    no unit of work to flush)."""
    connection.execute(_INSERT_LOG, values)


_VERSION_ROW = select(_mv).where(_mv.c.id == bindparam("version_id"))


def version_row(connection: Connection, version_id: uuid.UUID) -> Any:
    """The version's row, every column (``row._mapping`` keyed by the table's columns)."""
    return connection.execute(_VERSION_ROW, {"version_id": version_id}).one()
