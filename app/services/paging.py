"""Keyset cursors for lists in time order: ``(created or occurred at, id)`` as an opaque token.

A page costs the same however long the list grows, and rows added while a client pages
through land at the end instead of shifting the pages already read.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from app.errors import InvalidInput


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
