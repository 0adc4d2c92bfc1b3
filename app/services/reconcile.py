"""Reconciliation: every record row now against its last audited state.

The audit chain proves the events were not changed; this proves the records were not changed
behind the events. For every table of :func:`~app.services.record_state.reconciled_tables`
it reads every row, takes the newest event whose ``state`` holds the row, and reports

- ``changed``: the row differs from that state (each differing column, audited → now);
- ``unaudited``: no event holds the row (inserted behind the application's back);
- ``missing``: an event holds the row but the table no longer does (deleted, truncated);
- ``rows_removed``: a table holds fewer rows than the newest signed seal counted (the
  prediction log, whose rows are not audited one by one, is covered this way);
- ``changed_between``: two consecutive audited states of a row differ in a column no
  audited action changes (:data:`app.db.guards.UPDATABLE`): it was changed behind the
  application's back and a later audited change took the altered row into its state. (A
  column audited actions do change, such as a version's status, altered and then carried into
  a later state this way, is not told apart from a legitimate change.)

:func:`reconcile` reads every audited state and every row: its cost grows with the records
and their audited changes (``bench/audit_verify.py`` measures it), unlike the chain check from
the last checkpoint. :func:`reconcile_since` compares only the rows the events after a given
seq wrote (those since the last recorded full reconciliation, for ``GET /audit/verify``): its
cost grows with those events, not the history. It finds such a row ``changed`` or
``missing``, ``changed_between`` two of those events, and every table's count against the
seal; it does not see a row no event after that seq wrote (changed, inserted or deleted behind
the back since the full run) nor a ``changed_between`` across that seq: the next full run does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, Uuid
from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.guards import UPDATABLE
from app.db.repositories import audit as audit_rows
from app.services import record_state

_BATCH = 2000
_IDS = 500  # ids per IN list


@dataclass(frozen=True)
class FieldChange:
    field: str
    audited: Any
    current: Any


@dataclass(frozen=True)
class Difference:
    kind: str  # changed | unaudited | missing | rows_removed | changed_between
    table: str
    entity_type: str | None
    entity_id: str | None
    audited_seq: int | None  # the event whose state the row was compared with
    fields: tuple[FieldChange, ...] = ()
    earlier_seq: int | None = None  # changed_between: the previous event holding the row

    def describe(self) -> str:
        what = f"{self.table} {self.entity_id}" if self.entity_id else self.table
        if self.kind == "changed":
            changes = "; ".join(f"{f.field}: {f.audited!r} -> {f.current!r}" for f in self.fields)
            return f"{what} differs from its audited state (event {self.audited_seq}): {changes}"
        if self.kind == "unaudited":
            return f"{what} has no audited state (written behind the application's back)"
        if self.kind == "missing":
            return f"{what} is gone (last audited in event {self.audited_seq})"
        if self.kind == "changed_between":
            changes = "; ".join(f"{f.field}: {f.audited!r} -> {f.current!r}" for f in self.fields)
            return (
                f"{what} changed between its audited states of events {self.earlier_seq} and "
                f"{self.audited_seq} in columns no audited action changes: {changes}"
            )
        (count,) = self.fields
        return (
            f"{what} holds {count.current} rows, fewer than the {count.audited} of the signed "
            f"seal at event {self.audited_seq} (rows deleted or truncated)"
        )


@dataclass
class Reconciliation:
    rows_checked: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    # None: every row and every audited state; a seq: only the rows the events after it wrote
    since_seq: int | None = None
    events: int = 0  # events with a state read

    @property
    def valid(self) -> bool:
        return not self.differences


def last_audited_states(
    session: Session,
    found: list[Difference] | None = None,
    *,
    after_seq: int = 0,
    report: Reconciliation | None = None,
) -> dict[str, tuple[int, dict[str, Any]]]:
    """{row key: (seq, state)} of the newest event after ``after_seq`` holding each row;
    consecutive states of a row that differ in an immutable column are added to ``found``."""
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    for seq, state in audit_rows.states(session, batch=_BATCH, after_seq=after_seq):
        if report is not None:
            report.events += 1
        for key, row in state.items():
            previous = newest.get(key)
            newest[key] = (seq, row)
            if previous is None or found is None:
                continue
            table, entity_type, entity_id = record_state.entity_of(key)
            allowed = UPDATABLE.get(table, ())
            names = [n for n in record_state.differing_fields(previous[1], row) if n not in allowed]
            if names:
                changes = tuple(FieldChange(n, previous[1][n], row.get(n)) for n in names)
                found.append(
                    Difference(
                        "changed_between",
                        table,
                        entity_type,
                        entity_id,
                        seq,
                        changes,
                        earlier_seq=previous[0],
                    )
                )
    return newest


def compare(
    key: str, audited: tuple[int, dict[str, Any]] | None, current: dict[str, Any]
) -> Difference | None:
    """The difference between a row now and its audited state, or None."""
    table, entity_type, entity_id = record_state.entity_of(key)
    if audited is None:
        return Difference("unaudited", table, entity_type, entity_id, None)
    seq, state = audited
    names = record_state.differing_fields(state, current)
    if not names:
        return None
    changes = tuple(FieldChange(n, state[n], current.get(n)) for n in names)
    return Difference("changed", table, entity_type, entity_id, seq, changes)


def reconcile(
    session: Session,
    *,
    tables: Iterable[Table] | None = None,
    sealed: tuple[int, dict[str, int]] | None = None,
) -> Reconciliation:
    """Compare every row of ``tables`` (default: every reconciled table) with its audited
    state; ``sealed`` = (seq, {table: rows}) of the newest trusted seal, whose counts the
    tables may not fall below."""
    chosen = list(tables) if tables is not None else record_state.reconciled_tables()
    report = Reconciliation()
    audited = last_audited_states(session, report.differences, report=report)
    names = {t.name for t in chosen}
    seen: set[str] = set()
    for table in chosen:
        count = 0
        for row in audit_rows.table_rows(session, table, batch=_BATCH):
            count += 1
            key, state = record_state.mapping_state(table, row._mapping)
            seen.add(key)
            difference = compare(key, audited.get(key), state)
            if difference is not None:
                report.differences.append(difference)
        report.tables[table.name] = count
        report.rows_checked += count
    for key in sorted(audited.keys() - seen):
        name, entity_type, entity_id = record_state.entity_of(key)
        if name in names:
            report.differences.append(
                Difference("missing", name, entity_type, entity_id, audited[key][0])
            )
    if sealed is not None:
        _check_counts(session, report, *sealed)
    return report


def reconcile_since(
    session: Session, *, after_seq: int, sealed: tuple[int, dict[str, int]] | None = None
) -> Reconciliation:
    """Compare the rows the events after ``after_seq`` wrote with their newest audited state
    (one query per table and 500 ids), and every counted table with ``sealed``."""
    report = Reconciliation(since_seq=after_seq)
    audited = last_audited_states(session, report.differences, after_seq=after_seq, report=report)
    by_table: dict[str, list[str]] = defaultdict(list)
    for key in audited:
        name, _, row_id = key.partition(":")
        by_table[name].append(row_id)
    for table in record_state.reconciled_tables():
        ids = sorted(by_table.get(table.name, ()))
        seen: set[str] = set()
        as_uuid = isinstance(table.c.id.type, Uuid)
        for start in range(0, len(ids), _IDS):
            chunk = ids[start : start + _IDS]
            wanted: list[Any] = chunk
            if as_uuid:  # an id that is no UUID names no row: reported missing below
                wanted = [u for u in map(record_state.parse_id, chunk) if u is not None]
            for row in audit_rows.rows_by_id(session, table, wanted):
                key, state = record_state.mapping_state(table, row._mapping)
                seen.add(key)
                difference = compare(key, audited.get(key), state)
                if difference is not None:
                    report.differences.append(difference)
        for row_id in ids:
            key = record_state.row_key(table.name, row_id)
            if key not in seen:
                name, entity_type, entity_id = record_state.entity_of(key)
                report.differences.append(
                    Difference("missing", name, entity_type, entity_id, audited[key][0])
                )
        if seen:
            report.tables[table.name] = len(seen)
            report.rows_checked += len(seen)
    if sealed is not None:
        _check_counts(session, report, *sealed)
    return report


def _check_counts(session: Session, report: Reconciliation, seq: int, rows: dict[str, int]) -> None:
    tables = Base.metadata.tables
    for name, sealed_count in sorted(rows.items()):
        if name not in tables:
            continue
        # rows read by a full reconciliation are the table's count; by an incremental one not
        current = report.tables.get(name) if report.since_seq is None else None
        if current is None:
            current = audit_rows.count_rows(session, tables[name])
        if current < sealed_count:
            report.differences.append(
                Difference(
                    "rows_removed",
                    name,
                    None,
                    None,
                    seq,
                    (FieldChange("rows", sealed_count, current),),
                )
            )


def counted_tables() -> list[Table]:
    """The tables a seal counts: every record table and the prediction log."""
    return [*record_state.reconciled_tables(), Base.metadata.tables["prediction_log"]]


def count_tables(session: Session) -> dict[str, int]:
    return {t.name: audit_rows.count_rows(session, t) for t in counted_tables()}
