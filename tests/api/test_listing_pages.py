"""Lists that grow with use page like /datasets and /transfers: ``limit`` at a time, the next
page's URL in a ``Link: <…>; rel="next"`` header, none after the last page. Domains and models
in name order (opaque ``cursor``), a model's versions in number order (``after``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.enums import Role
from tests.api.conftest import MODEL
from tests.factories import DOMAIN, create_domain
from tests.helpers import Actor, assert_error, counted_statements, grant_scope


def _walk(client: TestClient, url: str, headers: dict[str, str]) -> list[list[Any]]:
    """Every page from ``url`` by the Link headers."""
    pages = []
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        link = r.headers.get("Link")
        url = ""
        if link is not None:
            found = re.fullmatch(r'<http://127.0.0.1:8000(/[^>]+)>; rel="next"', link)
            assert found, link
            url = found.group(1)
    return pages


def test_domains_page_in_name_order_by_their_link_headers(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    dev = actors[Role.developer].headers
    names = ["d-e", "d-a", "d-c", "d-b", "d-d"]
    for name in names:
        create_domain(client, dev, name)
    pages = _walk(client, "/api/v1/domains?limit=2", dev)
    assert [[d["name"] for d in page] for page in pages] == [
        ["d-a", "d-b"],
        ["d-c", "d-d"],
        ["d-e"],
    ]


def test_a_domain_page_costs_the_same_statements_however_long_the_list(
    client: TestClient, session: Session, actors: dict[Role, Actor]
) -> None:
    dev = actors[Role.developer].headers
    counts = []
    for batch in range(2):
        for i in range(5):
            create_domain(client, dev, f"n{batch}-{i}")
        with counted_statements(session) as statements:
            assert len(client.get("/api/v1/domains?limit=3", headers=dev).json()) == 3
        counts.append(len(statements))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("path", ["/api/v1/domains", "/api/v1/models"])
def test_a_cursor_this_service_did_not_issue_is_a_422(
    client: TestClient, actors: dict[Role, Actor], path: str
) -> None:
    qa = actors[Role.qa].headers
    for cursor in ("not-a-cursor", "bmFtZQ", "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxhYmM"):
        assert_error(client.get(path, params={"cursor": cursor}, headers=qa), 422, "cursor")


@pytest.mark.parametrize("path", ["/api/v1/domains", "/api/v1/models"])
@pytest.mark.parametrize("limit", [0, 1001])
def test_a_limit_outside_1_to_1000_is_a_422(
    client: TestClient, actors: dict[Role, Actor], path: str, limit: int
) -> None:
    r = client.get(path, params={"limit": limit}, headers=actors[Role.qa].headers)
    assert_error(r, 422, "limit")


def _train(client: TestClient, dev: dict[str, str], model: str, sha: str) -> int:
    body = {"dataset_sha256": sha, "n_components": 2, "intended_use": "monitoring", "reason": "r"}
    r = client.post(f"/api/v1/models/{model}/versions", json=body, headers=dev)
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def _model(client: TestClient, dev: dict[str, str], name: str) -> None:
    body = {**MODEL, "name": name}
    assert client.post("/api/v1/models", json=body, headers=dev).status_code == 201


def test_models_page_and_a_plant_account_gets_full_pages_of_its_scope(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    """The scope narrows the query: a plant key's pages are full pages of the models it may
    see (a version in its domain), not pages of every model filtered afterwards."""
    dev, plant = actors[Role.developer].headers, actors[Role.plant].headers
    sha = trained["version"]["dataset_sha256"]
    for name in ("a_seen", "c_seen"):
        _model(client, dev, name)
        _train(client, dev, name, sha)
    for name in ("b_hidden", "d_hidden", "e_hidden"):
        _model(client, dev, name)  # no version: outside any scope
    everyone = _walk(client, "/api/v1/models?limit=2", dev)
    assert [[m["name"] for m in page] for page in everyone] == [
        ["a_seen", "b_hidden"],
        ["c_seen", "d_hidden"],
        ["e_hidden", "titer_pls"],
    ]
    scoped = _walk(client, "/api/v1/models?limit=2", plant)
    assert [[m["name"] for m in page] for page in scoped] == [["a_seen", "c_seen"], ["titer_pls"]]
    grant_scope(client, actors[Role.admin].headers, [DOMAIN], models=["c_seen"])
    assert _walk(client, "/api/v1/models?limit=2", plant) == [
        [client.get("/api/v1/models/c_seen", headers=dev).json()]
    ]


def test_a_models_versions_page_by_number(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer].headers
    sha = trained["version"]["dataset_sha256"]
    for _ in range(3):
        _train(client, dev, "titer_pls", sha)
    pages = _walk(client, "/api/v1/models/titer_pls/versions?limit=3", dev)
    assert [[v["version"] for v in page] for page in pages] == [[1, 2, 3], [4]]
    r = client.get("/api/v1/models/titer_pls/versions?limit=3", headers=dev)
    assert r.headers["Link"].endswith('?limit=3&after=3>; rel="next"')
    tail = client.get("/api/v1/models/titer_pls/versions?after=2", headers=dev).json()
    assert [v["version"] for v in tail] == [3, 4]
    plant = _walk(client, "/api/v1/models/titer_pls/versions?limit=2", actors[Role.plant].headers)
    assert [[v["version"] for v in page] for page in plant] == [[1, 2], [3, 4]]
