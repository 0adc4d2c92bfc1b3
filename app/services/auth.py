"""Users, passwords (argon2), bearer tokens, API keys and lockout."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AccessToken, User
from app.db.repositories import users as user_rows
from app.enums import AuditAction, AuditEntityType, Role
from app.errors import Conflict, InvalidInput
from app.services import audit
from app.settings import get_settings

_hasher = PasswordHasher()
# A fixed hash verified when the user does not exist, so timing does not reveal user names.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
API_KEY_PREFIX = "ssr_"
MIN_PASSWORD_LENGTH = 12
MAX_USERNAME_LENGTH = 64  # the user name column; audit events' actor column too


def bounded_username(entered: str) -> str:
    """A user name as entered, fit for an audit event: at most :data:`MAX_USERNAME_LENGTH`
    characters, NUL replaced (PostgreSQL text cannot hold it), ``(blank)`` for nothing."""
    return entered[:MAX_USERNAME_LENGTH].replace("\x00", "\ufffd") or "(blank)"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def user_snapshot(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "role": user.role,
        "is_active": user.is_active,
        "api_key_prefix": user.api_key_prefix,
    }


@dataclass(frozen=True)
class NewUser:
    user: User
    api_key: str | None


def create_user(
    session: Session,
    *,
    username: str,
    full_name: str,
    role: Role,
    password: str | None,
    actor: User | str,
    reason: str,
) -> NewUser:
    """Create a person (password) or a service account (role plant: API key, shown once)."""
    if bounded_username(username) != username:  # the CLI has no schema in front of it
        raise InvalidInput(
            f"a user name has 1 to {MAX_USERNAME_LENGTH} characters and no NUL character"
        )
    if user_rows.by_username(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    api_key: str | None = None
    user = User(username=username, full_name=full_name, role=role)
    if role is Role.plant:
        if password is not None:
            raise InvalidInput("service accounts (role plant) use an API key, not a password")
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        user.api_key_hash = _sha256(api_key)
        user.api_key_prefix = api_key[:12]
    else:
        if password is None or len(password) < MIN_PASSWORD_LENGTH:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
        user.password_hash = _hasher.hash(password)
    if isinstance(actor, User):
        user.created_by_id = actor.id
    audit.record_created(
        session,
        user,
        actor=actor,
        action="user.create",
        entity_type="user",
        reason=reason,
        after=user_snapshot(user),
    )
    return NewUser(user, api_key)


def count_wrong_password(session: Session, user: User, *, reason: str) -> None:
    """A wrong password for ``user``: counted towards the lockout (locked for
    ``lockout_minutes`` after ``lockout_threshold`` in a row) and audited."""
    settings = get_settings()
    user.failed_login_count += 1
    locked = user.failed_login_count >= settings.lockout_threshold
    if locked:
        user.locked_until = utcnow() + timedelta(minutes=settings.lockout_minutes)
        user.failed_login_count = 0
    audit.record(
        session,
        actor=user,
        action=AuditAction.auth_lockout if locked else AuditAction.auth_login_failed,
        entity_type=AuditEntityType.user,
        entity_id=user.id,
        after={"reason": reason, "locked_until": user.locked_until},
    )


def reauthenticate(session: Session, user: User, *, username: str, password: str) -> bool:
    """21 CFR 11.200: both components of the signed-in person's credentials entered again, for
    a signature or another signed action (an alias move).

    True when ``username`` is the caller's own and ``password`` is theirs. Otherwise False,
    and the failure is audited (a wrong password also counts towards the lockout), so the
    caller must commit even then and answer 401. A locked or inactive account, or a service
    account, never re-authenticates.
    """
    locked_now = user_rows.by_username(session, user.username, for_update=True)
    if locked_now is None or locked_now.id != user.id:
        return False
    now = utcnow()
    refusal: str | None = None
    if user.password_hash is None or not user.is_active:
        refusal = "no password login"
    elif username != user.username:
        refusal = "user name entered is not the signed-in user's"
    elif user.locked_until is not None and user.locked_until > now:
        refusal = "account locked"
    if refusal is not None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        audit.record(
            session,
            actor=user,
            action=AuditAction.auth_login_failed,
            entity_type=AuditEntityType.user,
            entity_id=user.id,
            after={
                "reason": f"re-authentication refused: {refusal}",
                "entered": bounded_username(username),
            },
        )
        return False
    assert user.password_hash is not None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        count_wrong_password(session, user, reason="wrong password at re-authentication")
        return False
    user.failed_login_count = 0
    return True


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    user: User


def login(
    session: Session, *, username: str, password: str, ttl_minutes: int | None = None
) -> IssuedToken | None:
    """Check a password and issue a bearer token, or record the failure and return None.

    After ``lockout_threshold`` consecutive failures the account is locked for
    ``lockout_minutes``; attempts while locked fail without checking the password. Both
    outcomes are audited, so the caller must commit even when this returns None.
    """
    settings = get_settings()
    now = utcnow()
    shown = bounded_username(username)
    # A name no account can have (too long, a NUL) is not looked up; the API refuses it
    # before this (422), and the failure is audited under the bounded name only.
    possible = shown == username
    user = user_rows.by_username(session, username, for_update=True) if possible else None
    if user is None or user.password_hash is None or not user.is_active:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        audit.record(
            session,
            actor=shown,
            action="auth.login_failed",
            entity_type="user",
            entity_id=shown,
            after={"reason": "unknown user or no password login"},
        )
        return None
    if user.locked_until is not None and user.locked_until > now:
        audit.record(
            session,
            actor=user,
            action="auth.login_failed",
            entity_type="user",
            entity_id=user.id,
            after={"reason": "account locked", "locked_until": user.locked_until},
        )
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        count_wrong_password(session, user, reason="wrong password")
        return None
    user.failed_login_count = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(minutes=ttl_minutes or settings.token_ttl_minutes)
    user_rows.add_token(
        session, AccessToken(user_id=user.id, token_hash=_sha256(token), expires_at=expires_at)
    )
    audit.record(
        session,
        actor=user,
        action="auth.login",
        entity_type="user",
        entity_id=user.id,
        after={"expires_at": expires_at},
    )
    return IssuedToken(token, expires_at, user)


@dataclass(frozen=True)
class CallerScope:
    """A service account's scope in force: the domains (UUID strings) it may predict on and,
    when set, the only models it may call."""

    domain_ids: frozenset[str]
    model_ids: frozenset[str] | None


@dataclass(frozen=True)
class Caller:
    """Who is calling, as a Core query reads it (no ORM object): for the prediction path.
    ``scope``: the account's scope in force, None when it has none."""

    id: uuid.UUID
    username: str
    role: Role
    scope: CallerScope | None = None


def _is_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


def _usable(is_active: bool, expires_at: datetime | None) -> bool:
    """The one rule for every credential: an active user, and a token not yet expired (API
    keys do not expire; an administrator revokes them)."""
    return is_active and (expires_at is None or expires_at > utcnow())


def logout(session: Session, user: User, token: str) -> None:
    """End a bearer token now (a browser session's logout), audited."""
    user_rows.expire_token(session, _sha256(token), utcnow())
    audit.record(
        session,
        actor=user,
        action=AuditAction.auth_logout,
        entity_type=AuditEntityType.user,
        entity_id=user.id,
    )


def resolve_credential(session: Session, credential: str) -> User | None:
    """The active user behind a bearer token or an API key, or None."""
    digest = _sha256(credential)
    user: User | None
    expires_at: datetime | None = None
    if _is_api_key(credential):
        user = user_rows.by_api_key_digest(session, digest)
    else:
        found = user_rows.by_token_digest(session, digest)
        user, expires_at = (None, None) if found is None else found
    if user is None or not _usable(user.is_active, expires_at):
        return None
    return user


def resolve_caller(connection: Connection, credential: str) -> Caller | None:
    """:func:`resolve_credential` in one Core query, without an ORM session (the same rule),
    for a route whose unit of work runs on a Core connection (the prediction path)."""
    row = user_rows.caller_by_digest(
        connection, _sha256(credential), api_key=_is_api_key(credential)
    )
    if row is None or not _usable(row.is_active, row.expires_at):
        return None
    scope = None
    if row.has_scope:
        scope = CallerScope(
            frozenset(row.scope_domain_ids or ()),
            None if row.scope_model_ids is None else frozenset(row.scope_model_ids),
        )
    return Caller(row.id, row.username, row.role, scope)
