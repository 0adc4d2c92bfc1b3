"""Users, their access tokens and API keys: queries only (no commit, no rules)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from app.db.models import AccessToken, AccountScope, User
from app.db.repositories._by_id import values_by_id
from app.db.repositories._locks import for_write
from app.enums import Role


class CallerRow(NamedTuple):
    """Who holds a credential, as one Core query reads it (no ORM object)."""

    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    expires_at: datetime | None  # None for an API key: they do not expire
    # The account's scope in force (its newest AccountScope row), read in the same query so a
    # new scope row bites at the next call; has_scope False: the account has none.
    has_scope: bool = False
    scope_domain_ids: list[Any] | None = None
    scope_model_ids: list[Any] | None = None


# Built once: these run on every authenticated request.
_USER_BY_API_KEY = select(User).where(User.api_key_hash == bindparam("digest"))
_USER_BY_TOKEN = (
    select(User, AccessToken.expires_at)
    .join(AccessToken, AccessToken.user_id == User.id)
    .where(AccessToken.token_hash == bindparam("digest"))
)
_older = aliased(AccountScope)
_NEWEST_SCOPE = select(func.max(_older.sequence)).where(_older.user_id == User.id).scalar_subquery()
_SCOPE_JOIN = and_(AccountScope.user_id == User.id, AccountScope.sequence == _NEWEST_SCOPE)
_CALLER_COLUMNS = (
    User.id,
    User.username,
    User.role,
    User.is_active,
    AccountScope.id.label("scope_id"),
    AccountScope.domain_ids,
    AccountScope.model_ids,
)
_CALLER_BY_API_KEY = (
    select(*_CALLER_COLUMNS)
    .outerjoin(AccountScope, _SCOPE_JOIN)
    .where(User.api_key_hash == bindparam("digest"))
)
_CALLER_BY_TOKEN = (
    select(*_CALLER_COLUMNS, AccessToken.expires_at)
    .join(AccessToken, AccessToken.user_id == User.id)
    .outerjoin(AccountScope, _SCOPE_JOIN)
    .where(AccessToken.token_hash == bindparam("digest"))
)


def all_users(session: Session) -> list[User]:
    """Every account, in user-name order."""
    return list(session.scalars(select(User).order_by(User.username)))


def by_username(session: Session, username: str, *, for_update: bool = False) -> User | None:
    stmt = select(User).where(User.username == username)
    if for_update:
        stmt = for_write(stmt)
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
        row.id,
        row.username,
        row.role,
        row.is_active,
        None if api_key else row.expires_at,
        row.scope_id is not None,
        row.domain_ids,
        row.model_ids,
    )


def newest_scopes(session: Session, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, AccountScope]:
    """The scope in force (newest row) of each account given that has one (one query)."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    newest = (
        select(_older.user_id, func.max(_older.sequence).label("sequence"))
        .where(_older.user_id.in_(wanted))
        .group_by(_older.user_id)
        .subquery()
    )
    stmt = select(AccountScope).join(
        newest,
        and_(
            AccountScope.user_id == newest.c.user_id,
            AccountScope.sequence == newest.c.sequence,
        ),
    )
    return {row.user_id: row for row in session.scalars(stmt)}


def next_scope_sequence(session: Session, user_id: uuid.UUID) -> int:
    """max + 1 (1 for the first); race-free under the user row lock (:func:`by_username` with
    ``for_update``)."""
    number = session.scalar(
        select(func.coalesce(func.max(AccountScope.sequence), 0) + 1).where(
            AccountScope.user_id == user_id
        )
    )
    return int(number or 1)


def add_scope(session: Session, scope: AccountScope) -> None:
    session.add(scope)


def usernames(session: Session, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """User names by id for every id given (one query; none for an empty set)."""
    return values_by_id(session, User.id, User.username, ids)


def add_token(session: Session, token: AccessToken) -> None:
    session.add(token)


def expire_token(session: Session, digest: str, at: datetime) -> None:
    """End the token with this sha256 at ``at`` (a logout; the row stays). Through the ORM,
    so the audit event of the logout holds the token's new state."""
    stmt = select(AccessToken).where(AccessToken.token_hash == digest, AccessToken.expires_at > at)
    for token in session.scalars(stmt):
        token.expires_at = at
    session.flush()
