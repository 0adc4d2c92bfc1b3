"""Canonical JSON: the bytes every content hash of the registry is computed over.

The same rules serve the signatures (a record's content at signing), the prediction log's
``results_sha256`` and the change-control export, and are documented in the README
("Canonical JSON") so that an auditor can recompute a hash with their own code;
``tests/test_canonical_docs.py`` does so from the README's text alone. A hash is the sha256,
64 lowercase hex digits, of:

- values as JSON values (:func:`plain`): ``null``, ``true``, ``false``, integers and strings as
  themselves; enumerations as their value; finite floats as numbers, NaN and infinities as
  ``null``; UUIDs as lowercase hyphenated strings; timestamps (timezone-aware; a naive one is
  refused) converted to UTC, ISO 8601 with exactly six fraction digits and ``+00:00``
  (``2026-12-02T07:56:47.324270+00:00``, never ``Z``); mappings and sequences element-wise;
- UTF-8 text without a byte-order mark and without whitespace between tokens (separators ``,``
  and ``:``), object keys sorted by Unicode code point;
- strings with ``"`` and ``\\`` escaped, U+0008/09/0A/0C/0D as ``\\b \\t \\n \\f \\r``, the
  other characters below U+0020 as ``\\u00xx`` (lowercase hex), every other character (non-ASCII
  included) as itself;
- integers in decimal; floats as the shortest decimal that reads back to the same IEEE-754
  double, positional when its decimal exponent e satisfies -4 <= e < 16 (``0.1``, ``2.0``,
  ``0.0001``), else scientific with a signed exponent of at least two digits (``1e-05``,
  ``1.5e+16``) — Python's ``repr``.

A record's content (:func:`record_content`) is every column of its row by name, except the
lifecycle columns of its table (:data:`LIFECYCLE_COLUMNS`: a version's ``status`` and
``review_due_at``).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase

_SCALARS = frozenset({str, int, bool, float, type(None)})


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def plain(value: Any) -> Any:
    """``value`` as plain JSON types under the rules above."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: canonical timestamps are UTC and timezone-aware")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        kinds = set(map(type, value))
        if kinds <= _SCALARS and (float not in kinds or all(map(_finite, value))):
            return list(value)  # already plain (the per-spectrum results): same output, faster
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist())
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``."""
    return json.dumps(
        plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(value: Any) -> str:
    """sha256 (lowercase hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# Columns that change by audited lifecycle transitions: not part of a record's signed content.
LIFECYCLE_COLUMNS = {"model_version": frozenset({"status", "review_due_at"})}


def record_content(row: DeclarativeBase) -> dict[str, Any]:
    """A stored record's content as signed: every column of its row by name, except the
    lifecycle columns of its table (:data:`LIFECYCLE_COLUMNS`)."""
    table = cast(Table, row.__table__)
    skip = LIFECYCLE_COLUMNS.get(table.name, frozenset())
    return {
        column.name: plain(getattr(row, column.key))
        for column in table.columns
        if column.name not in skip
    }


def record_sha256(row: DeclarativeBase) -> str:
    """sha256 of :func:`record_content`: what a signature binds."""
    return sha256_hex(record_content(row))
