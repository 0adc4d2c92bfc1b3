"""Annotated dependencies: the request's session, the current user, role checks, the store.

Each synchronous dependency costs a trip through the thread pool (a hand-off to a worker
thread and back, which adds latency to every request), so the ones that do no I/O are
``async def``, and a role check resolves the credential itself, in one trip, rather than
depending on :func:`current_user`. The prediction route goes further: everything in one step
on a Core connection, in one trip or on the event loop (:data:`TransactionsDep`,
:func:`authorize_caller`).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.models import User
from app.db.session import (
    Transactions,
    commit_unit,
    open_unit,
    request_transactions,
    roll_back_unit,
)
from app.enums import Role
from app.errors import Forbidden, NotAuthenticated
from app.services.auth import Caller, resolve_caller, resolve_credential
from app.store import LocalStore, get_store


async def request_store() -> LocalStore:
    """The artifact store (built once; no I/O here, so no thread-pool trip)."""
    return get_store()


READ_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session and one transaction per request: commit on success, roll back on error.

    Asynchronous so that opening costs no thread-pool trip (a session and its transaction take
    their connection at the first query, in a synchronous dependency or the route); the
    COMMIT or ROLLBACK, which do I/O, run in one trip to the pool, shielded from cancellation
    so the session is always closed. GET and HEAD only read: their sessions take no write lock
    on SQLite, and end there without a trip.
    """
    reads_only = request.method in READ_METHODS
    session = open_unit(read_only=reads_only)
    try:
        yield session
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(roll_back_unit, session)
        raise
    if reads_only and session.get_bind().dialect.name == "sqlite":
        # Ending a read snapshot on SQLite releases a lock and never waits: no trip for it.
        commit_unit(session)
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(commit_unit, session)


# scope="function": the commit runs before the response is sent, so a failed COMMIT is a 500.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[LocalStore, Depends(request_store)]
# For a route that does all its database work in one step on a Core connection.
TransactionsDep = Annotated[Transactions, Depends(request_transactions)]

_bearer = HTTPBearer(auto_error=False, description="Bearer token from /auth/token, or an API key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


MISSING_CREDENTIAL = "send 'Authorization: Bearer <token or API key>'"
REFUSED_CREDENTIAL = "the token or API key is invalid, expired or revoked"


def _secret(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated(MISSING_CREDENTIAL)
    return credentials.credentials


def _check_role(role: Role, allowed: frozenset[Role]) -> None:
    if role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"role {role.value!r} may not do this (needs one of: {names})")


def _authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> User:
    user = resolve_credential(session, _secret(credentials))
    if user is None:
        raise NotAuthenticated(REFUSED_CREDENTIAL)
    return user


def current_user(session: SessionDep, credentials: Credentials) -> User:
    return _authenticate(session, credentials)


CurrentUser = Annotated[User, Depends(current_user)]


# Where the request-body guard (app/api/limits.py) leaves, in the request's scope state, the
# bearer credential it checked before reading the body and its holder: (secret, Caller).
CHECKED_SENDER = "registry.checked_sender"


def checked_sender(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Caller | None:
    """The holder of this request's credential as the body guard found it moments ago, if it
    checked this very credential (None otherwise: check it)."""
    found = request.scope.get("state", {}).get(CHECKED_SENDER)
    if found is None or credentials is None:
        return None
    secret, caller = found
    return caller if hmac.compare_digest(secret, credentials.credentials) else None


def authorize_caller(
    connection: Connection,
    credentials: HTTPAuthorizationCredentials | None,
    allowed: frozenset[Role],
    *,
    checked: Caller | None = None,
) -> Caller:
    """401 or 403, or the caller: for a route that authenticates on a Core connection inside
    its own thread-pool trip (the same rules as :func:`require`). ``checked``: the caller the
    body guard resolved for this credential in this request (:func:`checked_sender`), so the
    credential is not looked up twice."""
    secret = _secret(credentials)
    caller = checked if checked is not None else resolve_caller(connection, secret)
    if caller is None:
        raise NotAuthenticated(REFUSED_CREDENTIAL)
    _check_role(caller.role, allowed)
    return caller


def authorize(
    session: Session, credentials: HTTPAuthorizationCredentials | None, allowed: frozenset[Role]
) -> User:
    """401 or 403, or the user: for a route that checks credentials only in some cases."""
    user = _authenticate(session, credentials)
    _check_role(user.role, allowed)
    return user


def require(*roles: Role) -> Callable[[Session, HTTPAuthorizationCredentials | None], User]:
    """Dependency factory: the current user, if their role is one of ``roles``."""
    allowed = frozenset(roles)

    def _check(session: SessionDep, credentials: Credentials) -> User:
        return authorize(session, credentials, allowed)

    return _check


ANY_ROLE = tuple(Role)
PEOPLE = (Role.admin, Role.developer, Role.qa, Role.auditor)
Developer = Annotated[User, Depends(require(Role.developer))]
Admin = Annotated[User, Depends(require(Role.admin))]
QA = Annotated[User, Depends(require(Role.qa))]
Person = Annotated[User, Depends(require(*PEOPLE))]
# Signatures (authored: developer; reviewed, approved, rejected: qa) and domain events.
DeveloperOrQA = Annotated[User, Depends(require(Role.developer, Role.qa))]
AuditReader = Annotated[User, Depends(require(Role.qa, Role.auditor, Role.admin))]
PREDICTOR_ROLES = frozenset({Role.plant, Role.developer})
# Reference results for predicted samples: the plant systems (LIMS) and developers.
Predictor = Annotated[User, Depends(require(*PREDICTOR_ROLES))]
# Reading records (datasets and their content, artifacts, lineage, transfers, domains):
# people only. Service accounts (plant) read what a prediction client needs - the models,
# versions and aliases within their scope (CatalogReader; the route applies the scope).
Reader = Annotated[User, Depends(require(*PEOPLE))]
CatalogReader = Annotated[User, Depends(require(*ANY_ROLE))]
