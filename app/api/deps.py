"""Annotated dependencies: the request's session, the current user, role checks, the store.

Each synchronous dependency costs a trip through the thread pool (0.3 to 0.5 ms of latency
here), so the ones that do no I/O are ``async def``, and a role check resolves the credential
itself, in one trip, rather than depending on :func:`current_user`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.db.models import User
from app.db.session import get_session
from app.enums import Role
from app.errors import Forbidden, NotAuthenticated
from app.services.auth import resolve_credential
from app.store import LocalStore, get_store


async def request_store() -> LocalStore:
    """The artifact store (built once; no I/O here, so no thread-pool trip)."""
    return get_store()


# scope="function": the commit runs before the response is sent, so a failed COMMIT is a 500.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[LocalStore, Depends(request_store)]

_bearer = HTTPBearer(auto_error=False, description="Bearer token from /auth/token, or an API key")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _authenticate(session: Session, credentials: HTTPAuthorizationCredentials | None) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("send 'Authorization: Bearer <token or API key>'")
    user = resolve_credential(session, credentials.credentials)
    if user is None:
        raise NotAuthenticated("the token or API key is invalid, expired or revoked")
    return user


def current_user(session: SessionDep, credentials: Credentials) -> User:
    return _authenticate(session, credentials)


CurrentUser = Annotated[User, Depends(current_user)]


def require(*roles: Role) -> Callable[[Session, HTTPAuthorizationCredentials | None], User]:
    """Dependency factory: the current user, if their role is one of ``roles``."""
    allowed = frozenset(roles)

    def _check(session: SessionDep, credentials: Credentials) -> User:
        user = _authenticate(session, credentials)
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"role {user.role.value!r} may not do this (needs one of: {names})")
        return user

    return _check


ANY_ROLE = tuple(Role)
Developer = Annotated[User, Depends(require(Role.developer))]
Admin = Annotated[User, Depends(require(Role.admin))]
AuditReader = Annotated[User, Depends(require(Role.qa, Role.auditor, Role.admin))]
Predictor = Annotated[User, Depends(require(Role.plant, Role.developer))]
Reader = Annotated[User, Depends(require(*ANY_ROLE))]
