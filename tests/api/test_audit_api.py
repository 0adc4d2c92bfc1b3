from fastapi.testclient import TestClient

from app.enums import Role
from tests.factories import create_domain
from tests.helpers import Actor


def test_audit_pages_with_a_cursor_and_filters(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    for i in range(3):
        create_domain(client, actors[Role.developer].headers, name=f"dom-{i}")
    qa = actors[Role.qa].headers
    page1 = client.get("/api/v1/audit", params={"action": "domain.create", "limit": 2}, headers=qa)
    assert page1.status_code == 200
    body = page1.json()
    assert [e["action"] for e in body["events"]] == ["domain.create"] * 2
    assert body["next_cursor"] is not None
    page2 = client.get(
        "/api/v1/audit",
        params={"action": "domain.create", "limit": 2, "cursor": body["next_cursor"]},
        headers=qa,
    ).json()
    assert len(page2["events"]) == 1
    assert page2["next_cursor"] is None
    seqs = [e["seq"] for e in body["events"] + page2["events"]]
    assert seqs == sorted(seqs)
    assert all(e["actor"] == "test-developer" for e in body["events"])


def test_audit_event_carries_who_what_when_why(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    create_domain(client, actors[Role.developer].headers, name="dom-why")
    events = client.get(
        "/api/v1/audit", params={"action": "domain.create"}, headers=actors[Role.auditor].headers
    ).json()["events"]
    event = events[-1]
    assert event["reason"]
    assert event["after"]["name"] == "dom-why"
    assert event["occurred_at"].endswith("Z") or event["occurred_at"].endswith("+00:00")
    assert len(event["hash"]) == 64


def test_verify_endpoint_reports_a_valid_chain(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    r = client.get("/api/v1/audit/verify", headers=actors[Role.auditor].headers)
    assert r.status_code == 200
    assert r.json()["valid"] is True
    assert r.json()["first_bad_seq"] is None
    assert r.json()["events"] > 0


def test_naive_time_filter_is_a_422(client: TestClient, actors: dict[Role, Actor]) -> None:
    r = client.get(
        "/api/v1/audit", params={"since": "2026-01-01T00:00:00"}, headers=actors[Role.qa].headers
    )
    assert r.status_code == 422
    assert "time zone" in r.json()["detail"]
