"""Part 11 signatures on versions and transfer records: who may sign what, the password
entered again, the content hash, and what an approval does to the lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditEvent, Signature, User
from app.enums import Role
from app.services.signatures import lifecycle_history
from app.settings import get_settings
from tests.factories import train_transfer_source
from tests.helpers import PASSWORD, Actor, assert_error, without_guards
from tests.signing import (
    approve_version,
    complete_transfer,
    sign_transfer,
    sign_version,
    signature_body,
)

CARD = "/api/v1/models/titer_pls/versions/{}"


def _card(client: TestClient, actor: Actor, version: int = 1) -> dict[str, Any]:
    r = client.get(CARD.format(version), headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _actions(session: Session, *names: str) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action.in_(names)).order_by(AuditEvent.seq)
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------


def test_developer_authors_and_qa_approves_a_trained_version(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    r = sign_version(client, dev, "authored")
    assert r.status_code == 201, r.text
    authored = r.json()
    assert authored["meaning"] == "authored"
    assert authored["signer_username"] == dev.user.username
    assert authored["signer_full_name"] == dev.user.full_name
    assert authored["signer_role"] == "developer"
    assert authored["valid"] is True
    assert authored["version_status"] == "draft"
    assert authored["record"] == "titer_pls v1"
    assert _card(client, dev)["approvable"] is True

    before = utcnow()
    r = sign_version(client, qa, "approved", comment="held-out RMSE within the plan")
    assert r.status_code == 201, r.text
    approved = r.json()
    assert approved["version_status"] == "approved"
    due = approved["review_due_at"]
    assert due is not None
    card = _card(client, dev)
    assert card["status"] == "approved"
    assert card["qualified"] is True
    assert card["approvable"] is False  # already approved: no legal approval from here
    assert [(s["meaning"], s["valid"]) for s in card["signatures"]] == [
        ("authored", True),
        ("approved", True),
    ]
    assert card["signatures"][1]["comment"] == "held-out RMSE within the plan"
    assert card["signatures"][0]["content_sha256"] == card["signatures"][1]["content_sha256"]
    # review date: now + the default interval (365 days)
    due_at = datetime.fromisoformat(card["review_due_at"])
    assert timedelta(days=364) < due_at - before < timedelta(days=366)

    signs = _actions(session, "signature.sign")
    assert [e.after["meaning"] for e in signs if e.after] == ["authored", "approved"]
    assert all(e.entity_type == "signature" for e in signs)
    (transition,) = _actions(session, "model_version.transition")
    assert transition.before is not None
    assert transition.after is not None
    assert transition.before["status"] == "draft"
    assert transition.after["status"] == "approved"
    assert transition.after["trigger"] == "signature"
    assert transition.after["signature_id"] == approved["id"]
    assert transition.reason == "held-out RMSE within the plan"

    r = client.get(CARD.format(1) + "/lifecycle", headers=actors[Role.auditor].headers)
    assert r.status_code == 200, r.text
    (event,) = r.json()
    assert (event["from_status"], event["to_status"]) == ("draft", "approved")
    assert event["signature"]["id"] == approved["id"]
    assert event["signature"]["valid"] is True
    assert event["signed_entity"] == "model_version"
    assert event["actor"] == qa.user.username
    r = client.get("/api/v1/models/titer_pls/versions", headers=dev.headers)
    assert r.json()[0]["signatures"] == card["signatures"]


def test_a_wrong_password_is_a_401_counted_and_audited_and_nothing_is_signed(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    dev = actors[Role.developer]
    body = signature_body(dev, "authored") | {"password": "not the password"}
    r = client.post(CARD.format(1) + "/signatures", json=body, headers=dev.headers)
    assert_error(r, 401, "nothing was signed", code="invalid_credentials")
    user = session.get(User, dev.user.id)
    assert user is not None
    session.refresh(user)
    assert user.failed_login_count == 1
    assert session.scalars(select(Signature)).all() == []
    failed = _actions(session, "auth.login_failed", "signature.refused")
    assert [e.action for e in failed] == ["auth.login_failed", "signature.refused"]
    assert failed[1].entity_type == "model_version"
    assert failed[1].entity_id == trained["version"]["id"]
    # Another person's user name with one's own password is refused too (both components).
    body = signature_body(dev, "authored") | {"username": actors[Role.qa].user.username}
    r = client.post(CARD.format(1) + "/signatures", json=body, headers=dev.headers)
    assert_error(r, 401, code="invalid_credentials")
    # The right password resets the count.
    assert sign_version(client, dev, "authored").status_code == 201
    session.refresh(user)
    assert user.failed_login_count == 0


def test_repeated_wrong_passwords_lock_the_signer_out(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    qa = actors[Role.qa]
    sign_version(client, actors[Role.developer], "authored")
    body = signature_body(qa, "approved") | {"password": "wrong wrong wrong"}
    for _ in range(get_settings().lockout_threshold):
        r = client.post(CARD.format(1) + "/signatures", json=body, headers=qa.headers)
        assert r.status_code == 401
    user = session.get(User, qa.user.id)
    assert user is not None
    session.refresh(user)
    assert user.locked_until is not None
    assert user.locked_until > utcnow()
    assert len(_actions(session, "auth.lockout")) == 1
    # Locked: even the right password does not sign.
    assert_error(sign_version(client, qa, "approved"), 401, code="invalid_credentials")
    assert _card(client, qa)["status"] == "draft"


def test_only_qa_reviews_approves_or_rejects(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer]
    sign_version(client, dev, "authored")
    for meaning in ("reviewed", "approved", "rejected"):
        assert_error(sign_version(client, dev, meaning), 403, "only QA", code="forbidden")
    assert_error(sign_version(client, actors[Role.qa], "authored"), 403, "only a developer")
    for role in (Role.admin, Role.auditor, Role.plant):
        r = client.post(
            CARD.format(1) + "/signatures",
            json=signature_body(actors[Role.qa], "reviewed"),
            headers=actors[role].headers,
        )
        assert_error(r, 403, code="forbidden")


def test_only_the_developer_who_made_the_record_authors_it(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    other = _person(client, actors, "dev-other", Role.developer)
    assert_error(sign_version(client, other, "authored"), 403, "created or completed")
    assert sign_version(client, actors[Role.developer], "authored").status_code == 201
    assert_error(sign_version(client, actors[Role.developer], "authored"), 409, "already")


def _person(client: TestClient, actors: dict[Role, Actor], name: str, role: Role) -> Actor:
    """A new person with the test password, signed in."""
    body = {
        "username": name,
        "full_name": f"Person {name}",
        "role": role.value,
        "password": PASSWORD,
        "reason": "test",
    }
    r = client.post("/api/v1/users", json=body, headers=actors[Role.admin].headers)
    assert r.status_code == 201, r.text
    token = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    user = User(id=r.json()["id"], username=name, full_name=f"Person {name}", role=role)
    return Actor(user, token.json()["access_token"])


def test_nobody_approves_or_reviews_a_record_they_created(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    """A developer who trained v2 and then moved to QA cannot approve it (self-approval)."""
    author = _person(client, actors, "dev-then-qa", Role.developer)
    body = {
        "dataset_sha256": trained["version"]["dataset_sha256"],
        "intended_use": "monitoring",
        "reason": "second calibration",
    }
    r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=author.headers)
    assert r.status_code == 201, r.text
    assert sign_version(client, author, "authored", version=2).status_code == 201
    r = client.post(
        f"/api/v1/users/{author.user.username}/role",
        json={"role": "qa", "reason": "moved to QA"},
        headers=actors[Role.admin].headers,
    )
    assert r.status_code == 200, r.text
    for meaning in ("approved", "reviewed", "rejected"):
        assert_error(sign_version(client, author, meaning, version=2), 403, "self-approval")
    assert sign_version(client, actors[Role.qa], "approved", version=2).status_code == 201


def test_approval_needs_an_authored_signature_and_a_comment(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    qa = actors[Role.qa]
    assert _card(client, qa)["approvable"] is False
    assert any("no authored signature" in b for b in _card(client, qa)["approval_blockers"])
    assert_error(sign_version(client, qa, "approved"), 409, "no authored signature")
    for meaning in ("approved", "rejected"):
        r = sign_version(client, qa, meaning, comment="   ")
        assert_error(r, 422, "comment is required")
    # reviewing needs no comment and no author's signature
    assert sign_version(client, qa, "reviewed").status_code == 201


def test_a_second_approval_is_an_illegal_transition(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    approve_version(client, actors)
    r = sign_version(client, actors[Role.qa], "approved")
    assert_error(
        r,
        409,
        "titer_pls v1 is approved",
        "allowed from approved: requalification_due, retired",
        code="invalid_transition",
    )
    r = sign_version(client, actors[Role.qa], "rejected")
    assert_error(r, 409, "cannot become rejected", code="invalid_transition")


def test_rejecting_a_draft_rejects_it_for_good(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    r = sign_version(client, actors[Role.qa], "rejected", comment="calibration too small")
    assert r.status_code == 201, r.text
    assert r.json()["version_status"] == "rejected"
    assert _card(client, actors[Role.qa])["qualified"] is False
    assert_error(sign_version(client, actors[Role.developer], "authored"), 409, "rejected")
    assert_error(sign_version(client, actors[Role.qa], "approved"), 409, "rejected")


def test_a_signature_shows_invalid_after_the_version_row_is_altered(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    assert sign_version(client, dev, "authored").status_code == 201
    assert _card(client, qa)["approvable"] is True
    # Behind the application's back (as the schema owner, who can drop the guards): the
    # version's limit changes in the database.
    without_guards(session, "model_version")
    session.execute(
        text("UPDATE model_version SET t2_limit_99 = t2_limit_99 * 2 WHERE version = 1")
    )
    session.expire_all()
    card = _card(client, qa)
    assert [s["valid"] for s in card["signatures"]] == [False]
    assert card["approvable"] is False
    assert any("INVALID" in b for b in card["approval_blockers"])
    assert_error(sign_version(client, qa, "approved"), 409, "authored by", "INVALID")
    assert card["status"] == "draft"


def test_signatures_and_lifecycle_events_are_append_only_in_the_database(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    approve_version(client, actors)
    for statement in (
        "UPDATE signature SET comment = 'edited'",
        "DELETE FROM signature",
        "UPDATE lifecycle_event SET reason = 'edited'",
        "DELETE FROM lifecycle_event",
    ):
        with pytest.raises(DBAPIError, match="not allowed"), session.begin_nested():
            session.execute(text(statement))
    assert len(session.scalars(select(Signature)).all()) == 2


# --------------------------------------------------------------------------------------------
# Transfer records
# --------------------------------------------------------------------------------------------


@pytest.fixture
def transferred(client: TestClient, actors: dict[Role, Actor]) -> dict[str, Any]:
    """titer_pls v1 (trained, approved) and transfer #1 completed with a passing verdict."""
    dev = actors[Role.developer].headers
    source = train_transfer_source(client, dev)
    approve_version(client, actors)
    record = complete_transfer(client, dev, source["version"]["operating_range"])
    assert record["transfer"]["acceptance"]["verdict"] == "pass"
    return record


def _transfer(client: TestClient, actor: Actor, ref: Any = 1) -> dict[str, Any]:
    r = client.get(f"/api/v1/transfers/{ref}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_authored_reviewed_approved_transfer_requalifies_its_version(
    client: TestClient, actors: dict[Role, Actor], transferred: dict[str, Any], session: Session
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    governance = _transfer(client, qa)["governance"]
    assert governance["signatures"] == []
    assert governance["approvable"] is False
    assert governance["requalification_status"] == "pending_requalification"
    assert sign_transfer(client, dev, "authored").status_code == 201
    assert sign_transfer(client, qa, "reviewed").status_code == 201
    assert _transfer(client, qa)["governance"]["approvable"] is True
    r = sign_transfer(client, qa, "approved", comment="acceptance passed", review_interval_days=180)
    assert r.status_code == 201, r.text
    assert r.json()["version_status"] == "requalified"
    assert r.json()["entity_type"] == "transfer"
    governance = _transfer(client, qa, transferred["id"])["governance"]
    assert governance["requalification_status"] == "requalified"
    assert [(s["meaning"], s["valid"]) for s in governance["signatures"]] == [
        ("authored", True),
        ("reviewed", True),
        ("approved", True),
    ]
    assert governance["approvable"] is False
    v2 = _card(client, qa, 2)
    assert v2["status"] == "requalified"
    assert v2["qualified"] is True
    assert v2["signatures"] == []  # signed on its transfer record
    history = lifecycle_history(session, "titer_pls", 2)
    assert [(e.from_status.value, e.to_status.value) for e in history] == [
        ("pending_requalification", "requalified")
    ]
    assert history[0].signed_entity is not None
    assert history[0].signed_entity.value == "transfer"
    assert history[0].change_control == "CC-SIGN-0001"
    stored = session.scalars(select(Signature).order_by(Signature.signed_at)).all()
    assert {s.change_control for s in stored if s.entity_type.value == "transfer"} == {
        "CC-SIGN-0001"
    }
    assert_error(sign_transfer(client, qa, "approved"), 409, code="invalid_transition")


def test_a_pending_transferred_version_is_signed_through_its_transfer(
    client: TestClient, actors: dict[Role, Actor], transferred: dict[str, Any]
) -> None:
    qa = actors[Role.qa]
    assert_error(
        sign_version(client, qa, "approved", version=2),
        409,
        "sign transfer #1",
        code="invalid_transition",
    )
    assert_error(sign_version(client, qa, "rejected", version=2), 409, "sign transfer #1")
    card = _card(client, qa, 2)
    assert card["approvable"] is False
    assert any("transfer #1" in b for b in card["approval_blockers"])


def test_developer_who_completed_a_transfer_cannot_approve_it(
    client: TestClient, actors: dict[Role, Actor], transferred: dict[str, Any]
) -> None:
    dev = actors[Role.developer]
    assert sign_transfer(client, dev, "authored").status_code == 201
    assert_error(sign_transfer(client, dev, "approved"), 403, "only QA")
    assert_error(sign_transfer(client, actors[Role.qa], "authored"), 403, "only a developer")


def test_a_failed_transfer_cannot_be_approved_and_can_be_rejected(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    source = train_transfer_source(client, dev.headers)
    record = complete_transfer(
        client, dev.headers, source["version"]["operating_range"], acceptance={"max_rmse": 1e-6}
    )
    assert record["transfer"]["acceptance"]["verdict"] == "fail"
    assert sign_transfer(client, dev, "authored").status_code == 201
    governance = _transfer(client, qa)["governance"]
    assert governance["approvable"] is False
    assert any("max_rmse" in b for b in governance["approval_blockers"])
    r = sign_transfer(client, qa, "approved")
    assert_error(r, 409, "failed its acceptance criteria", "max_rmse (observed")
    r = sign_transfer(client, qa, "rejected", comment="RMSE above the plan")
    assert r.status_code == 201, r.text
    assert r.json()["version_status"] == "rejected"
    assert _card(client, qa, 2)["status"] == "rejected"


def test_a_transfer_awaiting_standards_is_not_signed(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    dev = actors[Role.developer]
    source = train_transfer_source(client, dev.headers)
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": "plant-raman-2000L",
        "method": "sbc",
        "n_standards": 5,
        "change_control": "CC-1",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse": 1.0},
        "reason": "t",
    }
    assert client.post("/api/v1/transfers", json=plan, headers=dev.headers).status_code == 201
    assert_error(sign_transfer(client, dev, "authored"), 409, "awaiting_standards")
    r = client.post("/api/v1/transfers/1/cancel", json={"reason": "t"}, headers=dev.headers)
    assert r.status_code == 200
    assert_error(sign_transfer(client, actors[Role.qa], "reviewed"), 409, "cancelled")
    assert _transfer(client, dev)["governance"]["approvable"] is False


def test_a_transfer_signature_shows_invalid_after_the_record_is_altered(
    client: TestClient,
    actors: dict[Role, Actor],
    transferred: dict[str, Any],
    session: Session,
) -> None:
    """The transfer's guard triggers are dropped inside the test's transaction (DDL is
    transactional on both backends; rolled back with the test), then the row is edited."""
    dev, qa = actors[Role.developer], actors[Role.qa]
    assert sign_transfer(client, dev, "authored").status_code == 201
    without_guards(session, "transfer")
    session.execute(text("UPDATE transfer SET reason = 'edited behind the back' WHERE number = 1"))
    session.expire_all()
    governance = _transfer(client, qa)["governance"]
    assert [s["valid"] for s in governance["signatures"]] == [False]
    assert governance["approvable"] is False
    assert_error(sign_transfer(client, qa, "approved"), 409, "INVALID")
