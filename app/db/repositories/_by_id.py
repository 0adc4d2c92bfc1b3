"""Look-ups of many rows by id in one statement, for pages that show related rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.db.base import Base

RowT = TypeVar("RowT", bound=Base)


def known(ids: Iterable[uuid.UUID | None]) -> set[uuid.UUID]:
    """The distinct ids given, None left out."""
    return {i for i in ids if i is not None}


def rows_by_id(
    session: Session, model: type[RowT], ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, RowT]:
    """The rows of ``model`` (a table with a single UUID primary key) with these ids, by id;
    no statement for an empty set."""
    wanted = known(ids)
    if not wanted:
        return {}
    (key,) = inspect(model).primary_key
    rows = session.scalars(select(model).where(key.in_(wanted)))
    return {getattr(row, key.name): row for row in rows}


def values_by_id(
    session: Session,
    key: InstrumentedAttribute[uuid.UUID],
    value: InstrumentedAttribute[Any],
    ids: Iterable[uuid.UUID | None],
) -> dict[uuid.UUID, Any]:
    """``value`` of the rows whose ``key`` is one of ``ids``, by key (no statement for none)."""
    wanted = known(ids)
    if not wanted:
        return {}
    rows = session.execute(select(key, value).where(key.in_(wanted)))
    return dict(rows.all())
