"""Reading the prediction log: who predicted what, with which version, when (for review).

Pages are in time order (``occurred_at``, then ``id``) with an opaque keyset cursor
(:mod:`app.services.paging`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from app.db.models import ModelVersion, PredictionLog, SoftSensorModel, Transfer
from app.errors import InvalidInput
from app.services import models as models_service
from app.services.audit import check_time_bounds
from app.services.paging import decode_cursor, encode_cursor


@dataclass(frozen=True)
class LogEntry:
    row: PredictionLog
    model: str
    version: int
    transfer_number: int | None


def list_entries(
    session: Session,
    *,
    model: str | None = None,
    version: int | None = None,
    caller: str | None = None,
    flagged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[LogEntry], str | None]:
    """One page of log rows in time order, and the cursor of the next page (or None).

    ``model`` (and ``version``, which needs ``model``) must exist: a misspelt name is a 404,
    not an empty log. ``flagged`` keeps calls with (true) or without (false) any flagged
    spectrum. Time bounds need a time zone; ``until`` is exclusive.
    """
    check_time_bounds(since, until)
    if version is not None and model is None:
        raise InvalidInput("version filters within a model: give model as well")
    log, mv, m, tr = PredictionLog, ModelVersion, SoftSensorModel, Transfer
    stmt = (
        select(log, m.name, mv.version, tr.number)
        .join(mv, mv.id == log.model_version_id)
        .join(m, m.id == mv.model_id)
        .outerjoin(tr, tr.id == log.transfer_id)
        .order_by(log.occurred_at, log.id)
    )
    if model is not None:
        if version is not None:
            stmt = stmt.where(mv.id == models_service.get_version(session, model, version).id)
        else:
            stmt = stmt.where(m.id == models_service.get_model(session, model).id)
    if caller:
        stmt = stmt.where(log.caller == caller)
    if flagged is not None:
        any_flag = log.flag_counts["any_flag"].as_integer()
        stmt = stmt.where(any_flag > 0 if flagged else any_flag == 0)
    if since is not None:
        stmt = stmt.where(log.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(log.occurred_at < until)
    if cursor is not None:
        stmt = stmt.where(tuple_(log.occurred_at, log.id) > tuple_(*decode_cursor(cursor)))
    rows = session.execute(stmt.limit(limit + 1)).all()
    entries = [LogEntry(r[0], r[1], r[2], r[3]) for r in rows[:limit]]
    if len(rows) > limit:
        last = entries[-1].row
        return entries, encode_cursor(last.occurred_at, last.id)
    return entries, None


def entry_payload(entry: LogEntry) -> dict[str, Any]:
    row = entry.row
    counts = dict(row.flag_counts)
    confidence = counts.pop("flag_confidence", None)
    return {
        "id": row.id,
        "occurred_at": row.occurred_at,
        "caller": row.caller,
        "caller_id": row.caller_id,
        "model": entry.model,
        "version": entry.version,
        "artifact_sha256": row.artifact_sha256,
        "transfer_id": row.transfer_id,
        "transfer_number": entry.transfer_number,
        "qualified": row.qualified,
        "n_spectra": row.n_spectra,
        "input_sha256": row.input_sha256,
        "input_format": row.input_format,
        "flag_counts": counts,
        "flag_confidence": confidence,
        "purpose": row.purpose,
    }


CSV_COLUMNS = (
    "id",
    "occurred_at",
    "caller",
    "caller_id",
    "model",
    "version",
    "artifact_sha256",
    "transfer_number",
    "transfer_id",
    "qualified",
    "n_spectra",
    "input_sha256",
    "input_format",
    "outside_operating_range",
    "t2_exceeded",
    "q_exceeded",
    "any_flag",
    "flag_confidence",
    "purpose",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text  # a spreadsheet must show it, not evaluate it
    return text


def to_csv(entries: list[LogEntry]) -> str:
    """The entries as CSV with a header row (RFC 4180 quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        payload = entry_payload(entry)
        flat = payload | payload.pop("flag_counts")
        writer.writerow(_cell(flat[name]) for name in CSV_COLUMNS)
    return out.getvalue()
