import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent
from app.enums import Role
from app.errors import InvalidInput
from app.services import auth as auth_service
from tests.helpers import PASSWORD, Actor, assert_error, from_address, lock_out


def _login(client: TestClient, username: str, password: str) -> int:
    return client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    ).status_code


def test_login_returns_an_expiring_bearer_token(client: TestClient) -> None:
    r = client.post("/api/v1/auth/token", data={"username": "test-qa", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_at"]
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "test-qa"


def test_wrong_password_is_401_in_the_envelope_and_audited(
    client: TestClient, session: Session
) -> None:
    r = client.post("/api/v1/auth/token", data={"username": "test-qa", "password": "nope" * 4})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_credentials"
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "test-qa"))
    assert "auth.login_failed" in list(actions)


def test_account_locks_after_repeated_failures(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    lock_out(client, "test-auditor")  # from several addresses: see test_login_throttle.py
    # Locked now: even the right password is refused.
    assert _login(from_address(client, "192.0.2.20"), "test-auditor", PASSWORD) == 401


def test_service_account_gets_an_api_key_once(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    r = client.post(
        "/api/v1/users",
        json={
            "username": "opc-gateway",
            "full_name": "Plant OPC gateway",
            "role": "plant",
            "reason": "new line 3 gateway",
        },
        headers=actors[Role.admin].headers,
    )
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]
    assert key.startswith("ssr_")
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
    assert me.json()["role"] == "plant"
    assert "api_key" not in me.json()


def test_missing_or_bad_credentials_are_401(client: TestClient) -> None:
    assert client.get("/api/v1/users/me").status_code == 401
    r = client.get("/api/v1/users/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"


def test_only_admin_creates_users(client: TestClient, actors: dict[Role, Actor]) -> None:
    body = {
        "username": "x-user",
        "full_name": "X",
        "role": "qa",
        "password": PASSWORD,
        "reason": "hire",
    }
    r = client.post("/api/v1/users", json=body, headers=actors[Role.developer].headers)
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


def test_validation_errors_use_the_envelope(client: TestClient, actors: dict[Role, Actor]) -> None:
    r = client.post("/api/v1/users", json={"username": "x"}, headers=actors[Role.admin].headers)
    assert_error(r, 422, code="invalid_input")


def _login_events(session: Session) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
    return list(session.scalars(stmt.order_by(AuditEvent.seq)))


@pytest.mark.parametrize(
    ("username", "fragment"),
    [
        ("u" * 65, "username: String should have at most 64 characters"),
        ("u" * 2**13, "username: String should have at most 64 characters"),
        ("test-qa\x00", "username: must not contain the NUL character"),
    ],
    ids=["65 characters", "8 KiB", "NUL"],
)
def test_a_user_name_no_account_can_have_is_a_422_and_not_audited(
    client: TestClient, session: Session, username: str, fragment: str
) -> None:
    """No account has such a name (user names are at most 64 characters, without NUL): the
    form refuses it before a look-up, so nothing reaches the append-only audit trail."""
    before = len(_login_events(session))
    r = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert_error(r, 422, fragment, code="invalid_input")
    assert len(r.content) < 1024
    assert len(_login_events(session)) == before


def test_a_64_character_unknown_name_is_a_401_audited_under_that_name(
    client: TestClient, session: Session
) -> None:
    name = "n" * 64
    assert _login(client, name, PASSWORD) == 401
    (event,) = [e for e in _login_events(session) if e.entity_id == name]
    assert event.actor == name


def test_the_login_service_audits_a_bounded_name_whoever_calls_it(session: Session) -> None:
    """Below the API (the CLI, a page that forgot its bound): a 1 MiB name or a NUL is not
    looked up, and the audit event holds at most 64 characters of it, NUL replaced."""
    for entered in ("x" * 2**20, "ab\x00cd"):
        assert (
            auth_service.login(
                session, username=entered, password=PASSWORD, client_host="192.0.2.7"
            )
            is None
        )
        event = _login_events(session)[-1]
        assert event.actor == event.entity_id == entered[:64].replace("\x00", "\ufffd")
        assert len(event.actor) <= 64


@pytest.mark.parametrize("username", ["u" * 65, "a\x00b", ""], ids=["65", "NUL", "blank"])
def test_no_caller_creates_a_user_whose_name_could_not_log_in(
    session: Session, username: str
) -> None:
    """The CLI reaches the service without a schema in front of it."""
    with pytest.raises(InvalidInput, match="1 to 64 characters"):
        auth_service.create_user(
            session,
            username=username,
            full_name="N",
            role=Role.qa,
            password=PASSWORD,
            actor="pytest",
            reason="r",
        )
