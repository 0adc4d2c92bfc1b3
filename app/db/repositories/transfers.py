"""Queries on calibration transfers and the rows their records show.

Queries only: no commit, no business rules. The ``*_by_id`` look-ups take every id a page of
records needs and run one statement each, so reading N records costs a fixed number of
statements, not one per record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, aliased

from app.db.models import Dataset, ModelVersion, TransferRecord
from app.db.repositories._by_id import values_by_id
from app.db.repositories._locks import for_write
from app.enums import TransferStatus, VersionStatus


def _locked(stmt: Select[TransferRecord], for_update: bool) -> Select[TransferRecord]:
    if for_update:
        # populate_existing: the locked read must refresh a row already in the session.
        return for_write(stmt).execution_options(populate_existing=True)
    return stmt


def get_by_number(
    session: Session, number: int, *, for_update: bool = False
) -> TransferRecord | None:
    """The transfer with this number, or None."""
    stmt = _locked(select(TransferRecord).where(TransferRecord.number == number), for_update)
    return session.scalars(stmt).one_or_none()


def get_by_id(
    session: Session, transfer_id: uuid.UUID, *, for_update: bool = False
) -> TransferRecord | None:
    """The transfer with this UUID, or None."""
    stmt = _locked(select(TransferRecord).where(TransferRecord.id == transfer_id), for_update)
    return session.scalars(stmt).one_or_none()


def list_page(
    session: Session,
    *,
    status: TransferStatus | None = None,
    model_id: uuid.UUID | None = None,
    domain_id: uuid.UUID | None = None,
    change_control: str | None = None,
    verdict: str | None = None,
    target_status: VersionStatus | None = None,
    after: int | None = None,
    before: int | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[TransferRecord]:
    """Transfers in number order (or newest first), filtered; keyset paging by number
    (``after`` / ``before``, ``limit``).

    ``model_id`` is the source version's model; ``domain_id`` matches the source version's
    domain or the target domain; ``target_status`` is the target version's status.
    """
    source = aliased(ModelVersion)
    stmt = (
        select(TransferRecord)
        .join(source, source.id == TransferRecord.source_version_id)
        .order_by(TransferRecord.number.desc() if newest_first else TransferRecord.number)
    )
    if target_status is not None:
        target = aliased(ModelVersion)
        stmt = stmt.join(target, target.transfer_id == TransferRecord.id).where(
            target.status == target_status
        )
    if status is not None:
        stmt = stmt.where(TransferRecord.status == status)
    if change_control is not None:
        stmt = stmt.where(TransferRecord.change_control == change_control)
    if verdict is not None:
        stmt = stmt.where(TransferRecord.verdict == verdict)
    if model_id is not None:
        stmt = stmt.where(source.model_id == model_id)
    if domain_id is not None:
        stmt = stmt.where(
            or_(TransferRecord.target_domain_id == domain_id, source.domain_id == domain_id)
        )
    if after is not None:
        stmt = stmt.where(TransferRecord.number > after)
    if before is not None:
        stmt = stmt.where(TransferRecord.number < before)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def next_number(session: Session) -> int:
    """The next global transfer number (max + 1). Race-free only under the numbering lock."""
    number = session.scalar(
        select(TransferRecord.number).order_by(TransferRecord.number.desc()).limit(1)
    )
    return int(number or 0) + 1


def dataset_shas(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """sha256 by dataset id (``None`` ignored), in one statement."""
    return values_by_id(session, Dataset.id, Dataset.sha256, ids)


def from_versions(session: Session, version_ids: Iterable[uuid.UUID]) -> list[TransferRecord]:
    """Every transfer whose source is one of ``version_ids``, in number order."""
    wanted = set(version_ids)
    if not wanted:
        return []
    stmt = (
        select(TransferRecord)
        .where(TransferRecord.source_version_id.in_(wanted))
        .order_by(TransferRecord.number)
    )
    return list(session.scalars(stmt))


def target_versions(
    session: Session, transfer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, ModelVersion]:
    """The version each completed transfer created, by transfer id, in one statement."""
    wanted = set(transfer_ids)
    if not wanted:
        return {}
    stmt = select(ModelVersion).where(ModelVersion.transfer_id.in_(wanted))
    return {v.transfer_id: v for v in session.scalars(stmt) if v.transfer_id is not None}
