"""The version lifecycle: the transition table, QA's due trigger and requalification with
evidence, domain events, the periodic-review date (and ``ssreg lifecycle run``), retirement."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AuditEvent, LifecycleEvent
from app.enums import Role
from app.services import lifecycle, qualification
from tests.helpers import PASSWORD, Actor, assert_error
from tests.signing import approve_version, sign_version

V1 = "/api/v1/models/titer_pls/versions/1"
EVENTS = "/api/v1/domains/dev-raman-ambr250/events"


def _card(client: TestClient, actor: Actor, url: str = V1) -> dict[str, Any]:
    r = client.get(url, headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _history(client: TestClient, actor: Actor, url: str = V1) -> list[dict[str, Any]]:
    r = client.get(url + "/lifecycle", headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json())


def _predict(client: TestClient, actor: Actor, trained: dict[str, Any]) -> Any:
    body = json.dumps({"spectra": trained["X"][:2].tolist()}).encode()
    return client.post(
        V1 + "/predict",
        content=body,
        headers={**actor.headers, "Content-Type": "application/json"},
    )


def test_qa_trigger_then_requalification_with_evidence(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    qa = actors[Role.qa]
    approve_version(client, actors)
    r = client.post(
        V1 + "/requalification-due", json={"reason": "new media lot"}, headers=qa.headers
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["qualified"]) == ("requalification_due", False)
    assert r.json()["approvable"] is True  # a requalification needs no new author's signature
    again = client.post(V1 + "/requalification-due", json={"reason": "x"}, headers=qa.headers)
    assert_error(
        again,
        409,
        "titer_pls v1 is requalification_due",
        "allowed from requalification_due: approved, retired",
        code="invalid_transition",
    )
    r = sign_version(client, qa, "approved", comment="re-checked on 12 new reference samples")
    assert r.status_code == 201, r.text
    assert r.json()["version_status"] == "approved"
    card = _card(client, qa)
    assert (card["status"], card["qualified"]) == ("approved", True)
    history = _history(client, actors[Role.auditor])
    assert [(e["from_status"], e["to_status"], e["trigger"]) for e in history] == [
        ("draft", "approved", "signature"),
        ("approved", "requalification_due", "qa_trigger"),
        ("requalification_due", "approved", "signature"),
    ]
    assert history[1]["reason"] == "new media lot"
    assert history[1]["signature"] is None
    assert history[2]["signature"]["comment"] == "re-checked on 12 new reference samples"
    assert history[2]["review_due_at"] is not None


def test_illegal_transitions_name_the_state_and_the_allowed_ones(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    qa = actors[Role.qa]
    r = client.post(V1 + "/requalification-due", json={"reason": "x"}, headers=qa.headers)
    assert_error(
        r,
        409,
        "titer_pls v1 is draft",
        "cannot become requalification_due",
        "allowed from draft: approved, rejected, retired",
        code="invalid_transition",
    )
    body = {"reason": "superseded", "username": qa.user.username, "password": PASSWORD}
    assert client.post(V1 + "/retire", json=body, headers=qa.headers).status_code == 200
    r = client.post(V1 + "/retire", json=body, headers=qa.headers)
    assert_error(r, 409, "is retired", "none, it is final", code="invalid_transition")
    assert_error(sign_version(client, qa, "approved"), 409, "retired")


def test_transition_table_covers_every_status_once_per_kind() -> None:
    for table in (lifecycle.TRAINED, lifecycle.TRANSFERRED):
        assert all(
            lifecycle.S.retired in allowed or status is lifecycle.S.retired
            for status, allowed in table.items()
        )
        assert table[lifecycle.S.retired] == frozenset()
    assert lifecycle.S.requalified not in set().union(*lifecycle.TRAINED.values())
    assert lifecycle.S.approved not in set().union(*lifecycle.TRANSFERRED.values())


def test_retirement_needs_the_password_and_stops_predictions(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    qa = actors[Role.qa]
    approve_version(client, actors)
    wrong = {"reason": "superseded", "username": qa.user.username, "password": "nope nope"}
    r = client.post(V1 + "/retire", json=wrong, headers=qa.headers)
    assert_error(r, 401, code="invalid_credentials")
    assert _card(client, qa)["status"] == "approved"
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")).all()
    right = wrong | {"password": PASSWORD}
    r = client.post(V1 + "/retire", json=right, headers=qa.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["qualified"]) == ("retired", False)
    (event,) = [e for e in _history(client, qa) if e["to_status"] == "retired"]
    assert (event["trigger"], event["reason"], event["actor"]) == (
        "retirement",
        "superseded",
        qa.user.username,
    )
    assert _predict(client, actors[Role.plant], trained).status_code == 409


def test_a_domain_event_makes_its_qualified_versions_due(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    dev, qa = actors[Role.developer], actors[Role.qa]
    approve_version(client, actors)
    body = {
        "dataset_sha256": trained["version"]["dataset_sha256"],
        "intended_use": "monitoring",
        "reason": "second calibration",
    }
    r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev.headers)
    assert r.status_code == 201  # v2 stays a draft: not qualified, not made due
    event = {
        "kind": "probe_replaced",
        "description": "probe DEV-PROBE-0001 replaced by DEV-PROBE-0002",
        "change_control": "CC-2026-0100",
    }
    r = client.post(EVENTS, json=event, headers=qa.headers)
    assert r.status_code == 201, r.text
    recorded = r.json()
    assert recorded["kind"] == "probe_replaced"
    assert recorded["recorded_by"] == qa.user.username
    assert [
        (v["model"], v["version"], v["from_status"]) for v in recorded["versions_made_due"]
    ] == [("titer_pls", 1, "approved")]
    assert _card(client, dev)["status"] == "requalification_due"
    assert _card(client, dev, "/api/v1/models/titer_pls/versions/2")["status"] == "draft"
    (transition,) = [e for e in _history(client, dev) if e["trigger"] == "domain_event"]
    assert transition["domain_event_id"] == recorded["id"]
    assert transition["change_control"] == "CC-2026-0100"
    audited = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_id == recorded["id"])
    ).one()
    assert (audited.action, audited.entity_type) == ("domain.event", "domain_event")
    transitions = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "model_version.transition")
    ).all()
    assert transitions[-1].after is not None
    assert transitions[-1].after["domain_event_id"] == recorded["id"]
    # A second event finds nothing qualified left to make due.
    r = client.post(EVENTS, json=event | {"kind": "recalibrated"}, headers=dev.headers)
    assert r.status_code == 201, r.text
    assert r.json()["versions_made_due"] == []
    assert client.get(EVENTS, headers=actors[Role.plant].headers).status_code == 403
    r = client.get(EVENTS, headers=actors[Role.auditor].headers)
    assert [e["kind"] for e in r.json()] == ["probe_replaced", "recalibrated"]
    assert len(r.json()[0]["versions_made_due"]) == 1


def test_a_domain_event_in_the_future_or_on_an_unknown_domain_is_refused(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    qa = actors[Role.qa]
    future = (utcnow() + timedelta(hours=1)).isoformat()
    body = {"kind": "other", "description": "x", "occurred_at": future}
    assert_error(client.post(EVENTS, json=body, headers=qa.headers), 422, "in the future")
    naive = body | {"occurred_at": "2026-01-01T08:00:00"}
    assert_error(client.post(EVENTS, json=naive, headers=qa.headers), 422, "time zone")
    r = client.post(
        "/api/v1/domains/nope/events",
        json={"kind": "other", "description": "x"},
        headers=qa.headers,
    )
    assert_error(r, 404, "nope")
    past = body | {"occurred_at": "2026-01-01T08:00:00Z"}
    r = client.post(EVENTS, json=past, headers=qa.headers)
    assert r.status_code == 201, r.text
    assert r.json()["occurred_at"].startswith("2026-01-01T08:00:00")


def test_past_its_review_date_a_version_is_not_qualified_before_and_after_the_run(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dev = actors[Role.developer]
    approve_version(client, actors, review_interval_days=30)
    assert _card(client, dev)["qualified"] is True
    assert _predict(client, dev, trained).json()["qualified"] is True
    # The review date passes: the clock moves 31 days on (the row is not touched: a change
    # behind the application's back would be refused by predict's integrity check).
    later = utcnow() + timedelta(days=31)
    monkeypatch.setattr(qualification, "utcnow", lambda: later)
    card = _card(client, dev)
    assert (card["status"], card["qualified"]) == ("approved", False)
    assert all(s["valid"] for s in card["signatures"])
    assert _predict(client, dev, trained).json()["qualified"] is False

    done = lifecycle.record_due_reviews(session, actor="cli:test", now=later)
    assert [(name, e.to_status.value, e.trigger.value) for name, e in done] == [
        ("titer_pls v1", "requalification_due", "review_date")
    ]
    assert lifecycle.record_due_reviews(session, actor="cli:test", now=later) == []  # idempotent
    card = _card(client, dev)
    assert (card["status"], card["qualified"]) == ("requalification_due", False)
    events = session.scalars(
        select(LifecycleEvent).where(LifecycleEvent.trigger == "review_date")
    ).all()
    assert len(events) == 1
    assert events[0].actor == "cli:test"
    assert events[0].actor_id is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_review_interval_is_bounded(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    sign_version(client, actors[Role.developer], "authored")
    r = sign_version(client, actors[Role.qa], "approved", review_interval_days=0)
    assert_error(r, 422)
    r = sign_version(client, actors[Role.qa], "reviewed", review_interval_days=10)
    assert_error(r, 422, "approved signature only")
