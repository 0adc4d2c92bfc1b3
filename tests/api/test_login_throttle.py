"""Failed logins are throttled per client address, and an account locks only on failures from
more than one address (or from inside its own session): five requests from a stranger no
longer lock anybody out. Every failed login does the same argon2 work."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditEvent, LoginFailure, User
from app.enums import Role
from app.errors import TooManyAttempts
from app.services import auth as auth_service
from app.settings import Settings, get_settings
from tests.helpers import PASSWORD, Actor, assert_error, from_address, lock_out

TOKEN = "/api/v1/auth/token"
STRANGER = "203.0.113.9"


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post(TOKEN, data={"username": username, "password": password})


def _user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).one()
    session.refresh(user)
    return user


def _actions(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """``clock(delta)`` moves the login service's time forward (the throttle and lockout
    windows; the audit trail keeps the real time)."""
    offset = timedelta()

    def shifted() -> datetime:
        return utcnow() + offset

    def advance(delta: timedelta) -> None:
        nonlocal offset
        offset += delta

    monkeypatch.setattr(auth_service, "utcnow", shifted)
    return advance


def test_five_failed_logins_from_one_address_throttle_the_address_not_the_account(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    stranger = from_address(client, STRANGER)
    limit = get_settings().login_address_limit
    for _ in range(limit):
        assert _login(stranger, "test-auditor", "wrong-wrong-wrong").status_code == 401
    refused = _login(stranger, "test-auditor", PASSWORD)  # even the right password
    assert_error(refused, 429, "too many failed logins", code="too_many_attempts")
    window = get_settings().login_window_minutes * 60
    assert 1 <= int(refused.headers["retry-after"]) <= window
    # The account is not locked: its owner, elsewhere, logs in.
    assert _login(from_address(client, "192.0.2.20"), "test-auditor", PASSWORD).status_code == 200
    assert _user(session, "test-auditor").locked_until is None
    (throttled,) = _actions(session, "auth.login_throttled")
    assert throttled.entity_type == "client_address"
    assert throttled.entity_id == STRANGER
    assert throttled.after is not None
    assert throttled.after["failed_logins"] == limit


def test_a_throttled_attempt_is_refused_unchecked_and_writes_nothing(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    stranger = from_address(client, STRANGER)
    for _ in range(get_settings().login_address_limit):
        _login(stranger, "test-auditor", "wrong-wrong-wrong")

    def written() -> tuple[int, int]:
        events = session.scalar(select(func.count()).select_from(AuditEvent))
        failures = session.scalar(select(func.count()).select_from(LoginFailure))
        return int(events or 0), int(failures or 0)

    before = written()
    for _ in range(3):
        assert _login(stranger, "test-auditor", "wrong-wrong-wrong").status_code == 429
    assert written() == before


def test_guessing_across_user_names_is_throttled_too(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    stranger = from_address(client, STRANGER)
    for i in range(get_settings().login_address_limit):
        assert _login(stranger, f"nobody-{i}", "whatever-whatever").status_code == 401
    assert _login(stranger, "test-qa", PASSWORD).status_code == 429


def test_one_address_never_locks_an_account_however_slowly_it_guesses(
    client: TestClient,
    session: Session,
    actors: dict[Role, Actor],
    clock: Callable[[timedelta], None],
) -> None:
    settings = get_settings()
    stranger = from_address(client, STRANGER)
    for _ in range(3 * settings.lockout_threshold // settings.login_address_limit):
        for _ in range(settings.login_address_limit):
            assert _login(stranger, "test-auditor", "wrong-wrong-wrong").status_code == 401
        assert _login(stranger, "test-auditor", "wrong-wrong-wrong").status_code == 429
        clock(timedelta(minutes=settings.login_window_minutes, seconds=1))
    assert _user(session, "test-auditor").locked_until is None
    assert _actions(session, "auth.lockout") == []
    assert _login(from_address(client, "192.0.2.20"), "test-auditor", PASSWORD).status_code == 200


def test_failures_from_several_addresses_lock_the_account(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    lock_out(client, "test-auditor")
    elsewhere = from_address(client, "192.0.2.20")
    assert_error(_login(elsewhere, "test-auditor", PASSWORD), 401, code="invalid_credentials")
    user = _user(session, "test-auditor")
    assert user.locked_until is not None
    assert user.locked_until > utcnow()
    (lockout,) = _actions(session, "auth.lockout")
    assert lockout.after is not None
    assert lockout.after["client_address"].startswith("198.18.")


def test_failures_that_left_the_window_do_not_count_towards_the_lockout(
    client: TestClient,
    session: Session,
    actors: dict[Role, Actor],
    clock: Callable[[timedelta], None],
) -> None:
    settings = get_settings()
    for burst in range(settings.lockout_threshold // settings.login_address_limit):
        address = from_address(client, f"198.51.100.{burst + 1}")
        for _ in range(settings.login_address_limit):
            assert _login(address, "test-auditor", "wrong-wrong-wrong").status_code == 401
        clock(timedelta(minutes=settings.login_window_minutes, seconds=1))
    assert _user(session, "test-auditor").locked_until is None


def test_a_lockout_ends_and_attempts_while_locked_do_not_count_afterwards(
    client: TestClient,
    session: Session,
    actors: dict[Role, Actor],
    clock: Callable[[timedelta], None],
) -> None:
    settings = get_settings()
    lock_out(client, "test-auditor")
    while_locked = from_address(client, "192.0.2.30")
    for _ in range(settings.login_address_limit - 1):
        assert _login(while_locked, "test-auditor", PASSWORD).status_code == 401
    clock(timedelta(minutes=settings.lockout_minutes, seconds=1))
    owner = from_address(client, "192.0.2.20")
    assert _login(owner, "test-auditor", "wrong-wrong-wrong").status_code == 401
    assert _user(session, "test-auditor").locked_until is None  # one failure, not a new lock
    assert _user(session, "test-auditor").failed_login_count == 1
    assert _login(owner, "test-auditor", PASSWORD).status_code == 200


def test_the_login_page_is_throttled_with_the_api(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    stranger = from_address(client, STRANGER)
    for _ in range(get_settings().login_address_limit):
        assert _login(stranger, "test-qa", "wrong-wrong-wrong").status_code == 401
    page = stranger.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    refused = stranger.post(
        "/login",
        data={"username": "test-qa", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "too many failed logins" in refused.text


# ------------------------------------------------------------------- the same argon2 work


class _CountingHasher:
    """The service's PasswordHasher, noting the hash each verify() was given."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.verified: list[str] = []

    def verify(self, hash: str, password: str) -> bool:
        self.verified.append(hash)
        return bool(self.real.verify(hash, password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _argon2_parameters(encoded: str) -> str:
    """``$argon2id$v=19$m=65536,t=3,p=4$salt$hash`` -> ``argon2id v=19 m=65536,t=3,p=4``."""
    variant, version, parameters = encoded.split("$")[1:4]
    return f"{variant} {version} {parameters}"


def test_unknown_wrong_locked_and_inactive_logins_do_the_same_argon2_work(
    client: TestClient,
    session: Session,
    actors: dict[Role, Actor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = actors[Role.admin].headers
    body = {"username": "leaver-t", "full_name": "L", "role": "qa", "password": PASSWORD}
    assert client.post("/api/v1/users", json=body | {"reason": "t"}, headers=admin).is_success
    r = client.post("/api/v1/users/leaver-t/deactivate", json={"reason": "left"}, headers=admin)
    assert r.status_code == 200
    lock_out(client, "test-auditor")
    real_hash = _user(session, "test-qa").password_hash
    assert real_hash is not None
    hasher = _CountingHasher(auth_service._hasher)
    monkeypatch.setattr(auth_service, "_hasher", hasher)
    cases = {
        "unknown": ("nobody-at-all", PASSWORD),
        "wrong password": ("test-qa", "wrong-wrong-wrong"),
        "locked": ("test-auditor", PASSWORD),
        "inactive": ("leaver-t", PASSWORD),
        "service account": ("test-plant", PASSWORD),
    }
    for i, (case, (username, password)) in enumerate(cases.items()):
        hasher.verified.clear()
        response = _login(from_address(client, f"192.0.2.{100 + i}"), username, password)
        assert response.status_code == 401, case
        assert len(hasher.verified) == 1, case
        assert _argon2_parameters(hasher.verified[0]) == _argon2_parameters(real_hash), case


# ------------------------------------------------------------------------- the throttle key


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # the same host's next address: same key
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("testclient", "testclient"),
        (None, auth_service.UNKNOWN_ADDRESS),
        ("x" * 300, "x" * 64),
    ],
)
def test_the_throttle_counts_by_address_and_by_ipv6_64(host: str | None, key: str) -> None:
    assert auth_service.throttle_key(host) == key


def test_the_address_limit_must_stay_below_the_lockout_threshold() -> None:
    with pytest.raises(ValidationError, match="below"):
        Settings(login_address_limit=10, lockout_threshold=10)
    assert Settings().login_address_limit < Settings().lockout_threshold


# --------------------------------------------------------------- several workers, one limit


def test_concurrent_logins_from_one_address_stop_at_the_limit(pg_engine: Engine) -> None:
    """Eight simultaneous wrong logins from one address (as from several workers): exactly
    the limit are checked and recorded, the rest are refused."""
    with Session(pg_engine) as s, s.begin():
        auth_service.create_user(
            s,
            username="target",
            full_name="T",
            role=Role.qa,
            password=PASSWORD,
            actor="pytest",
            reason="t",
        )
    n = 8
    barrier = threading.Barrier(n)

    def attempt(_: int) -> str:
        with Session(pg_engine, expire_on_commit=False) as s:
            barrier.wait(timeout=30)
            try:
                with s.begin():
                    issued = auth_service.login(
                        s, username="target", password="wrong-wrong-wrong", client_host=STRANGER
                    )
            except TooManyAttempts:
                return "throttled"
            return "issued" if issued else "refused"

    with ThreadPoolExecutor(n) as pool:
        outcomes = sorted(pool.map(attempt, range(n)))
    limit = get_settings().login_address_limit
    assert outcomes == ["refused"] * limit + ["throttled"] * (n - limit)
    with Session(pg_engine) as s:
        recorded = s.scalar(select(func.count()).select_from(LoginFailure))
        throttled = s.scalar(
            select(func.count()).where(AuditEvent.action == "auth.login_throttled")
        )
    assert (recorded, throttled) == (limit, 1)
