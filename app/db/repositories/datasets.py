"""Datasets: queries only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, joinedload

from app.db.models import Dataset
from app.db.repositories._by_id import rows_by_id


def by_sha256(session: Session, digest: str, *, with_domain: bool = False) -> Dataset | None:
    stmt = select(Dataset).where(Dataset.sha256 == digest)
    if with_domain:
        stmt = stmt.options(joinedload(Dataset.domain))
    return session.scalars(stmt).one_or_none()


def by_id(session: Session, dataset_id: uuid.UUID) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def by_ids(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, Dataset]:
    """Datasets by id for every id given (one query; none for an empty set)."""
    return rows_by_id(session, Dataset, ids)


def in_registration_order(
    session: Session,
    *,
    domain_id: uuid.UUID | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int | None = None,
) -> list[Dataset]:
    """Datasets ordered by (created_at, id), those after the keyset ``after``."""
    stmt = select(Dataset).order_by(Dataset.created_at, Dataset.id)
    if domain_id is not None:
        stmt = stmt.where(Dataset.domain_id == domain_id)
    if after is not None:
        stmt = stmt.where(tuple_(Dataset.created_at, Dataset.id) > tuple_(*after))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def referenced_digests(session: Session) -> set[str]:
    """The sha256 of every dataset's stored bytes."""
    return set(session.scalars(select(Dataset.sha256)))
