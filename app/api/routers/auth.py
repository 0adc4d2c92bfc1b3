from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import Admin, CurrentUser, SessionDep
from app.db.models import User
from app.schemas.auth import TokenRead, UserCreate, UserCreated, UserRead
from app.schemas.common import CONFLICT, ERRORS, ErrorBody
from app.services import auth as auth_service

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/token",
    response_model=TokenRead,
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep
) -> TokenRead | JSONResponse:
    """OAuth2 password flow: a bearer token that expires. Failures are audited and count
    towards the lockout, so they are committed (a 401 response, not an exception)."""
    issued = auth_service.login(session, username=form.username, password=form.password)
    if issued is None:
        return JSONResponse(
            status_code=status.HTTP_401_UNAUTHORIZED,
            content={
                "error": "invalid_credentials",
                "detail": "wrong user name or password, or the account is locked",
            },
            headers={"WWW-Authenticate": "Bearer"},
        )
    return TokenRead(access_token=issued.token, expires_at=issued.expires_at)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses={**ERRORS, **CONFLICT},
)
def create_user(body: UserCreate, session: SessionDep, actor: Admin) -> UserCreated:
    """Create a user (password) or a service account (role plant: API key returned once)."""
    created = auth_service.create_user(
        session,
        username=body.username,
        full_name=body.full_name,
        role=body.role,
        password=body.password,
        actor=actor,
        reason=body.reason,
    )
    read = UserRead.model_validate(created.user)
    return UserCreated(**read.model_dump(), api_key=created.api_key)


@router.get("/users/me", response_model=UserRead, responses=ERRORS)
def me(user: CurrentUser) -> User:
    return user
