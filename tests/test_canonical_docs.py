"""The README's "Canonical JSON" section is enough to recompute the registry's hashes.

Everything from ``_doc_`` down to the tests is written from that section alone — it does not
import ``app.services.canonical`` or ``app.services.audit``, nor call ``json.dumps`` — and the
tests compare its hashes with the service's for a real transfer record, a real version and a
real audit event, on both databases.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, ModelVersion, TransferRecord
from app.enums import Role
from app.services.canonical import canonical_json, record_sha256
from tests.change_control_factories import small_transfer, transfer_row, version_row
from tests.helpers import Actor

README = Path(__file__).resolve().parents[1] / "README.md"

# --------------------------------------------------------------------------------------------
# An implementation written from the README
# --------------------------------------------------------------------------------------------

_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _doc_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _doc_float(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    # The shortest digit string that reads back to x.
    for precision in range(1, 18):
        text = f"{x:.{precision - 1}e}"
        if float(text) == x:
            break
    mantissa, exponent = text.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    e = int(exponent)
    if -4 <= e < 16:
        if e >= 0:
            whole = digits[: e + 1].ljust(e + 1, "0")
            fraction = digits[e + 1 :] or "0"
            return f"{sign}{whole}.{fraction}"
        return f"{sign}0.{'0' * (-e - 1)}{digits}"
    point = f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits
    return f"{sign}{point}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _doc_value(value: Any) -> Any:
    """Step 1: a value as a JSON value."""
    if isinstance(value, enum.Enum):
        return _doc_value(value.value)
    if isinstance(value, uuid.UUID):
        return str(value).lower()
    if isinstance(value, datetime):
        assert value.tzinfo is not None
        utc = value.astimezone(UTC)
        return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}+00:00"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _doc_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_doc_value(v) for v in value]
    return value


def _doc_text(value: Any) -> str:
    """Steps 2-4 on a JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _doc_float(value)
    if isinstance(value, str):
        return _doc_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_doc_text(v) for v in value) + "]"
    assert isinstance(value, dict)
    items = sorted(value.items())  # Python orders str by code point
    return "{" + ",".join(f"{_doc_string(k)}:{_doc_text(v)}" for k, v in items) + "}"


def _doc_sha256(value: Any) -> str:
    return hashlib.sha256(_doc_text(_doc_value(value)).encode("utf-8")).hexdigest()


def _readme_columns(table: str) -> list[str]:
    """The column list the README gives for ``table``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^- `{table}`: (.+?)(?=^\S|^- `|\n\n)", text, re.M | re.S)
    assert match, f"README lists no columns for {table}"
    return [name.strip() for name in " ".join(match.group(1).split()).split(",")]


def _row(session: Session, table: Any, row_id: uuid.UUID) -> dict[str, Any]:
    """A row's columns as the database returns them (what an auditor would query)."""
    stmt = select(table.__table__).where(table.__table__.c.id == row_id)
    return dict(session.execute(stmt).mappings().one())


def _doc_record_sha256(table_name: str, columns: dict[str, Any]) -> str:
    wanted = _readme_columns(table_name)
    return _doc_sha256({name: columns[name] for name in wanted})


AUDIT_KEYS = (
    "seq",
    "occurred_at",
    "actor",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "reason",
    "before",
    "after",
    "prev_hash",
)

# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.0, 0.1, 1e-05, 0.0001, 1.5e16, 1e16, 123456789012345.6, -0.0, 2.5e-300]},
        {"é": "naïve ☃ \u2028", "e": 'quote " back \\ slash / ok', "z": "\x00\x01\b\t\n\f\r\x1f"},
        {"nan": float("nan"), "inf": float("-inf"), "none": None, "t": True, "f": False},
        {"big": 2**70, "neg": -17, "nested": {"y": [], "x": {}}, "\U0001f600": "", "\uffff": 1},
    ],
)
def test_the_documented_rules_give_the_services_bytes(value: dict[str, Any]) -> None:
    assert _doc_text(_doc_value(value)).encode("utf-8") == canonical_json(value)


def test_the_readme_lists_every_signed_column() -> None:
    assert _readme_columns("transfer") == [c.name for c in TransferRecord.__table__.columns]
    assert _readme_columns("model_version") == [
        c.name for c in ModelVersion.__table__.columns if c.name not in {"status", "review_due_at"}
    ]


def test_a_transfer_and_a_version_hash_as_the_readme_says(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    made = small_transfer(client, actors[Role.developer].headers, change_control="CC-DOC-1")
    transfer = transfer_row(session, made["transfer"]["number"])
    version = version_row(session, made["v2"]["id"])
    assert transfer.result is not None  # a completed record: floats, nested JSON, timestamps

    assert _doc_record_sha256("transfer", _row(session, TransferRecord, transfer.id)) == (
        record_sha256(transfer)
    )
    assert _doc_record_sha256("model_version", _row(session, ModelVersion, version.id)) == (
        record_sha256(version)
    )


def test_an_audit_event_hashes_as_the_readme_says(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    small_transfer(client, actors[Role.developer].headers, change_control="CC-DOC-2")
    table = AuditEvent.__table__
    last, previous = session.execute(select(table).order_by(table.c.seq.desc()).limit(2)).mappings()
    payload = {key: last[key] for key in AUDIT_KEYS}
    assert last["state_sha256"] is not None  # the transfer's completion wrote its row
    assert _doc_sha256(last["state"]) == last["state_sha256"]
    payload |= {"state": last["state"], "state_sha256": last["state_sha256"]}
    assert _doc_sha256(payload) == last["hash"]
    assert last["prev_hash"] == previous["hash"]
    assert last["seq"] == previous["seq"] + 1
