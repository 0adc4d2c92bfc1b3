"""Users, their access tokens and API keys: queries only (no commit, no rules)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from app.db.models import AccessToken, User
from app.db.repositories._by_id import values_by_id
from app.enums import Role


class CallerRow(NamedTuple):
    """Who holds a credential, as one Core query reads it (no ORM object)."""

    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    expires_at: datetime | None  # None for an API key: they do not expire


# Built once: these run on every authenticated request.
_USER_BY_API_KEY = select(User).where(User.api_key_hash == bindparam("digest"))
_USER_BY_TOKEN = (
    select(User, AccessToken.expires_at)
    .join(AccessToken, AccessToken.user_id == User.id)
    .where(AccessToken.token_hash == bindparam("digest"))
)
_CALLER_COLUMNS = (User.id, User.username, User.role, User.is_active)
_CALLER_BY_API_KEY = select(*_CALLER_COLUMNS).where(User.api_key_hash == bindparam("digest"))
_CALLER_BY_TOKEN = (
    select(*_CALLER_COLUMNS, AccessToken.expires_at)
    .join(AccessToken, AccessToken.user_id == User.id)
    .where(AccessToken.token_hash == bindparam("digest"))
)


def all_users(session: Session) -> list[User]:
    """Every account, in user-name order."""
    return list(session.scalars(select(User).order_by(User.username)))


def by_username(session: Session, username: str, *, for_update: bool = False) -> User | None:
    stmt = select(User).where(User.username == username)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def by_api_key_digest(session: Session, digest: str) -> User | None:
    return session.scalars(_USER_BY_API_KEY, {"digest": digest}).one_or_none()


def by_token_digest(session: Session, digest: str) -> tuple[User, datetime] | None:
    """The user holding the token with this sha256, and when the token expires."""
    row = session.execute(_USER_BY_TOKEN, {"digest": digest}).one_or_none()
    return None if row is None else (row[0], row[1])


def caller_by_digest(connection: Connection, digest: str, *, api_key: bool) -> CallerRow | None:
    """:func:`by_api_key_digest` / :func:`by_token_digest` on a Core connection."""
    statement = _CALLER_BY_API_KEY if api_key else _CALLER_BY_TOKEN
    row = connection.execute(statement, {"digest": digest}).one_or_none()
    if row is None:
        return None
    return CallerRow(
        row.id, row.username, row.role, row.is_active, None if api_key else row.expires_at
    )


def usernames(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """User names by id for every id given (one query; none for an empty set)."""
    return values_by_id(session, User.id, User.username, ids)


def add_token(session: Session, token: AccessToken) -> None:
    session.add(token)


def expire_token(session: Session, digest: str, at: datetime) -> None:
    """End the token with this sha256 at ``at`` (a logout; the row stays)."""
    session.execute(
        update(AccessToken)
        .where(AccessToken.token_hash == digest, AccessToken.expires_at > at)
        .values(expires_at=at)
    )
