"""The contract of query parameters: unknown ones are refused, enumerations are enums."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.enums import AuditAction, AuditEntityType, Role
from tests.helpers import Actor, assert_error


@pytest.mark.parametrize(
    ("path", "params", "unknown", "accepted"),
    [
        ("/api/v1/audit", {"change_control": "CC-1"}, "'change_control'", "action, actor"),
        ("/api/v1/prediction-log", {"transferr": "1"}, "'transferr'", "transfer"),
        ("/api/v1/prediction-log/export", {"modle": "x"}, "'modle'", "model"),
        ("/api/v1/transfers", {"verdic": "fail", "x": "1"}, "'verdic', 'x'", "change_control"),
        ("/api/v1/datasets", {"domian": "dev"}, "'domian'", "cursor, domain, limit"),
        ("/api/v1/models", {"name": "x"}, "'name'", "cursor, limit"),
        ("/api/v1/domains", {"after": "x"}, "'after'", "cursor, limit"),
        ("/api/v1/models/m/versions", {"cursor": "x"}, "'cursor'", "after, limit"),
        ("/api/v1/users/me", {"verbose": "1"}, "'verbose'", "no query parameters"),
    ],
)
def test_an_unknown_query_parameter_is_refused_naming_it_and_the_accepted_ones(
    client: TestClient,
    actors: dict[Role, Actor],
    path: str,
    params: dict[str, str],
    unknown: str,
    accepted: str,
) -> None:
    r = client.get(path, params=params, headers=actors[Role.qa].headers)
    assert_error(r, 422, unknown, f"GET {path} accepts", accepted, code="invalid_input")


def test_known_query_parameters_still_work(client: TestClient, actors: dict[Role, Actor]) -> None:
    qa = actors[Role.qa].headers
    r = client.get("/api/v1/audit", params={"action": "user.create", "limit": 5}, headers=qa)
    assert r.status_code == 200, r.text
    assert {e["action"] for e in r.json()["events"]} <= {"user.create"}


def test_a_post_with_an_unknown_query_parameter_changes_nothing(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    dev = actors[Role.developer].headers
    body = {"name": "m1", "analyte": "titer", "units": "g/L", "reason": "r"}
    r = client.post("/api/v1/models", params={"dry_run": "true"}, json=body, headers=dev)
    assert_error(r, 422, "'dry_run'", "POST /api/v1/models accepts: no query parameters")
    assert client.get("/api/v1/models/m1", headers=dev).status_code == 404


def test_an_unknown_audit_vocabulary_value_is_a_422_not_an_empty_page(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].headers
    assert_error(client.get("/api/v1/audit?entity_type=bogus", headers=qa), 422, "entity_type")
    assert_error(client.get("/api/v1/audit?action=model.delete", headers=qa), 422, "action")


def test_audit_filters_are_enums_in_the_openapi(client: TestClient) -> None:
    spec: dict[str, Any] = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/audit"]["get"]["parameters"]}
    schemas = spec["components"]["schemas"]

    def enum_of(param: dict[str, Any]) -> set[str]:
        (ref,) = [s["$ref"] for s in param["schema"]["anyOf"] if "$ref" in s]
        return set(schemas[ref.rsplit("/", 1)[-1]]["enum"])

    assert enum_of(params["action"]) == {a.value for a in AuditAction}
    assert enum_of(params["entity_type"]) == {e.value for e in AuditEntityType}
