"""Hostile values in every parameter of the pages: a 422 naming it, never a 500 (both
backends). The pages are not in the OpenAPI, so the walk reads their routers' declared
parameters instead: a new page or parameter is covered without editing this file."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any, Union
from urllib.parse import quote, urlencode

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.api.limits import SIGN_IN_BODY_BYTES
from app.db.models import AuditEvent
from app.web import records, routes
from tests.api.test_hostile_input import HOSTILE_INTEGERS, HOSTILE_TEXTS, _call_app


def _base(annotation: Any) -> set[type]:
    """The types a parameter's annotation admits (None left out)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_base(a) for a in typing.get_args(annotation))) - {type(None)}
    return {annotation} if isinstance(annotation, type) else set()


def _fields(route: APIRoute) -> Iterator[tuple[str, str, set[type]]]:
    d = route.dependant
    for where, params in (("path", d.path_params), ("query", d.query_params)):
        for p in params:
            yield where, p.alias, _base(p.field_info.annotation)
    for p in d.body_params:
        kinds = _base(p.field_info.annotation)
        model = next((k for k in kinds if issubclass(k, BaseModel)), None)
        if model is None:
            yield "form", p.alias, kinds
            continue
        for name, field in model.model_fields.items():
            yield "form", name, _base(field.annotation)


def _cases() -> list[Any]:
    cases = []
    for router in (routes.router, records.router):
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for method in sorted(route.methods):
                for where, name, kinds in _fields(route):
                    if int in kinds:
                        values: dict[str, Any] = {str(v): v for v in HOSTILE_INTEGERS}
                    elif str in kinds:
                        values = {k: v for k, v in HOSTILE_TEXTS.items() if k != "1 MiB"}
                    else:
                        continue
                    case = f"{method} {route.path} {where} {name}"
                    cases.append(pytest.param(method, route, where, name, values, id=case))
    return cases


def _url(route: APIRoute, where: str, name: str, value: Any) -> str:
    url = route.path
    for p in route.dependant.path_params:
        text = str(value) if (where, p.alias) == ("path", name) else "1"
        url = url.replace("{" + p.alias + "}", quote(text, safe="")).replace(
            "{" + p.alias + ":path}", quote(text, safe="")
        )
    return url


@pytest.mark.parametrize(("method", "route", "where", "name", "values"), _cases())
def test_a_hostile_value_in_a_page_is_a_422_naming_it(
    client: TestClient,
    method: str,
    route: APIRoute,
    where: str,
    name: str,
    values: dict[str, Any],
) -> None:
    for label, value in values.items():
        encoded = urlencode({name: str(value)}).encode()
        r = _call_app(
            client,
            method,
            _url(route, where, name, value),
            query=encoded if where == "query" else b"",
            headers={},
            body=encoded if where == "form" else b"",
            content_type="application/x-www-form-urlencoded" if where == "form" else None,
        )
        if r.status_code == 413:  # over the sign-in forms' body cap: refused before reading
            assert r.json()["error"] == "payload_too_large", label
            assert len(encoded) > SIGN_IN_BODY_BYTES, label
            continue
        if where == "form" and r.json().get("error") == "sign_in_required":
            # No session: the body guard refuses before the body (and its value) is read.
            continue
        assert r.status_code == 422, (label, r.content[:300])
        parts = r.json()["detail"].split("; ")
        assert any(part.startswith(f"{name}: ") for part in parts), (label, parts)


def test_the_page_walk_sees_paths_queries_and_forms() -> None:
    ids = {c.id for c in _cases()}
    assert "GET /transfers/{number} path number" in ids
    assert "POST /login form username" in ids
    assert "POST /transfers/{number}/sign form password" in ids
    assert "GET /audit-trail query cursor" in ids


def _login_failures(session: Session) -> int:
    stmt = select(func.count()).where(AuditEvent.action == "auth.login_failed")
    return int(session.scalar(stmt) or 0)


@pytest.mark.parametrize("username", ["u" * 65, "x" * 2**13, "qa\x00"], ids=["65", "8 KiB", "NUL"])
def test_the_login_form_refuses_a_name_no_account_can_have_without_auditing(
    client: TestClient, session: Session, username: str
) -> None:
    before = _login_failures(session)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    data = {"username": username, "password": "whatever", "csrf_token": token}
    r = client.post("/login", data=data, follow_redirects=False)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"].startswith("username: ")
    assert len(r.content) < 1024
    assert _login_failures(session) == before


def test_a_version_filter_no_version_can_have_is_explained_on_the_page(
    client: TestClient, session: Session
) -> None:
    """The prediction-log page's version field is text (a form a person fills in): a number
    beyond the column is a message on the page, not a database error."""
    from tests.helpers import PASSWORD

    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    data = {"username": "test-qa", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303
    for version in ("9999999999", "²", "-1"):
        r = client.get("/prediction-log", params={"model": "m", "version": version})
        assert r.status_code == 200, r.text[:300]
        assert "is not a version number" in r.text
    r = client.get("/prediction-log", params={"since": "0001-01-01T00:00:00+23:59"})
    assert r.status_code == 200
    assert "outside the years 1 to 9999" in r.text
