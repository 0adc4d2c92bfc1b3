"""Queries of the prediction route: a version's status and immutable record, the log insert.

Queries only: no cache, no commit, no business rule. The statements are built once, on the
tables: constructing a SELECT costs more than running it on an indexed key, and Core
statements skip the ORM's per-execution work (a prediction runs them on every call).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select

from app.db.models import Dataset, ModelVersion, PredictionLog, SoftSensorModel, TransferRecord
from app.enums import TransferStatus, VersionStatus


@dataclass(frozen=True)
class VersionRecord:
    """The immutable part of a version: everything but its status (safe to cache by id)."""

    id: uuid.UUID
    model: str
    version: int
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
    """A version's id and what may change at any moment: its status, its review date, its
    transfer record's status."""

    version_id: uuid.UUID
    status: VersionStatus
    transfer_status: TransferStatus | None
    review_due_at: datetime | None


_mv, _model, _ds, _tr = (
    ModelVersion.__table__,
    SoftSensorModel.__table__,
    Dataset.__table__,
    TransferRecord.__table__,
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
        _model.c.name.label("model"),
        _mv.c.version,
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
        .outerjoin(_tr, _tr.c.id == _mv.c.transfer_id)
    )
    .where(_mv.c.id == bindparam("version_id"))
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


def version_record(connection: Connection, version_id: uuid.UUID) -> VersionRecord:
    """The immutable record of an existing version (the spectral prefix is its dataset's)."""
    row = connection.execute(_RECORD, {"version_id": version_id}).one()
    return VersionRecord(**row._mapping)


def insert_prediction_log(connection: Connection, values: dict[str, Any]) -> None:
    """One prediction-log row, executed now in the connection's transaction (a plain INSERT:
    no unit of work to flush)."""
    connection.execute(_INSERT_LOG, values)
