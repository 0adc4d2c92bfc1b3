"""Failed password checks: what the login throttle and the account lockout count (queries
only; no commit, no rules)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import LoginFailure
from app.enums import PasswordCheck

# First key of the two-key advisory lock (PostgreSQL) that serializes the logins of one
# client address across workers; the second key is the address's hash. ASCII "LOGN".
_ADDRESS_LOCK_CLASS = 0x4C4F474E


def lock_address(session: Session, address: str) -> None:
    """Serialize the logins from ``address`` until the transaction ends, so that concurrent
    attempts (several workers) cannot all pass the throttle at its limit. SQLite needs none:
    a login writes, so its transaction began IMMEDIATE and holds the database's write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(func.pg_advisory_xact_lock(_ADDRESS_LOCK_CLASS, func.hashtext(address)))
        )


def add(session: Session, failure: LoginFailure) -> None:
    session.add(failure)


def newest_logins_from(
    session: Session, address: str, *, since: datetime, limit: int
) -> list[datetime]:
    """When the newest ``limit`` failed logins from ``address`` after ``since`` happened,
    newest first."""
    stmt = (
        select(LoginFailure.occurred_at)
        .where(
            LoginFailure.client_address == address,
            LoginFailure.kind == PasswordCheck.login,
            LoginFailure.occurred_at > since,
        )
        .order_by(LoginFailure.occurred_at.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def count_against(session: Session, user_id: uuid.UUID, *, since: datetime) -> int:
    """Failed password checks of any kind against the account after ``since``."""
    stmt = select(func.count()).where(
        LoginFailure.user_id == user_id, LoginFailure.occurred_at > since
    )
    return int(session.scalar(stmt) or 0)
