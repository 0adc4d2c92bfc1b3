"""Browser sessions: the login's bearer token in a cookie, and CSRF tokens for every form.

The cookie holds the same kind of token ``POST /auth/token`` issues (only its sha256 is
stored), with the web session's lifetime (setting ``web_session_minutes``); it is HttpOnly,
SameSite=Strict, and Secure when the request came over TLS (directly or through a proxy that
says so) or when ``cookie_secure`` is set. A form carries a CSRF token derived from the session
token (HMAC), so a page of another site can neither read nor forge it; the login form, before
any session exists, uses a random double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.db.models import User
from app.services import auth as auth_service
from app.settings import get_settings

SESSION_COOKIE = "ssr_session"
LOGIN_CSRF_COOKIE = "ssr_login_csrf"


def _secure(request: Request) -> bool:
    return get_settings().cookie_secure or request.url.scheme == "https"


def set_session_cookie(
    response: Response, request: Request, token: str, expires_at: datetime
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        expires=expires_at,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def page_user(request: Request, session: Session) -> User | None:
    """The signed-in person behind the session cookie (None if absent, expired or revoked)."""
    token = session_token(request)
    if token is None or auth_service._is_api_key(token):
        return None
    return auth_service.resolve_credential(session, token)


def csrf_token(request: Request) -> str:
    """The CSRF token of this session's forms (empty without a session)."""
    token = session_token(request)
    if token is None:
        return ""
    return hmac.new(token.encode(), b"ssr-csrf-v1", hashlib.sha256).hexdigest()


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected) and submitted is not None and hmac.compare_digest(expected, submitted)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=1800,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or submitted is None:
        return False
    return hmac.compare_digest(cookie, submitted)
