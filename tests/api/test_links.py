"""The ``Link`` of a paged list starts at the configured public base URL, never at the Host a
request brought."""

from __future__ import annotations

import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.links import set_next_link
from app.settings import Settings, get_settings


def _request(host: bytes, query: bytes) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": "/api/v1/transfers",
            "root_path": "",
            "query_string": query,
            "headers": [(b"host", host)],
            "server": ("10.0.0.5", 8000),
        }
    )


@pytest.mark.usefixtures("settings_env")
def test_the_next_link_uses_the_public_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PUBLIC_BASE_URL", "https://registry.plant.example/ssr/")
    get_settings.cache_clear()
    response = Response()
    set_next_link(_request(b"evil.example", b"status=completed&after=3"), response, after=5)
    assert response.headers["Link"] == (
        '<https://registry.plant.example/ssr/api/v1/transfers?status=completed&after=5>; rel="next"'
    )


def test_the_default_is_where_ssreg_serve_listens() -> None:
    assert Settings().public_base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize("bad", ["registry.example", "ftp://x", "https://x/?a=1", "http://"])
def test_a_public_base_url_is_an_http_url_without_query(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_base_url=bad)


@pytest.mark.parametrize("path", ["/", "/login", "/docs", "/redoc", "/home"])
def test_no_page_or_redirect_echoes_the_request_host(client: TestClient, path: str) -> None:
    """The stylesheet link of every page was an absolute URL built from the Host header."""
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (200, 303)
    assert "evil.example" not in response.text
    assert "evil.example" not in response.headers.get("location", "")
