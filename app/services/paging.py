"""Keyset cursors as opaque tokens: for lists in time order, ``(created or occurred at, id)``;
for lists in name order (domains, models), the last name read.

A page costs the same however long the list grows, and rows added while a client pages
through never shift the pages already read (in time order they land at the end; in name order
where their name sorts, so a client that is past it sees them on its next pass).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import TypeVar

from app.errors import InvalidInput

RowT = TypeVar("RowT")


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{at.isoformat()}|{row_id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; 422 for anything this service did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, row_id = raw.split("|")
        at, parsed_id = datetime.fromisoformat(when), uuid.UUID(hex=row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this service issued: pass next_cursor from the previous page"
        ) from None
    if at.tzinfo is None:
        raise InvalidInput("cursor is not one this service issued")
    return at, parsed_id


_NAME_TAG = "name|"


def encode_name_cursor(name: str) -> str:
    """An opaque cursor for a list in order of a unique name: the last name of the page."""
    return base64.urlsafe_b64encode(f"{_NAME_TAG}{name}".encode()).decode().rstrip("=")


def decode_name_cursor(cursor: str) -> str:
    """The name a cursor of :func:`encode_name_cursor` stands for; 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raw = ""
    if not raw.startswith(_NAME_TAG):
        raise InvalidInput(
            "cursor is not one this service issued: pass the next page's URL from the Link header"
        )
    return raw.removeprefix(_NAME_TAG)


def next_page(rows: list[RowT], limit: int | None) -> tuple[list[RowT], RowT | None]:
    """``rows`` read with ``limit + 1``: the page, and its last row when another page follows
    (the row the next cursor points after), else None."""
    if limit is not None and len(rows) > limit:
        return rows[:limit], rows[limit - 1]
    return rows, None


def encode_keyed_cursor(at: datetime, key: str) -> str:
    """An opaque cursor for a list ordered by a time and a text key (e.g. a reference)."""
    raw = f"{at.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_keyed_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, key) a cursor of :func:`encode_keyed_cursor` stands for; 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, key = raw.split("|", 1)
        at = datetime.fromisoformat(when)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this service issued: pass the next page's URL from the Link header"
        ) from None
    if at.tzinfo is None:
        raise InvalidInput("cursor is not one this service issued")
    return at, key
