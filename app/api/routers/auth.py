from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.deps import Admin, CurrentUser, Person, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.params import Username
from app.db.models import User
from app.enums import Role
from app.errors import InvalidInput
from app.schemas.auth import (
    AccountChange,
    ApiKeyIssued,
    PasswordChange,
    RoleChange,
    ScopeCreate,
    ScopeRead,
    TokenRead,
    UserAdminRead,
    UserCreate,
    UserCreated,
    UserRead,
)
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND, ErrorBody, NoNul
from app.services import accounts, scopes
from app.services import auth as auth_service

router = APIRouter(tags=["auth"], route_class=StrictJSONRoute)
_ADMIN = {**ERRORS, **NOT_FOUND, **CONFLICT}
# A response that carries a secret (a token, an API key) is kept by no cache (RFC 6749 5.1).
NOT_STORED = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _not_stored(response: Response) -> None:
    response.headers.update(NOT_STORED)


_SECRET = {"format": "password"}


class TokenForm:
    """The OAuth2 password form (RFC 6749, 4.3.2), bounded: a user name no account can have
    (over 64 characters, or holding a NUL) is a 422 before anything is looked up or audited."""

    def __init__(
        self,
        username: Annotated[str, Form(max_length=64), NoNul],
        password: Annotated[str, Form(max_length=1000, json_schema_extra=_SECRET), NoNul],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form(max_length=1000, description="not used"), NoNul] = "",
        client_id: Annotated[
            str | None, Form(max_length=200, description="not used"), NoNul
        ] = None,
        client_secret: Annotated[
            str | None,
            Form(max_length=1000, description="not used", json_schema_extra=_SECRET),
            NoNul,
        ] = None,
    ) -> None:
        self.username, self.password = username, password


@router.post(
    "/auth/token",
    response_model=TokenRead,
    responses={
        401: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {
            "model": ErrorBody,
            "description": "too many failed logins from this address (see Retry-After)",
        },
    },
)
def issue_token(
    form: Annotated[TokenForm, Depends()],
    session: SessionDep,
    request: Request,
    response: Response,
) -> TokenRead | JSONResponse:
    """OAuth2 password flow: a bearer token that expires. Failures are audited and count
    towards the client address's throttle and the account's lockout, so they are committed
    (a 401 response, not an exception). While the address is throttled: 429 with
    ``Retry-After``, no password checked."""
    issued = auth_service.login(
        session,
        username=form.username,
        password=form.password,
        client_host=request.client.host if request.client else None,
    )
    if issued is None:
        return JSONResponse(
            status_code=status.HTTP_401_UNAUTHORIZED,
            content={
                "error": "invalid_credentials",
                "detail": "wrong user name or password, or the account is locked",
            },
            headers={"WWW-Authenticate": "Bearer", **NOT_STORED},
        )
    _not_stored(response)
    return TokenRead(access_token=issued.token, expires_at=issued.expires_at)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses={**ERRORS, **CONFLICT},
)
def create_user(
    body: UserCreate, session: SessionDep, actor: Admin, response: Response
) -> UserCreated:
    """Create a user (password) or a service account (role plant: API key returned once;
    ``domains`` and optionally ``models`` give its first scope, audited ``user.scope``)."""
    _not_stored(response)
    if (body.domains is not None or body.models is not None) and body.role is not Role.plant:
        raise InvalidInput("domains and models scope service accounts (role plant) only")
    if body.models is not None and body.domains is None:
        raise InvalidInput("models narrows a scope of domains: give domains as well")
    created = auth_service.create_user(
        session,
        username=body.username,
        full_name=body.full_name,
        role=body.role,
        password=body.password,
        actor=actor,
        reason=body.reason,
    )
    if body.domains is not None:
        scopes.add_scope(
            session,
            created.user,
            domains=body.domains,
            models=body.models,
            actor=actor,
            reason=body.reason,
        )
    read = UserRead.model_validate(created.user)
    return UserCreated(**read.model_dump(), api_key=created.api_key)


@router.get("/users/me", response_model=UserRead, responses=ERRORS)
def me(user: CurrentUser) -> User:
    return user


UsernamePath = Username


@router.post(
    "/users/me/password",
    response_model=UserRead,
    responses={401: {"model": ErrorBody}, **ERRORS},
)
def change_password(body: PasswordChange, session: SessionDep, user: Person) -> User | JSONResponse:
    """Change your own password (people, not service accounts); the current one is entered
    again. A wrong one is a 401 that counts towards the lockout and is audited (committed,
    like a failed login)."""
    if not accounts.change_password(
        session, user, current_password=body.current_password, new_password=body.new_password
    ):
        return JSONResponse(
            status_code=status.HTTP_401_UNAUTHORIZED,
            content={
                "error": "invalid_credentials",
                "detail": "the current password is wrong, or the account is locked",
            },
        )
    return user


@router.get("/users", response_model=list[UserAdminRead], responses=ERRORS)
def list_users(session: SessionDep, _: Admin) -> list[UserAdminRead]:
    """Every account, active or not (nothing is deleted), in user-name order."""
    rows = accounts.list_users(session)
    names = {u.id: u.username for u in rows}
    in_force = scopes.current_scopes(session, [u for u in rows if u.role is Role.plant])
    return [
        UserAdminRead.model_validate(u).model_copy(
            update={
                "created_by": names.get(u.created_by_id) if u.created_by_id else None,
                "scope": _scope_read(in_force.get(u.id)),
            }
        )
        for u in rows
    ]


def _scope_read(view: scopes.ScopeView | None) -> ScopeRead | None:
    return None if view is None else ScopeRead.model_validate(view, from_attributes=True)


@router.post(
    "/users/{username}/scopes",
    status_code=status.HTTP_201_CREATED,
    response_model=UserAdminRead,
    responses=_ADMIN,
)
def grant_scope(
    username: UsernamePath,
    body: ScopeCreate,
    session: SessionDep,
    actor: Admin,
) -> UserAdminRead:
    """Bind a service account (role plant; 422 otherwise) to domains and optionally models:
    a new scope row, in force at once (the previous one is kept as history), audited
    ``user.scope`` with the scope before and after. Its predictions on a version of another
    domain, or of a model not listed, are then a 403. Role: admin."""
    user = scopes.grant_scope(
        session,
        username,
        domains=body.domains,
        models=body.models,
        actor=actor,
        reason=body.reason,
    )
    view = scopes.current_scopes(session, [user]).get(user.id)
    return UserAdminRead.model_validate(user).model_copy(update={"scope": _scope_read(view)})


@router.post("/users/{username}/deactivate", response_model=UserAdminRead, responses=_ADMIN)
def deactivate_user(
    username: UsernamePath, body: AccountChange, session: SessionDep, actor: Admin
) -> User:
    """Deactivate an account: its tokens and API key stop working at once."""
    return accounts.set_active(session, username, active=False, actor=actor, reason=body.reason)


@router.post("/users/{username}/reactivate", response_model=UserAdminRead, responses=_ADMIN)
def reactivate_user(
    username: UsernamePath, body: AccountChange, session: SessionDep, actor: Admin
) -> User:
    return accounts.set_active(session, username, active=True, actor=actor, reason=body.reason)


@router.post("/users/{username}/unlock", response_model=UserAdminRead, responses=_ADMIN)
def unlock_user(
    username: UsernamePath, body: AccountChange, session: SessionDep, actor: Admin
) -> User:
    """Lift a lockout after failed logins."""
    return accounts.unlock(session, username, actor=actor, reason=body.reason)


@router.post("/users/{username}/role", response_model=UserAdminRead, responses=_ADMIN)
def set_user_role(
    username: UsernamePath, body: RoleChange, session: SessionDep, actor: Admin
) -> User:
    return accounts.set_role(session, username, role=body.role, actor=actor, reason=body.reason)


@router.post("/users/{username}/api-key", response_model=ApiKeyIssued, responses=_ADMIN)
def rotate_api_key(
    username: UsernamePath,
    body: AccountChange,
    session: SessionDep,
    actor: Admin,
    response: Response,
) -> ApiKeyIssued:
    """Issue a new API key for a service account (shown once); the old key stops working."""
    _not_stored(response)
    rotated = accounts.rotate_api_key(session, username, actor=actor, reason=body.reason)
    read = UserRead.model_validate(rotated.user)
    return ApiKeyIssued(**read.model_dump(), api_key=rotated.api_key)


@router.post("/users/{username}/api-key/revoke", response_model=UserAdminRead, responses=_ADMIN)
def revoke_api_key(
    username: UsernamePath, body: AccountChange, session: SessionDep, actor: Admin
) -> User:
    """Revoke a service account's API key (e.g. leaked)."""
    return accounts.revoke_api_key(session, username, actor=actor, reason=body.reason)
