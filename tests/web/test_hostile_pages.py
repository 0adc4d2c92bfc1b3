"""Hostile values in every parameter of the pages: a 422 naming it, never a 500 (both
backends). The pages are not in the OpenAPI, so the walk reads their routers' declared
parameters instead: a new page or parameter is covered without editing this file.

Without a session the body guard refuses a page form before reading it, so the forms behind a
sign-in are walked again signed in, each hostile value beside otherwise valid fields."""

from __future__ import annotations

import html
import re
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

from app.api.limits import SIGN_IN_BODY_BYTES, SIGN_IN_ROUTES
from app.db.models import AuditEvent
from app.enums import Role
from app.settings import get_settings
from app.web import records, routes
from app.web.session import SESSION_COOKIE
from tests.api.test_hostile_input import HOSTILE_INTEGERS, HOSTILE_TEXTS, _call_app
from tests.factories import train_transfer_source
from tests.helpers import PASSWORD, Actor
from tests.web.test_pages import _completed_transfer, _csrf_of, _log_in


def page_problems(content: bytes) -> list[str]:
    """What a 422 page lists as refused, one ``"<field>: <message>"`` an item (unescaped)."""
    text = content.decode()
    assert text.startswith("<!doctype html>"), text[:300]
    assert '<ul class="problems">' in text, text[:1000]
    items = text.split('<ul class="problems">', 1)[1].split("</ul>", 1)[0]
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", items, re.S)]


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
        if where == "form" and r.status_code == 303:
            # No session: the body guard refuses before the body (and its value) is read;
            # test_a_hostile_value_in_a_signed_in_form_... walks these forms signed in.
            assert r.json()["error"] == "sign_in_required", label
            continue
        assert r.status_code == 422, (label, r.content[:300])
        parts = page_problems(r.content)
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
    assert page_problems(r.content)[0].startswith("username: ")
    assert username not in r.text  # the refused name is not shown back
    assert len(r.content) < 4096
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


def _signed_in_form_routes() -> dict[str, APIRoute]:
    """The page routes that take a form and need a session (not the sign-in forms)."""
    found = {}
    for router in (routes.router, records.router):
        for route in router.routes:
            if not isinstance(route, APIRoute) or route.name in SIGN_IN_ROUTES:
                continue
            if any(where == "form" for where, _, _ in _fields(route)):
                found[route.name] = route
    return found


SIGNED_IN_FORMS = _signed_in_form_routes()


def _valid_form(name: str, client: TestClient, dev: Actor) -> tuple[dict[str, str], dict[str, str]]:
    """A record the developer may sign (or their own account), and the path values and form
    fields that, posted as they are, change it: ``(path, form)``."""
    who = {"username": dev.user.username, "password": PASSWORD}
    if name == "sign_transfer":
        number = _completed_transfer(client, dev.headers, validation=False)
        path, page = {"number": str(number)}, f"/transfers/{number}"
        form = {"meaning": "authored", "comment": "hostile-form test", **who}
    elif name == "sign_version_page":
        train_transfer_source(client, dev.headers)
        path, page = {"name": "titer_pls", "version": "1"}, "/models/titer_pls/versions/1"
        form = {"meaning": "authored", "comment": "hostile-form test", **who}
    elif name == "account_password":
        path, page = {}, "/account"
        new = "a new password of the test"
        form = {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
    else:
        raise AssertionError(f"no valid form for {name}: add one so its fields are walked")
    assert _log_in(client, dev.user.username).status_code == 303
    shown = client.get(page)
    assert shown.status_code == 200, shown.text[:300]
    return path, form | {"csrf_token": _csrf_of(shown.text)}


def _audit_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.mark.parametrize("name", sorted(SIGNED_IN_FORMS))
def test_a_hostile_value_in_a_signed_in_form_is_a_4xx_and_writes_nothing(
    client: TestClient, session: Session, actors: dict[Role, Actor], name: str
) -> None:
    route = SIGNED_IN_FORMS[name]
    path, form = _valid_form(name, client, actors[Role.developer])
    cookie = {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
    before = _audit_events(session)
    body_cap = get_settings().max_request_body_bytes
    walked = set()
    for where, field, kinds in _fields(route):
        hostile: dict[str, Any] = (
            {str(v): v for v in HOSTILE_INTEGERS} if int in kinds else dict(HOSTILE_TEXTS)
        )
        for label, value in hostile.items():
            values = path | {field: str(value)} if where == "path" else path
            url = route.path
            for key, text in values.items():
                url = url.replace("{" + key + "}", quote(text, safe=""))
            fields = form | {field: str(value)} if where == "form" else form
            body = urlencode(fields).encode()
            r = _call_app(
                client,
                "POST",
                url,
                headers=cookie,
                body=body,
                content_type="application/x-www-form-urlencoded",
            )
            case = (where, field, label)
            assert 400 <= r.status_code < 500, (case, r.status_code, r.content[:300])
            if r.status_code == 413:  # over the body cap: refused before reading
                assert r.json()["error"] == "payload_too_large", case
                assert len(body) > body_cap, case
            else:
                assert r.status_code == 422, (case, r.content[:300])
                parts = page_problems(r.content)
                assert any(part.startswith(f"{field}: ") for part in parts), (case, parts)
            assert _audit_events(session) == before, case
        walked.add((where, field))
    assert {("form", "csrf_token")} | {("path", key) for key in path} <= walked
    # The same form with nothing hostile in it goes through: the refusals were the values'.
    done = client.post(route.path.format(**path), data=form, follow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    assert _audit_events(session) > before


def test_the_signed_in_walk_sees_the_sign_and_password_forms() -> None:
    assert set(SIGNED_IN_FORMS) == {"sign_transfer", "sign_version_page", "account_password"}
