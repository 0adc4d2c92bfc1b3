"""Account administration: list, deactivate and reactivate, unlock, roles, API keys, passwords.

Every change is made under the user row's lock and audited with its reason, before and after
(the snapshot of :func:`app.services.auth.user_snapshot`); nothing is deleted: a deactivated
account keeps its history, a revoked API key its prefix in the audit trail.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import User
from app.db.repositories import users as user_rows
from app.enums import AuditAction, AuditEntityType, PasswordCheck, Role
from app.errors import Conflict, InvalidInput, NotFound
from app.services import audit
from app.services.auth import (
    API_KEY_PREFIX,
    MIN_PASSWORD_LENGTH,
    _dummy_verify,
    _hasher,
    _reset_failures,
    _sha256,
    count_wrong_password,
    user_snapshot,
)


def list_users(session: Session) -> list[User]:
    return user_rows.all_users(session)


def _locked_user(session: Session, username: str) -> User:
    user = user_rows.by_username(session, username, for_update=True)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def _audited(
    session: Session,
    user: User,
    action: AuditAction,
    before: dict[str, object],
    *,
    actor: User,
    reason: str,
) -> User:
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type=AuditEntityType.user,
        entity_id=user.id,
        reason=reason,
        before=before,
        after=user_snapshot(user),
    )
    return user


def set_active(session: Session, username: str, *, active: bool, actor: User, reason: str) -> User:
    """Deactivate (every token and key of the account stops working) or reactivate it."""
    user = _locked_user(session, username)
    if user.id == actor.id and not active:
        raise Conflict("an administrator cannot deactivate their own account")
    if user.is_active == active:
        raise Conflict(f"user {username!r} is already {'active' if active else 'inactive'}")
    before = user_snapshot(user)
    user.is_active = active
    action = AuditAction.user_reactivate if active else AuditAction.user_deactivate
    return _audited(session, user, action, before, actor=actor, reason=reason)


def unlock(session: Session, username: str, *, actor: User, reason: str) -> User:
    """Lift a lockout after failed logins (the failure count starts again at 0)."""
    user = _locked_user(session, username)
    if user.locked_until is None or user.locked_until <= utcnow():
        raise Conflict(f"user {username!r} is not locked")
    before = {**user_snapshot(user), "locked_until": user.locked_until}
    _reset_failures(user, utcnow())
    return _audited(session, user, AuditAction.user_unlock, before, actor=actor, reason=reason)


def set_role(session: Session, username: str, *, role: Role, actor: User, reason: str) -> User:
    """Change a person's role; a service account (plant) and a person cannot swap kinds."""
    user = _locked_user(session, username)
    if (user.role is Role.plant) != (role is Role.plant):
        raise InvalidInput(
            "a service account (role plant, API key) and a person (password) cannot change "
            "into each other: create the other kind of account"
        )
    if user.id == actor.id and role is not Role.admin:
        raise Conflict("an administrator cannot take away their own admin role")
    if user.role is role:
        raise Conflict(f"user {username!r} already has role {role.value}")
    before = user_snapshot(user)
    user.role = role
    return _audited(session, user, AuditAction.user_role, before, actor=actor, reason=reason)


@dataclass(frozen=True)
class RotatedKey:
    user: User
    api_key: str


def rotate_api_key(session: Session, username: str, *, actor: User, reason: str) -> RotatedKey:
    """A new API key for a service account (shown once); the old one stops working at once."""
    user = _service_account(session, username)
    before = user_snapshot(user)
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    user.api_key_hash = _sha256(api_key)
    user.api_key_prefix = api_key[:12]
    _audited(session, user, AuditAction.user_api_key_rotate, before, actor=actor, reason=reason)
    return RotatedKey(user, api_key)


def revoke_api_key(session: Session, username: str, *, actor: User, reason: str) -> User:
    """Revoke a service account's API key (e.g. leaked); rotate to issue a new one."""
    user = _service_account(session, username)
    if user.api_key_hash is None:
        raise Conflict(f"user {username!r} has no API key to revoke")
    before = user_snapshot(user)
    user.api_key_hash = None
    user.api_key_prefix = None
    return _audited(
        session, user, AuditAction.user_api_key_revoke, before, actor=actor, reason=reason
    )


def _service_account(session: Session, username: str) -> User:
    user = _locked_user(session, username)
    if user.role is not Role.plant:
        raise InvalidInput(f"user {username!r} is a person: API keys are for service accounts")
    return user


def change_password(
    session: Session, user: User, *, current_password: str, new_password: str
) -> bool:
    """The caller's own password, after entering the current one again.

    A wrong current password returns False after counting towards the lockout and auditing
    it (the caller must commit, as for a failed login).
    """
    locked = user_rows.by_username(session, user.username, for_update=True)
    assert locked is not None
    now = utcnow()
    ok = locked.password_hash is not None and (
        locked.locked_until is None or locked.locked_until <= now
    )
    if ok:
        try:
            assert locked.password_hash is not None
            _hasher.verify(locked.password_hash, current_password)
        except (VerificationError, InvalidHashError):
            ok = False
    else:  # locked or no password: the same work, so timing says nothing
        _dummy_verify(current_password)
    if not ok:
        count_wrong_password(
            session,
            locked,
            reason="wrong current password at a password change",
            check=PasswordCheck.password_change,
        )
        return False
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if new_password == current_password:
        raise InvalidInput("the new password must differ from the current one")
    before = user_snapshot(locked)
    locked.password_hash = _hasher.hash(new_password)
    _reset_failures(locked, now)
    _audited(
        session,
        locked,
        AuditAction.user_password_change,
        before,
        actor=locked,
        reason="password changed by its owner",
    )
    return True
