"""Look-ups of many rows by id in one statement, for pages that show related rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

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
