"""Users, passwords (argon2), bearer tokens, API keys, the login throttle and the lockout.

Failed password checks are counted over a sliding window (``login_window_minutes``) in the
``login_failure`` table, so every worker process sees the same counts:

- **per client address** (the login throttle): after ``login_address_limit`` failed logins
  from one address in the window, further logins from it are refused (429 with
  ``Retry-After``, no password checked) until the oldest of them leaves the window. Failures
  for every user name count, unknown ones included, so guessing across accounts is bounded too;
- **per account** (the lockout): after ``lockout_threshold`` failures against one account in
  the window, from any addresses, logins, re-authentications and password changes, the account
  is locked for ``lockout_minutes`` (an administrator can lift it). The address limit is below
  the threshold (the settings refuse otherwise), so no single address can lock anybody out:
  that takes failures from two or more addresses, or from inside the account's own session.

Every login answers after exactly one argon2 verification, against the account's hash or, for
an unknown name, an account without a password, an inactive or a locked one, against a dummy
hash made with the same parameters: the time taken says nothing about which it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AccessToken, LoginFailure, User
from app.db.repositories import login_failures as failure_rows
from app.db.repositories import users as user_rows
from app.enums import AuditAction, AuditEntityType, PasswordCheck, Role
from app.errors import Conflict, InvalidInput, TooManyAttempts
from app.services import audit
from app.settings import get_settings
from app.telemetry.context import note_user

_hasher = PasswordHasher()
# A fixed hash verified when the user does not exist, so timing does not reveal user names.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
API_KEY_PREFIX = "ssr_"
MIN_PASSWORD_LENGTH = 12
# The throttle key of a login whose client address the server does not know (a Unix socket).
UNKNOWN_ADDRESS = "unknown"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def throttle_key(host: str | None) -> str:
    """What the login throttle counts by: an IPv4 address; an IPv6 address by its /64 (one
    host is commonly given a whole /64, so its single addresses cost nothing); an IPv4-mapped
    IPv6 address as the IPv4 one; any other name as given (at most 64 characters)."""
    if not host:
        return UNKNOWN_ADDRESS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _dummy_verify(password: str) -> None:
    """The argon2 work of a real check, for a login that has no hash to check against."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_DUMMY_HASH, password)


def _window_start(now: datetime) -> datetime:
    return now - timedelta(minutes=get_settings().login_window_minutes)


def _reset_failures(user: User, at: datetime) -> None:
    """A successful password check or an unlock: earlier failures no longer count."""
    user.failed_login_count = 0
    user.locked_until = None
    user.failures_reset_at = at


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


def count_wrong_password(
    session: Session,
    user: User,
    *,
    reason: str,
    check: PasswordCheck,
    address: str | None = None,
) -> None:
    """A wrong password for ``user``: recorded, counted towards the lockout (locked for
    ``lockout_minutes`` once ``lockout_threshold`` failures against it fall in the window)
    and audited. ``address``: the login's throttle key (None inside a session)."""
    settings = get_settings()
    now = utcnow()
    failure_rows.add(
        session, LoginFailure(occurred_at=now, kind=check, client_address=address, user_id=user.id)
    )
    since = max(_window_start(now), user.failures_reset_at or _EPOCH)
    count = failure_rows.count_against(session, user.id, since=since)
    locked = count >= settings.lockout_threshold
    if locked:
        user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
        # The attempts made while locked (refused unchecked) never count afterwards.
        user.failures_reset_at = user.locked_until
        user.failed_login_count = 0
    else:
        user.failed_login_count = count
        if user.locked_until is not None and user.locked_until <= now:
            user.locked_until = None  # an ended lockout
    after: dict[str, object] = {"reason": reason, "locked_until": user.locked_until}
    if address is not None:
        after["client_address"] = address
    audit.record(
        session,
        actor=user,
        action=AuditAction.auth_lockout if locked else AuditAction.auth_login_failed,
        entity_type=AuditEntityType.user,
        entity_id=user.id,
        after=after,
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
        _dummy_verify(password)
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
        count_wrong_password(
            session,
            user,
            reason="wrong password at re-authentication",
            check=PasswordCheck.reauthentication,
        )
        return False
    _reset_failures(user, now)
    return True


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    user: User


def login(
    session: Session,
    *,
    username: str,
    password: str,
    client_host: str | None,
    ttl_minutes: int | None = None,
) -> IssuedToken | None:
    """Check a password and issue a bearer token, or record the failure and return None.

    ``client_host``: the address the request came from (the throttle counts by
    :func:`throttle_key`). Raises :class:`~app.errors.TooManyAttempts` (nothing checked,
    nothing written) while that address is over its limit. A failure is recorded and audited,
    so the caller must commit even when this returns None; an attempt on a locked account
    fails without its password being checked (but after the same argon2 work).
    """
    settings = get_settings()
    now = utcnow()
    address = throttle_key(client_host)
    failure_rows.lock_address(session, address)
    _refuse_if_throttled(session, address, now)
    shown = bounded_username(username)
    # A name no account can have (too long, a NUL) is not looked up; the API refuses it
    # before this (422), and the failure is audited under the bounded name only.
    possible = shown == username
    user = user_rows.by_username(session, username, for_update=True) if possible else None
    if user is None or user.password_hash is None or not user.is_active:
        _dummy_verify(password)
        _failed_login(session, address, now)
        audit.record(
            session,
            actor=shown,
            action="auth.login_failed",
            entity_type="user",
            entity_id=shown,
            after={"reason": "unknown user or no password login", "client_address": address},
        )
        return None
    if user.locked_until is not None and user.locked_until > now:
        _dummy_verify(password)
        _failed_login(session, address, now)
        audit.record(
            session,
            actor=user,
            action="auth.login_failed",
            entity_type="user",
            entity_id=user.id,
            after={
                "reason": "account locked",
                "locked_until": user.locked_until,
                "client_address": address,
            },
        )
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        count_wrong_password(
            session, user, reason="wrong password", check=PasswordCheck.login, address=address
        )
        _failed_login(session, address, now, recorded=True)
        return None
    _reset_failures(user, now)
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
        after={"expires_at": expires_at, "client_address": address},
    )
    note_user(user.username)
    return IssuedToken(token, expires_at, user)


def _refuse_if_throttled(session: Session, address: str, now: datetime) -> None:
    limit = get_settings().login_address_limit
    newest = failure_rows.newest_logins_from(
        session, address, since=_window_start(now), limit=limit
    )
    if len(newest) < limit:
        return
    # Open again once the oldest of those leaves the window.
    wait = newest[-1] + timedelta(minutes=get_settings().login_window_minutes) - now
    seconds = max(1, math.ceil(wait.total_seconds()))
    raise TooManyAttempts(
        f"too many failed logins from your address ({limit} within "
        f"{get_settings().login_window_minutes} minutes); try again in {seconds} s",
        retry_after_seconds=seconds,
    )


def _failed_login(session: Session, address: str, now: datetime, *, recorded: bool = False) -> None:
    """A failed login from ``address``, counted by its throttle (``recorded``: already, by
    :func:`count_wrong_password`); audited once, when it reaches the limit (the attempts
    refused after that write nothing, so they cost the database nothing either)."""
    settings = get_settings()
    if not recorded:
        failure_rows.add(
            session, LoginFailure(occurred_at=now, kind=PasswordCheck.login, client_address=address)
        )
    session.flush()
    since = _window_start(now)
    newest = failure_rows.newest_logins_from(
        session, address, since=since, limit=settings.login_address_limit
    )
    if len(newest) == settings.login_address_limit:
        open_at = newest[-1] + timedelta(minutes=settings.login_window_minutes)
        audit.record(
            session,
            actor=address,
            action=AuditAction.auth_login_throttled,
            entity_type=AuditEntityType.client_address,
            entity_id=address,
            after={
                "failed_logins": settings.login_address_limit,
                "window_minutes": settings.login_window_minutes,
                "refused_until": open_at,
            },
        )


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
    note_user(user.username)
    return user


def resolve_caller(connection: Connection, credential: str) -> Caller | None:
    """:func:`resolve_credential` in one Core query, without an ORM session (the same rule),
    for a route whose unit of work runs on a Core connection (the prediction path)."""
    row = user_rows.caller_by_digest(
        connection, _sha256(credential), api_key=_is_api_key(credential)
    )
    if row is None or not _usable(row.is_active, row.expires_at):
        return None
    note_user(row.username)
    scope = None
    if row.has_scope:
        scope = CallerScope(
            frozenset(row.scope_domain_ids or ()),
            None if row.scope_model_ids is None else frozenset(row.scope_model_ids),
        )
    return Caller(row.id, row.username, row.role, scope)
