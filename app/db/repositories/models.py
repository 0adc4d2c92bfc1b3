"""Soft-sensor models and their versions: queries and the numbering lock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ModelVersion, SoftSensorModel, TransferRecord
from app.db.repositories._by_id import rows_by_id
from app.db.repositories._locks import for_write
from app.enums import VersionStatus


def model_by_name(
    session: Session, name: str, *, for_update: bool = False
) -> SoftSensorModel | None:
    """The model; ``for_update`` takes its row lock, which every writer of its versions takes
    first (numbering) and holds to the end of the transaction."""
    stmt = select(SoftSensorModel).where(SoftSensorModel.name == name)
    if for_update:
        stmt = for_write(stmt)
    return session.scalars(stmt).one_or_none()


def model_by_id(session: Session, model_id: uuid.UUID) -> SoftSensorModel | None:
    return session.get(SoftSensorModel, model_id)


def models_by_ids(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, SoftSensorModel]:
    return rows_by_id(session, SoftSensorModel, ids)


def models_by_name(
    session: Session,
    *,
    after: str | None = None,
    limit: int | None = None,
    model_ids: Iterable[uuid.UUID] | None = None,
    version_domain_ids: Iterable[uuid.UUID] | None = None,
) -> list[SoftSensorModel]:
    """Models in name order, those named after ``after`` (keyset on the unique name);
    ``model_ids``: only those; ``version_domain_ids``: only models with a version reading
    one of those domains."""
    stmt = select(SoftSensorModel).order_by(SoftSensorModel.name)
    if after is not None:
        stmt = stmt.where(SoftSensorModel.name > after)
    if model_ids is not None:
        stmt = stmt.where(SoftSensorModel.id.in_(set(model_ids)))
    if version_domain_ids is not None:
        with_versions = select(ModelVersion.model_id).where(
            ModelVersion.domain_id.in_(set(version_domain_ids))
        )
        stmt = stmt.where(SoftSensorModel.id.in_(with_versions))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def latest_version_numbers(
    session: Session, model_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The highest version number of each model that has versions (one query)."""
    wanted = set(model_ids)
    if not wanted:
        return {}
    stmt = (
        select(ModelVersion.model_id, func.max(ModelVersion.version))
        .where(ModelVersion.model_id.in_(wanted))
        .group_by(ModelVersion.model_id)
    )
    return {model_id: int(number) for model_id, number in session.execute(stmt)}


def version(session: Session, model_id: uuid.UUID, number: int) -> ModelVersion | None:
    stmt = select(ModelVersion).where(
        ModelVersion.model_id == model_id, ModelVersion.version == number
    )
    return session.scalars(stmt).one_or_none()


def version_by_id(session: Session, version_id: uuid.UUID) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def versions_by_ids(
    session: Session, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, ModelVersion]:
    return rows_by_id(session, ModelVersion, ids)


def versions_of(
    session: Session,
    model_id: uuid.UUID,
    *,
    after: int | None = None,
    limit: int | None = None,
    domain_ids: Iterable[uuid.UUID] | None = None,
) -> list[ModelVersion]:
    """The model's versions in number order, those numbered above ``after``; ``domain_ids``:
    only versions reading one of those domains."""
    stmt = (
        select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.version)
    )
    if after is not None:
        stmt = stmt.where(ModelVersion.version > after)
    if domain_ids is not None:
        stmt = stmt.where(ModelVersion.domain_id.in_(set(domain_ids)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def versions_in_status(
    session: Session, statuses: Iterable[VersionStatus], *, limit: int
) -> list[ModelVersion]:
    """The newest ``limit`` versions of any model whose status is one of ``statuses``."""
    stmt = (
        select(ModelVersion)
        .where(ModelVersion.status.in_(list(statuses)))
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def next_version_number(session: Session, model_id: uuid.UUID) -> int:
    """max + 1 (1 for the first). Race-free only under the model row lock
    (:func:`model_by_name` with ``for_update``) held to the end of the transaction."""
    number = session.scalar(
        select(func.coalesce(func.max(ModelVersion.version), 0) + 1).where(
            ModelVersion.model_id == model_id
        )
    )
    return int(number or 1)


def transfers_by_ids(
    session: Session, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, TransferRecord]:
    """Transfer records by id (one query; none for an empty set)."""
    return rows_by_id(session, TransferRecord, ids)


def referenced_digests(session: Session) -> set[str]:
    """The sha256 of every version's and every completed transfer's artifact."""
    digests = set(session.scalars(select(ModelVersion.artifact_sha256)))
    digests |= set(
        session.scalars(
            select(TransferRecord.artifact_sha256).where(
                TransferRecord.artifact_sha256.is_not(None)
            )
        )
    )
    return digests


def models_with_versions_in(
    session: Session, model_ids: Iterable[uuid.UUID], domain_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``model_ids`` that have a version reading one of ``domain_ids`` (one query)."""
    models, domains = set(model_ids), set(domain_ids)
    if not models or not domains:
        return set()
    stmt = (
        select(ModelVersion.model_id)
        .where(ModelVersion.model_id.in_(models), ModelVersion.domain_id.in_(domains))
        .distinct()
    )
    return set(session.scalars(stmt))
