"""Account administration: deactivate, reactivate, unlock, roles, API keys, own password."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent
from app.enums import Role
from tests.helpers import PASSWORD, Actor, assert_error, lock_out


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def _create(client: TestClient, admin: dict[str, str], username: str, role: str) -> Any:
    body: dict[str, Any] = {"username": username, "full_name": "A. Person", "role": role}
    body["reason"] = "new colleague"
    if role != "plant":
        body["password"] = PASSWORD
    r = client.post("/api/v1/users", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_deactivated_account_stops_working_and_can_be_reactivated(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    admin = actors[Role.admin].headers
    _create(client, admin, "leaver", "qa")
    token = _login(client, "leaver", PASSWORD).json()["access_token"]
    assert client.get("/api/v1/users/me", headers=_bearer(token)).status_code == 200

    r = client.post("/api/v1/users/leaver/deactivate", json={"reason": "left"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["is_active"] is False
    assert_error(client.get("/api/v1/users/me", headers=_bearer(token)), 401)
    assert _login(client, "leaver", PASSWORD).status_code == 401
    (event,) = _events(session, "user.deactivate")
    assert event.reason == "left"
    assert event.before is not None
    assert event.after is not None
    assert (event.before["is_active"], event.after["is_active"]) == (True, False)
    assert_error(
        client.post("/api/v1/users/leaver/deactivate", json={"reason": "x"}, headers=admin),
        409,
        "already inactive",
    )
    listed = {u["username"]: u for u in client.get("/api/v1/users", headers=admin).json()}
    assert listed["leaver"]["is_active"] is False  # kept, not deleted
    assert listed["leaver"]["created_by"] == "test-admin"

    r = client.post("/api/v1/users/leaver/reactivate", json={"reason": "back"}, headers=admin)
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/users/me", headers=_bearer(token)).status_code == 200
    assert_error(
        client.post("/api/v1/users/test-admin/deactivate", json={"reason": "x"}, headers=admin),
        409,
        "own account",
    )
    assert_error(
        client.post("/api/v1/users/nobody/deactivate", json={"reason": "x"}, headers=admin),
        404,
        "nobody",
    )


def test_an_administrator_unlocks_a_locked_account(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    admin = actors[Role.admin].headers
    _create(client, admin, "forgetful", "developer")
    assert_error(
        client.post("/api/v1/users/forgetful/unlock", json={"reason": "x"}, headers=admin),
        409,
        "not locked",
    )
    lock_out(client, "forgetful")
    assert _login(client, "forgetful", PASSWORD).status_code == 401  # locked
    locked = {u["username"]: u for u in client.get("/api/v1/users", headers=admin).json()}
    assert locked["forgetful"]["locked_until"] is not None

    r = client.post(
        "/api/v1/users/forgetful/unlock", json={"reason": "identity checked"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["locked_until"] is None
    assert _login(client, "forgetful", PASSWORD).status_code == 200
    (event,) = _events(session, "user.unlock")
    assert event.reason == "identity checked"


def test_roles_change_within_people_only(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    admin = actors[Role.admin].headers
    _create(client, admin, "reviewer", "qa")
    r = client.post(
        "/api/v1/users/reviewer/role", json={"role": "auditor", "reason": "moved"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "auditor"
    (event,) = _events(session, "user.role")
    assert event.before is not None
    assert event.after is not None
    assert (event.before["role"], event.after["role"]) == ("qa", "auditor")
    assert_error(
        client.post(
            "/api/v1/users/reviewer/role", json={"role": "plant", "reason": "x"}, headers=admin
        ),
        422,
        "cannot change into each other",
    )
    assert_error(
        client.post(
            "/api/v1/users/test-admin/role", json={"role": "qa", "reason": "x"}, headers=admin
        ),
        409,
        "own admin role",
    )


def test_a_service_accounts_key_is_rotated_and_revoked(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    admin = actors[Role.admin].headers
    old_key = _create(client, admin, "opc-line-3", "plant")["api_key"]
    assert client.get("/api/v1/users/me", headers=_bearer(old_key)).status_code == 200

    r = client.post("/api/v1/users/opc-line-3/api-key", json={"reason": "leaked"}, headers=admin)
    assert r.status_code == 200, r.text
    new_key = r.json()["api_key"]
    assert new_key.startswith("ssr_")
    assert new_key != old_key
    assert r.json()["api_key_prefix"] == new_key[:12]
    assert_error(client.get("/api/v1/users/me", headers=_bearer(old_key)), 401)
    assert client.get("/api/v1/users/me", headers=_bearer(new_key)).status_code == 200
    (rotated,) = _events(session, "user.api_key_rotate")
    assert new_key not in str(rotated.after)  # the key itself is never audited or stored

    r = client.post(
        "/api/v1/users/opc-line-3/api-key/revoke", json={"reason": "retired"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["api_key_prefix"] is None
    assert_error(client.get("/api/v1/users/me", headers=_bearer(new_key)), 401)
    assert_error(
        client.post("/api/v1/users/opc-line-3/api-key/revoke", json={"reason": "x"}, headers=admin),
        409,
        "no API key",
    )
    assert_error(
        client.post("/api/v1/users/test-qa/api-key", json={"reason": "x"}, headers=admin),
        422,
        "service accounts",
    )


def test_a_user_changes_their_own_password_after_entering_it_again(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    admin = actors[Role.admin].headers
    _create(client, admin, "chemist", "developer")
    token = _login(client, "chemist", PASSWORD).json()["access_token"]
    me = _bearer(token)
    new = "a much longer passphrase"

    wrong = client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not it at all", "new_password": new},
        headers=me,
    )
    assert_error(wrong, 401, "current password is wrong")
    failed = [e for e in _events(session, "auth.login_failed") if e.actor == "chemist"]
    assert failed  # audited and committed though the call failed
    assert_error(
        client.post(
            "/api/v1/users/me/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD},
            headers=me,
        ),
        422,
        "must differ",
    )
    r = client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=me,
    )
    assert r.status_code == 200, r.text
    assert _login(client, "chemist", PASSWORD).status_code == 401
    assert _login(client, "chemist", new).status_code == 200
    (event,) = _events(session, "user.password_change")
    assert event.actor == "chemist"
    assert_error(
        client.post(
            "/api/v1/users/me/password",
            json={"current_password": "x", "new_password": "y" * 12},
            headers=actors[Role.plant].headers,
        ),
        403,
    )
