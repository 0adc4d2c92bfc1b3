from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.enums import Role
from app.schemas.common import Name, NoNul, Reason, Schema


class TokenRead(Schema):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserCreate(Schema):
    username: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")]
    full_name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    role: Role
    password: Annotated[str | None, Field(default=None, min_length=12, max_length=200), NoNul] = (
        None
    )
    domains: Annotated[
        list[Name] | None,
        Field(
            description="service accounts only: the domains it may predict on (its first "
            "scope; without it the account is bound to no domain and may call nothing)"
        ),
    ] = None
    models: Annotated[
        list[Name] | None,
        Field(description="service accounts only, with domains: the only models it may call"),
    ] = None
    reason: Reason


class ScopeCreate(Schema):
    """A service account's new scope (in force from now; the previous one stays in history)."""

    domains: Annotated[
        list[Name], Field(min_length=1, description="the domains it may predict on (names)")
    ]
    models: Annotated[
        list[Name] | None,
        Field(description="the only models it may call (names); omit or null: any model"),
    ] = None
    reason: Reason


class ScopeRead(Schema):
    """A service account's scope in force."""

    sequence: int
    domains: list[str]
    models: list[str] | None = Field(description="null: every model of those domains")
    granted_at: datetime
    granted_by: str | None
    reason: str


class UserRead(Schema):
    id: uuid.UUID
    username: str
    full_name: str
    role: Role
    is_active: bool
    api_key_prefix: str | None
    created_at: datetime


class UserCreated(UserRead):
    api_key: str | None = Field(
        default=None, description="service accounts only: shown once, stored hashed"
    )


class AccountChange(Schema):
    """An administrator's change to an account, with its reason (audited)."""

    reason: Reason


class RoleChange(Schema):
    role: Role
    reason: Reason


class PasswordChange(Schema):
    """The caller's own password: the current one entered again, then the new one."""

    current_password: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    new_password: Annotated[str, Field(min_length=12, max_length=200), NoNul]


class UserAdminRead(UserRead):
    """An account as an administrator sees it."""

    locked_until: datetime | None = Field(
        description="locked after failed logins until then (null: not locked)"
    )
    created_by: str | None = None
    scope: ScopeRead | None = Field(
        default=None,
        description="service accounts: the scope in force (null: bound to no domain)",
    )


class ApiKeyIssued(UserRead):
    api_key: str = Field(description="shown once, stored hashed; the previous key is revoked")
