"""Security headers: nosniff on every response, no caching of secrets, a strict policy, no
framing and no caching on pages; the documentation's inline script allowed by its hash only."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from app.enums import Role
from app.main import create_app
from tests.helpers import PASSWORD, Actor


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (p.split() for p in policy.split(";") if p.strip())
    return {p[0]: p[1:] for p in parts}


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert "script-src" not in policy  # default-src 'self': no inline script, no other host
    assert "style-src" not in policy


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/static/style.css"),
        ("GET", "/openapi.json"),
        ("GET", "/api/v1/users/me"),  # 401
        ("GET", "/api/v1/nowhere"),  # 404
        ("GET", "/api/v1/domains?bogus=1"),  # 422
        ("GET", "/login"),
    ],
)
def test_every_response_says_nosniff(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_an_oversized_body_refused_before_the_routes_says_nosniff(client: TestClient) -> None:
    # The body guard answers before any route: here for the missing credential (the test
    # client sends the real length, so the credential is what it checks first).
    response = client.post("/api/v1/datasets", content=b"x", headers={"Content-Length": str(2**40)})
    assert response.status_code == 401
    assert response.json()["error"] in ("missing_credential", "unauthorized", "not_authenticated")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_500_says_nosniff_too(settings_env: None) -> None:
    app = create_app()

    def bug() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test-only/bug", bug, include_in_schema=False)  # this test's app only
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/test-only/bug")
    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_token_response_is_not_stored(client: TestClient, actors: dict[Role, Actor]) -> None:
    ok = client.post("/api/v1/auth/token", data={"username": "test-qa", "password": PASSWORD})
    assert ok.status_code == 200
    assert ok.headers["cache-control"] == "no-store"
    assert ok.headers["pragma"] == "no-cache"
    refused = client.post("/api/v1/auth/token", data={"username": "test-qa", "password": "no"})
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"


def test_responses_with_an_api_key_are_not_stored(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    admin = actors[Role.admin].headers
    body = {"username": "gw-cache", "full_name": "GW", "role": "plant", "reason": "new gateway"}
    created = client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["api_key"]
    assert created.headers["cache-control"] == "no-store"
    rotated = client.post("/api/v1/users/gw-cache/api-key", json={"reason": "r"}, headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"


def test_pages_forbid_framing_inline_script_and_caching(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert_page_headers(client.get("/login"))
    client.cookies.set("ssr_session", actors[Role.qa].credential)
    home = client.get("/home")
    assert home.status_code == 200
    assert_page_headers(home)
    assert "<script" not in home.text
    assert " style=" not in home.text


def test_an_error_page_has_the_page_headers(client: TestClient, actors: dict[Role, Actor]) -> None:
    client.cookies.set("ssr_session", actors[Role.qa].credential)
    missing = client.get("/transfers/999999")
    assert missing.status_code == 404
    assert_page_headers(missing)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_documentation_allows_its_own_inline_script_only(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    policy = _directives(response.headers["content-security-policy"])
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    expected = {
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline
    }
    assert set(scripts) == {"'self'", *expected}
    assert policy["frame-ancestors"] == ["'none'"]
