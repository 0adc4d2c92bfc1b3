"""Signatures, lifecycle events and domain events: queries only (all three tables are
append-only at the database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import DomainEvent, LifecycleEvent, ModelVersion, Signature
from app.db.repositories._by_id import known, rows_by_id
from app.db.repositories._locks import for_write
from app.enums import VersionStatus


def add(session: Session, row: Signature | LifecycleEvent | DomainEvent) -> None:
    """Insert an append-only row now (ids and defaults assigned; the caller commits)."""
    session.add(row)
    session.flush()


def of_entities(session: Session, entity_ids: Iterable[uuid.UUID | None]) -> list[Signature]:
    """Every signature on any of these records (transfers or versions: UUIDs do not collide),
    oldest first, in one statement (none for an empty set)."""
    wanted = known(entity_ids)
    if not wanted:
        return []
    stmt = (
        select(Signature)
        .where(Signature.entity_id.in_(wanted))
        .order_by(Signature.signed_at, Signature.id)
    )
    return list(session.scalars(stmt))


def by_ids(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, Signature]:
    return rows_by_id(session, Signature, ids)


def lifecycle_of(session: Session, version_id: uuid.UUID) -> list[LifecycleEvent]:
    """A version's transitions, oldest first."""
    stmt = (
        select(LifecycleEvent)
        .where(LifecycleEvent.model_version_id == version_id)
        .order_by(LifecycleEvent.occurred_at, LifecycleEvent.id)
    )
    return list(session.scalars(stmt))


def lifecycle_by_domain_events(
    session: Session, event_ids: Iterable[uuid.UUID]
) -> list[LifecycleEvent]:
    """The transitions caused by these domain events (one statement)."""
    wanted = known(event_ids)
    if not wanted:
        return []
    stmt = (
        select(LifecycleEvent)
        .where(LifecycleEvent.domain_event_id.in_(wanted))
        .order_by(LifecycleEvent.occurred_at, LifecycleEvent.id)
    )
    return list(session.scalars(stmt))


def domain_events_of(session: Session, domain_id: uuid.UUID) -> list[DomainEvent]:
    """A domain's events, in the order they were recorded."""
    stmt = (
        select(DomainEvent)
        .where(DomainEvent.domain_id == domain_id)
        .order_by(DomainEvent.recorded_at, DomainEvent.id)
    )
    return list(session.scalars(stmt))


def lock_version(session: Session, version_id: uuid.UUID) -> ModelVersion:
    """The version row, locked to the end of the transaction and refreshed (its status is
    read under the lock)."""
    stmt = for_write(select(ModelVersion).where(ModelVersion.id == version_id))
    return session.scalars(stmt.execution_options(populate_existing=True)).one()


def lock_versions_in_domain(
    session: Session, domain_id: uuid.UUID, statuses: Iterable[VersionStatus]
) -> list[ModelVersion]:
    """The versions reading ``domain_id`` whose status is one of ``statuses``, locked, in a
    stable order (model, version)."""
    stmt = for_write(
        select(ModelVersion)
        .where(ModelVersion.domain_id == domain_id, ModelVersion.status.in_(list(statuses)))
        .order_by(ModelVersion.model_id, ModelVersion.version)
    ).execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def lock_versions_past_review(
    session: Session, statuses: Iterable[VersionStatus], now: datetime
) -> list[ModelVersion]:
    """Versions in ``statuses`` whose review date is at or before ``now``, locked."""
    stmt = for_write(
        select(ModelVersion)
        .where(
            ModelVersion.status.in_(list(statuses)),
            ModelVersion.review_due_at.is_not(None),
            ModelVersion.review_due_at <= now,
        )
        .order_by(ModelVersion.model_id, ModelVersion.version)
    ).execution_options(populate_existing=True)
    return list(session.scalars(stmt))
