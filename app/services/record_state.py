"""The state of record rows as the audit trail holds it, and the rows an event's transaction
wrote.

Every row the ORM inserts or updates in a session is noted at flush; the next
:func:`app.services.audit.record` in that session takes the rows noted since the previous one
and stores their state, as they are after the change, in its event (``state``, inside the
hashed fields). So the call sites of ``audit.record`` do not name the rows they changed, and
a table added later is covered as soon as its rows are written through the ORM and audited.
The reconciliation (:mod:`app.services.reconcile`) compares each row now with the state of
the newest event that holds it.

A row's state is ``{column: value}`` for every column of its table: plain JSON values under
the canonical rules (:mod:`app.services.canonical`), except a value whose canonical JSON is
longer than :data:`INLINE_LIMIT` bytes (a dataset's axis, a version's metrics) and the
secrets of :data:`SECRET_COLUMNS`, stored as ``{"sha256": <hex of its canonical JSON>}``:
the audit trail, which auditors read, never holds a password hash, and stays small.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Boolean, Column, Float, Integer, Table, event, inspect
from sqlalchemy.orm import Session

from app.db.base import Base
from app.services.canonical import canonical_json, plain

INLINE_LIMIT = 200
SECRET_COLUMNS = {
    "app_user": frozenset({"password_hash", "api_key_hash"}),
    "access_token": frozenset({"token_hash"}),
}
# The audit trail's own tables (verified as a chain and by signed checkpoints) and the
# prediction log, whose rows are not audited one by one (a prediction changes no record): its
# rows are append-only in the database and counted by the signed seals.
UNTRACKED = frozenset({"audit_event", "audit_head", "audit_checkpoint", "prediction_log"})
# The entity type of the events about a table's rows (baseline events use it; rows of the
# other tables are baselined as entity ``record`` with id ``<table>:<id>``).
ENTITY_OF_TABLE = {
    "app_user": "user",
    "domain": "domain",
    "dataset": "dataset",
    "soft_sensor_model": "model",
    "model_version": "model_version",
    "transfer": "transfer",
    "signature": "signature",
    "domain_event": "domain_event",
}

_TRACKED = "record_state_tracked"


def reconciled_tables() -> list[Table]:
    """Every record table whose rows carry an audited state, in dependency order."""
    return [t for t in Base.metadata.sorted_tables if t.name not in UNTRACKED]


def row_key(table: str, row_id: Any) -> str:
    return f"{table}:{row_id}"


def _value(table: str, column: Column[Any], value: Any) -> Any:
    if value is not None:
        if isinstance(column.type, Float):
            value = float(value)
        elif isinstance(column.type, Boolean):
            value = bool(value)
        elif isinstance(column.type, Integer):
            value = int(value)
    secret = column.name in SECRET_COLUMNS.get(table, ())
    if not secret and _short(value):
        return plain(value)  # its canonical JSON is inline: no need to serialise it to know
    blob = _canonical(value)
    if len(blob) > INLINE_LIMIT or secret:
        return {"sha256": hashlib.sha256(blob).hexdigest()}
    return plain(value)


# At most 6 bytes of JSON per character (``\u00xx``), 2 for the quotes.
_SHORT_TEXT = (INLINE_LIMIT - 2) // 6
_SHORT_TYPES = (type(None), bool, float, uuid.UUID, datetime)


def _short(value: Any) -> bool:
    """Whether ``value``'s canonical JSON is surely within :data:`INLINE_LIMIT` bytes, told
    without serialising it (most columns: the reconciliation reads every row)."""
    if isinstance(value, str):
        return len(value) <= _SHORT_TEXT
    if isinstance(value, int):
        return -(10**18) < value < 10**18
    return isinstance(value, _SHORT_TYPES)


def _canonical(value: Any) -> bytes:
    """:func:`canonical_json`, faster for what a JSON column holds (plain JSON already):
    ``json.dumps`` with the same options gives the same bytes for every value it accepts;
    the rest (NaN, UUIDs, times, numpy scalars) goes the canonical way."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError):
        return canonical_json(value)


def state_of(
    table: Table,
    get: Callable[[Column[Any]], Any],
    columns: Iterable[Column[Any]] | None = None,
) -> dict[str, Any]:
    """A row's state; ``get(column)`` reads one of its values (an ORM attribute or a column
    of a Core row: both give the column type's Python value). ``columns``: only these (a
    migration's view of a table that has not yet every column of the models)."""
    return {c.name: _value(table.name, c, get(c)) for c in (columns or table.columns)}


def orm_state(obj: Any) -> tuple[str, dict[str, Any]]:
    """The key and state of an ORM row as it is in its session."""
    table = cast(Table, obj.__table__)
    mapper = inspect(type(obj))
    keys = {c: mapper.get_property_by_column(c).key for c in table.columns}
    state = state_of(table, lambda c: getattr(obj, keys[c]))
    return row_key(table.name, state["id"]), state


def mapping_state(
    table: Table, row: Mapping[Any, Any], columns: Iterable[Column[Any]] | None = None
) -> tuple[str, dict[str, Any]]:
    """The key and state of a Core row of ``select(table)`` (``row._mapping``)."""
    state = state_of(table, lambda c: row[c], columns)
    return row_key(table.name, state["id"]), state


def differing_fields(audited: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The columns whose value differs. A column the audited state lacks (added to the table
    after the row's last audited change) is not compared: it is covered from the row's next
    audited change, or by a baseline its migration records."""
    return sorted(name for name in audited if current.get(name, _ABSENT) != audited[name])


_ABSENT = object()


# --------------------------------------------------------------------------------------------
# The rows a session wrote since its last audit event
# --------------------------------------------------------------------------------------------


@event.listens_for(Session, "after_flush")
def _note_written_rows(session: Session, _flush_context: Any) -> None:
    tracked: dict[tuple[str, Any], Any] = session.info.setdefault(_TRACKED, {})
    for obj in (*session.new, *session.dirty):
        table = getattr(obj, "__table__", None)
        if table is None or table.name in UNTRACKED:
            continue
        tracked[(table.name, obj.id)] = obj


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_written_rows(session: Session) -> None:
    if not session.in_nested_transaction():  # the outermost ended, not a savepoint
        session.info.pop(_TRACKED, None)


def take_written(session: Session) -> dict[str, dict[str, Any]] | None:
    """The state of every row written (and flushed) in ``session`` since the last call, now;
    None when there is none. Rows rolled back since (a savepoint) are left out."""
    tracked: dict[tuple[str, Any], Any] = session.info.pop(_TRACKED, {})
    states = dict(orm_state(obj) for obj in _persistent(tracked.values()))
    return states or None


def _persistent(objects: Iterable[Any]) -> Iterable[Any]:
    for obj in objects:
        if inspect(obj).persistent:
            yield obj


def entity_of(key: str) -> tuple[str, str, str]:
    """(table, entity type, entity id) of a row key."""
    table, _, row_id = key.partition(":")
    entity_type = ENTITY_OF_TABLE.get(table)
    if entity_type is None:
        return table, "record", key
    return table, entity_type, row_id


def parse_id(row_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(row_id)
    except ValueError:
        return None
