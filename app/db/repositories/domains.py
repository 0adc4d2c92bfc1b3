"""Measurement domains: queries only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Domain
from app.db.repositories._by_id import rows_by_id


def by_name(session: Session, name: str) -> Domain | None:
    return session.scalars(select(Domain).where(Domain.name == name)).one_or_none()


def name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(Domain.id).where(Domain.name == name)) is not None


def by_name_page(
    session: Session, *, after: str | None = None, limit: int | None = None
) -> list[Domain]:
    """Domains in name order, those named after ``after`` (keyset on the unique name)."""
    stmt = select(Domain).order_by(Domain.name)
    if after is not None:
        stmt = stmt.where(Domain.name > after)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def by_ids(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Domain]:
    """Domains by id for every id given (one query; none for an empty set)."""
    return rows_by_id(session, Domain, ids)
