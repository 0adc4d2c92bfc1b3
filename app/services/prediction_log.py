"""Reading the prediction log: who predicted what, with which version, when (for review).

Pages are in time order (``occurred_at``, then ``id``) with an opaque keyset cursor
(:mod:`app.services.paging`).
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db.repositories import prediction_log as prediction_log_rows
from app.errors import InvalidInput, NotFound
from app.schemas.common import read_from
from app.schemas.predict import PredictionLogEntry, PredictionLogRead
from app.services import models as models_service
from app.services import transfers
from app.services.audit import check_time_bounds
from app.services.canonical import sha256_hex
from app.services.paging import decode_cursor, encode_cursor

LogEntry = prediction_log_rows.LogRow


def list_entries(
    session: Session,
    *,
    model: str | None = None,
    version: int | None = None,
    transfer: str | None = None,
    caller: str | None = None,
    flagged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[LogEntry], str | None]:
    """One page of log rows in time order, and the cursor of the next page (or None).

    ``model`` (and ``version``, which needs ``model``) and ``transfer`` (its number or UUID)
    must exist: a misspelt name is a 404, not an empty log. ``flagged`` keeps calls with (true)
    or without (false) any flagged spectrum. Time bounds need a time zone; ``until`` is
    exclusive.
    """
    check_time_bounds(since, until)
    if version is not None and model is None:
        raise InvalidInput("version filters within a model: give model as well")
    model_id = version_id = None
    if model is not None and version is not None:
        version_id = models_service.get_version(session, model, version).id
    elif model is not None:
        model_id = models_service.get_model(session, model).id
    where = prediction_log_rows.LogFilter(
        model_id=model_id,
        version_id=version_id,
        transfer_id=transfers.get_transfer(session, transfer).id if transfer else None,
        caller=caller or None,
        flagged=flagged,
        since=since,
        until=until,
    )
    after = decode_cursor(cursor) if cursor is not None else None
    entries = prediction_log_rows.page(session, where, after=after, limit=limit + 1)
    if len(entries) > limit:
        last = entries[limit - 1].row
        return entries[:limit], encode_cursor(last.occurred_at, last.id)
    return entries, None


def entry_read(entry: LogEntry) -> PredictionLogEntry:
    """A log row as the API shows it."""
    counts = dict(entry.row.flag_counts)
    confidence = counts.pop("flag_confidence", None)
    return read_from(
        PredictionLogEntry,
        entry.row,
        model=entry.model,
        version=entry.version,
        transfer_number=entry.transfer_number,
        flag_counts=counts,
        flag_confidence=confidence,
    )


def get_entry(session: Session, log_id: uuid.UUID) -> PredictionLogRead:
    """One call with what it reported; ``results_valid``: its results recomputed to the
    stored sha256 (canonical JSON, :mod:`app.services.canonical`)."""
    entry = prediction_log_rows.by_id(session, log_id)
    if entry is None:
        raise NotFound(f"prediction-log entry {log_id} does not exist")
    row = entry.row
    base = entry_read(entry).model_dump()
    valid = None
    if row.results is not None:
        valid = row.results_sha256 is not None and sha256_hex(row.results) == row.results_sha256
    return PredictionLogRead.model_validate(
        base
        | {"results": row.results, "results_sha256": row.results_sha256, "results_valid": valid}
    )


CSV_COLUMNS = (
    "id",
    "occurred_at",
    "caller",
    "caller_id",
    "model",
    "version",
    "alias",
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
    "for_gmp",
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
        payload = entry_read(entry).model_dump()
        flat = payload | payload.pop("flag_counts")
        writer.writerow(_cell(flat[name]) for name in CSV_COLUMNS)
    return out.getvalue()
