import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import AuditEvent, Domain
from app.enums import Role
from tests.factories import create_domain, domain_payload
from tests.helpers import Actor, assert_error


def _count(session: Session, entity: type[Domain] | type[AuditEvent]) -> int:
    return int(session.scalar(select(func.count()).select_from(entity)) or 0)


def test_developer_creates_a_domain(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    r = client.post(
        "/api/v1/domains", json=domain_payload(), headers=actors[Role.developer].headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    expected = domain_payload()
    for field in ("name", "instrument", "probe_serial", "scale", "site", "description"):
        assert body[field] == expected[field]
    assert body["created_by"] == "test-developer"
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert "reason" not in body


def test_domain_create_is_audited_with_an_after_snapshot_and_reason(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    domain = create_domain(client, actors[Role.developer].headers)
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "domain.create", AuditEvent.entity_id == domain["id"]
        )
    ).one()
    assert event.actor == "test-developer"
    assert event.entity_type == "domain"
    assert event.reason == "new development bioreactor probe"
    assert event.before is None
    assert event.after is not None
    assert event.after["name"] == domain["name"]
    assert event.after["probe_serial"] == domain["probe_serial"]


def test_duplicate_domain_name_is_409_and_writes_nothing(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    headers = actors[Role.developer].headers
    create_domain(client, headers)
    domains, events = _count(session, Domain), _count(session, AuditEvent)
    r = client.post("/api/v1/domains", json=domain_payload(site="elsewhere"), headers=headers)
    assert r.status_code == 409
    assert r.json() == {
        "error": "conflict",
        "detail": "domain 'dev-raman-ambr250' already exists",
    }
    assert (_count(session, Domain), _count(session, AuditEvent)) == (domains, events)


@pytest.mark.parametrize("role", [Role.qa, Role.plant, Role.auditor, Role.admin])
def test_only_developers_create_domains(
    client: TestClient, session: Session, actors: dict[Role, Actor], role: Role
) -> None:
    r = client.post("/api/v1/domains", json=domain_payload(), headers=actors[role].headers)
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    assert _count(session, Domain) == 0


def test_creating_a_domain_needs_authentication(client: TestClient) -> None:
    r = client.post("/api/v1/domains", json=domain_payload())
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "has spaces"),
        ("name", ""),
        ("instrument", ""),
        ("reason", ""),
        ("unexpected", "x"),
    ],
)
def test_invalid_domain_fields_are_422_in_the_envelope(
    client: TestClient, actors: dict[Role, Actor], field: str, value: str
) -> None:
    r = client.post(
        "/api/v1/domains",
        json=domain_payload(**{field: value}),
        headers=actors[Role.developer].headers,
    )
    assert_error(r, 422, field)


def test_missing_reason_is_422(client: TestClient, actors: dict[Role, Actor]) -> None:
    body = domain_payload()
    del body["reason"]
    r = client.post("/api/v1/domains", json=body, headers=actors[Role.developer].headers)
    assert r.status_code == 422
    assert "reason" in r.json()["detail"]


@pytest.mark.parametrize("role", list(Role))
def test_every_person_reads_domains_and_plant_keys_do_not(
    client: TestClient, actors: dict[Role, Actor], role: Role
) -> None:
    create_domain(client, actors[Role.developer].headers, "plant-raman-2000L")
    create_domain(client, actors[Role.developer].headers, "dev-raman-ambr250")
    listed = client.get("/api/v1/domains", headers=actors[role].headers)
    if role is Role.plant:
        assert listed.status_code == 403
        return
    assert listed.status_code == 200
    assert [d["name"] for d in listed.json()] == ["dev-raman-ambr250", "plant-raman-2000L"]
    one = client.get("/api/v1/domains/plant-raman-2000L", headers=actors[role].headers)
    assert one.status_code == 200
    assert one.json()["probe_serial"] == "probe-plant-raman-2000L"


def test_unknown_domain_is_404_in_the_envelope(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    r = client.get("/api/v1/domains/nowhere", headers=actors[Role.qa].headers)
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "domain 'nowhere' does not exist"}


def test_reading_domains_needs_authentication(client: TestClient) -> None:
    assert client.get("/api/v1/domains").status_code == 401
