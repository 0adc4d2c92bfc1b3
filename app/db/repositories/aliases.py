"""Alias assignments (append-only): the newest per alias, the history, the current aliases of
versions. Queries only."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from app.db.models import AliasAssignment

_a = AliasAssignment


def newest(session: Session, model_id: uuid.UUID, alias: str) -> AliasAssignment | None:
    """The alias's newest assignment (its state now), or None if it was never assigned."""
    stmt = (
        select(_a)
        .where(_a.model_id == model_id, _a.alias == alias)
        .order_by(_a.sequence.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def moves(session: Session, model_id: uuid.UUID, alias: str) -> list[AliasAssignment]:
    """Every assignment of the alias, oldest first."""
    stmt = select(_a).where(_a.model_id == model_id, _a.alias == alias).order_by(_a.sequence)
    return list(session.scalars(stmt))


def newest_of_model(session: Session, model_id: uuid.UUID) -> list[AliasAssignment]:
    """The newest assignment of each alias of the model, by alias name (one query)."""
    b = aliased(AliasAssignment)
    newest_seq = (
        select(b.alias, func.max(b.sequence).label("sequence"))
        .where(b.model_id == model_id)
        .group_by(b.alias)
        .subquery()
    )
    stmt = (
        select(_a)
        .join(
            newest_seq, and_(_a.alias == newest_seq.c.alias, _a.sequence == newest_seq.c.sequence)
        )
        .where(_a.model_id == model_id)
        .order_by(_a.alias)
    )
    return list(session.scalars(stmt))


def current_by_version(
    session: Session, version_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """The aliases whose newest assignment names each version, by version id (one query)."""
    wanted = set(version_ids)
    if not wanted:
        return {}
    b = aliased(AliasAssignment)
    newest_seq = (
        select(func.max(b.sequence))
        .where(b.model_id == _a.model_id, b.alias == _a.alias)
        .scalar_subquery()
    )
    stmt = (
        select(_a.version_id, _a.alias)
        .where(_a.version_id.in_(wanted), _a.sequence == newest_seq)
        .order_by(_a.alias)
    )
    out: dict[uuid.UUID, list[str]] = defaultdict(list)
    for version_id, alias in session.execute(stmt):
        if version_id is not None:
            out[version_id].append(alias)
    return dict(out)


def add(session: Session, row: AliasAssignment) -> None:
    session.add(row)
