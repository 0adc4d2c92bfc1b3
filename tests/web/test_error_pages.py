"""A value a page cannot use is a 422 *page* (the envelope's code and detail, readable, under
the pages' Content-Security-Policy, no script); the API keeps the JSON envelope (both
backends)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from httpx import Response

from app.api.headers import PAGE_POLICY
from app.enums import Role
from tests.helpers import Actor, assert_error
from tests.web.test_hostile_pages import page_problems
from tests.web.test_pages import _log_in


def _assert_a_422_page(r: Response, *fragments: str) -> list[str]:
    assert r.status_code == 422, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == PAGE_POLICY
    assert r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text.lower()
    assert " style=" not in r.text  # no inline style either: the policy allows none
    assert "<code>invalid_input</code>, HTTP 422" in r.text
    problems = page_problems(r.content)
    for fragment in fragments:
        assert any(fragment in p for p in problems), (fragment, problems)
    return problems


def test_an_out_of_range_path_value_on_a_page_is_a_422_page_naming_it(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert _log_in(client, actors[Role.qa].user.username).status_code == 303
    r = client.get(f"/transfers/{2**63}")
    problems = _assert_a_422_page(r, "number: ")
    assert problems == ["number: Input should be less than or equal to 2147483647"]
    assert "These values cannot be used" in r.text


def test_an_unknown_query_parameter_on_a_page_is_a_422_page_naming_it(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    assert _log_in(client, actors[Role.qa].user.username).status_code == 303
    r = client.get("/home", params={"modle": "titer_pls"})
    _assert_a_422_page(r, "unknown query parameter 'modle'", "GET /home accepts")


def test_a_refused_value_is_a_page_before_sign_in_too(client: TestClient) -> None:
    """Path values are checked before the page looks for a session: still a page, and one
    that shows no one's name."""
    r = client.get("/models/titer_pls/versions/0", follow_redirects=False)
    _assert_a_422_page(r, "version: Input should be greater than or equal to 1")
    assert 'action="/logout"' not in r.text


def test_the_api_keeps_the_json_envelope_for_a_refused_value(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].headers
    r = client.get(f"/api/v1/models/titer_pls/versions/{2**63}", headers=qa)
    assert r.headers["content-type"] == "application/json"
    assert_error(r, 422, "version: ", code="invalid_input")
    unknown = client.get("/api/v1/domains", params={"after": "x"}, headers=qa)
    assert_error(unknown, 422, "unknown query parameter 'after'", code="invalid_input")
