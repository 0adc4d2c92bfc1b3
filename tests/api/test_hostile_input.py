"""Hostile values in every parameter the served OpenAPI declares: a 422 in the envelope that
names the parameter, never a 500 and never an answer.

Data-driven from ``app.openapi()``: a new route, or a new parameter of an old one, is covered
without editing this file. Each case runs on SQLite and on PostgreSQL, whose columns are the
narrower (32-bit INTEGER, no NUL in text). The caller is a role the route allows (from the
access policy), so the refusal cannot be a 403 that hides a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

import anyio
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.limits import SIGN_IN_BODY_BYTES
from app.enums import Role
from app.main import create_app
from app.schemas.common import INT32_MAX, Schema
from tests.api.test_role_matrix import POLICY
from tests.helpers import Actor

HOSTILE_INTEGERS = (2**31, 2**63, -(2**63) - 1)
SIGN_IN_CAP = SIGN_IN_BODY_BYTES
ONE_MIB = 2**20
# Over every bound; 64 KiB is also under the form parser's own limit of 1 MiB a field (which
# answers 400 in the envelope before the schema is consulted).
HOSTILE_TEXTS = {"NUL": "a\x00b", "64 KiB": "a" * 2**16, "1 MiB": "a" * ONE_MIB}
# Offsets at the extremes: beyond the years 1-9999 once in UTC (refused), and just within.
OUT_OF_RANGE_TIMES = ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59")
EDGE_TIMES = ("0001-01-01T23:59:00+23:59", "9999-12-31T00:00:00-23:59", "0001-01-01T00:00:00Z")
# Who calls each route: the first of these its policy allows (public routes: nobody).
ROLE_PREFERENCE = (Role.admin, Role.developer, Role.qa, Role.auditor, Role.plant)

SPEC: dict[str, Any] = create_app().openapi()


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return _resolve(SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of an optional or union schema, resolved; ``null`` left out."""
    schema = _resolve(schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return [_resolve(s) for s in alternatives if _resolve(s).get("type") != "null"]


def _kind(schema: dict[str, Any]) -> str | None:
    """'integer' or 'string' (free text: no enum, no binary) for a parameter that takes
    one, else None."""
    kinds = set()
    for branch in _branches(schema):
        if branch.get("type") == "integer":
            kinds.add("integer")
        elif (
            branch.get("type") == "string" and "enum" not in branch and "const" not in branch
        ) and branch.get("format") != "binary":
            kinds.add("string")
    if "integer" in kinds:
        return "integer"
    return "string" if "string" in kinds else None


def _is_date_time(schema: dict[str, Any]) -> bool:
    return any(b.get("format") == "date-time" for b in _branches(schema))


def _filler(schema: dict[str, Any]) -> str:
    """A well-formed value for a path parameter that is not the one under test."""
    for branch in _branches(schema):
        if branch.get("type") == "integer":
            return "1"
        if branch.get("format") == "uuid":
            return "00000000-0000-4000-8000-000000000000"
        if branch.get("pattern") == "^[0-9a-f]{64}$":
            return "0" * 64
    return "x"


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _form_fields(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    content = operation.get("requestBody", {}).get("content", {})
    for media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if media in content:
            return dict(_resolve(content[media]["schema"]).get("properties", {}))
    return {}


def _cases() -> list[Any]:
    cases = []
    for method, path, operation in _operations():
        fields = [(p["in"], p["name"], p["schema"]) for p in operation.get("parameters", [])]
        fields += [("form", name, schema) for name, schema in _form_fields(operation).items()]
        for where, name, schema in fields:
            kind = _kind(schema)
            if kind is None:
                continue
            values: dict[str, Any] = (
                {str(v): v for v in HOSTILE_INTEGERS} if kind == "integer" else HOSTILE_TEXTS
            )
            # One test per parameter, its values in a loop: a client per value costs more
            # than the requests.
            label = f"{method} {path} {where} {name} {kind}"
            cases.append(pytest.param(method, path, where, name, values, id=label))
    return cases


def _time_cases() -> list[Any]:
    cases = []
    for method, path, operation in _operations():
        for p in operation.get("parameters", []):
            if p["in"] == "query" and _is_date_time(p["schema"]):
                label = f"{method} {path} {p['name']}"
                cases.append(pytest.param(method, path, p["name"], id=label))
    return cases


@pytest.mark.parametrize(("method", "path", "name"), _time_cases())
def test_a_time_at_the_extremes_is_refused_naming_it_or_served(
    client: TestClient, actors: dict[Role, Actor], method: str, path: str, name: str
) -> None:
    headers = _headers(actors, method, path)
    for value in OUT_OF_RANGE_TIMES:
        r = _send(client, headers, method, path, "query", name, value)
        assert r.status_code == 422, (value, r.content[:300])
        assert f"{name}: is outside the years 1 to 9999" in r.json()["detail"]
    for value in EDGE_TIMES:
        r = _send(client, headers, method, path, "query", name, value)
        assert r.status_code in (200, 404), (value, r.content[:300])


def _headers(actors: dict[Role, Actor], method: str, path: str) -> dict[str, str]:
    policy = POLICY.get((method, path))
    if policy is None:
        return {}
    role = next(r for r in ROLE_PREFERENCE if r in policy[0])
    return actors[role].headers


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def _call_app(
    client: TestClient,
    method: str,
    raw_path: str,
    *,
    query: bytes = b"",
    headers: dict[str, str],
    body: bytes = b"",
    content_type: str | None = None,
) -> Answer:
    """One request straight into the ASGI app: httpx refuses URLs over 64 KiB, and a server
    (httptools) may pass a longer one on."""
    header_list = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if content_type is not None:
        header_list.append((b"content-type", content_type.encode()))
    header_list.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": header_list,
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    anyio.run(client.app, scope, receive, send)  # type: ignore[arg-type]
    return Answer(status, b"".join(chunks))


def _send(
    client: TestClient,
    headers: dict[str, str],
    method: str,
    path: str,
    where: str,
    name: str,
    value: Any,
) -> Answer:
    operation = SPEC["paths"][path][method.lower()]
    url = path
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            text = str(value) if param["name"] == name and where == "path" else None
            text = text if text is not None else _filler(param["schema"])
            url = url.replace("{" + param["name"] + "}", quote(text, safe=""))
    encoded = urlencode({name: str(value)}).encode()
    if where == "form":
        return _call_app(
            client,
            method,
            url,
            headers=headers,
            body=encoded,
            content_type="application/x-www-form-urlencoded",
        )
    return _call_app(
        client, method, url, query=encoded if where == "query" else b"", headers=headers
    )


@pytest.mark.parametrize(("method", "path", "where", "name", "values"), _cases())
def test_a_hostile_value_is_a_422_naming_the_parameter(
    client: TestClient,
    actors: dict[Role, Actor],
    method: str,
    path: str,
    where: str,
    name: str,
    values: dict[str, Any],
) -> None:
    headers = _headers(actors, method, path)
    for label, value in values.items():
        r = _send(client, headers, method, path, where, name, value)
        body = r.json()
        assert set(body) == {"error", "detail"}, label
        if r.status_code == 413:  # over the route's body cap, refused before it is read
            assert body["error"] == "payload_too_large", (label, r.content)
            assert len(str(value)) >= SIGN_IN_CAP, label
            continue
        if where == "form" and len(str(value)) >= ONE_MIB:
            assert (r.status_code, body["error"]) == (400, "bad_request"), (label, r.content)
            assert "maximum size" in body["detail"]
            continue
        assert r.status_code == 422, f"{label}: {r.status_code} {r.content[:300]!r}"
        assert body["error"] == "invalid_input"
        parts = body["detail"].split("; ")
        assert any(part.startswith(f"{name}: ") for part in parts), (label, body["detail"][:300])
        assert len(r.content) < 4096, f"{label}: the refusal must not echo the value"


def test_the_walk_covers_integers_texts_and_forms() -> None:
    """The walk sees what it is meant to (so an empty parametrization cannot pass)."""
    ids = {c.id for c in _cases()}
    assert any("path version integer" in i for i in ids)
    assert any("query limit integer" in i for i in ids)
    assert "POST /api/v1/auth/token form username string" in ids
    assert "POST /api/v1/datasets form reference_column string" in ids
    assert "GET /api/v1/audit query since string" in ids
    times = {c.id for c in _time_cases()}
    assert "GET /api/v1/prediction-log until" in times
    assert "GET /api/v1/models/{name}/aliases/{alias} at" in times


# --------------------------------------------------------------------------------------------
# JSON bodies: every text and integer of every request schema, validated in the process
# --------------------------------------------------------------------------------------------


def _subclasses(cls: type[Schema]) -> Iterator[type[Schema]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _body_models() -> list[type[Schema]]:
    """The schema classes of every JSON request body the OpenAPI documents (by component
    name, or by the title of an inline schema such as the prediction body)."""
    classes = {cls.__name__: cls for cls in _subclasses(Schema)}
    names: set[str] = set()
    for _, _, operation in _operations():
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            names.add(schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else schema["title"])
    return [classes[name] for name in sorted(names)]


def _leaves(
    schema: dict[str, Any], defs: dict[str, Any], path: tuple[str | int, ...] = ()
) -> Iterator[tuple[str, tuple[str | int, ...], dict[str, Any]]]:
    """(kind, path, schema) of every text and integer a body can carry; lists at index 0."""
    if "$ref" in schema:
        yield from _leaves(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            yield from _leaves(branch, defs, path)
    kind = schema.get("type")
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            yield from _leaves(sub, defs, (*path, name))
    elif kind == "array":
        yield from _leaves(schema.get("items", {}), defs, (*path, 0))
    elif kind == "string" and "enum" not in schema and "const" not in schema:
        yield "string", path, schema
    elif kind == "integer":
        yield "integer", path, schema


def _placed(path: tuple[str | int, ...], value: Any) -> Any:
    """``value`` at ``path`` in an otherwise empty document."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [_placed(rest, value)] if isinstance(head, int) else {head: _placed(rest, value)}


def _body_cases() -> list[Any]:
    cases = []
    for model in _body_models():
        schema = model.model_json_schema()
        for kind, path, leaf in _leaves(schema, schema.get("$defs", {})):
            where = ".".join(str(p) for p in path)
            cases.append(pytest.param(model, kind, path, leaf, id=f"{model.__name__}.{where}"))
    return cases


def _errors_at(model: type[Schema], path: tuple[str | int, ...], value: Any) -> list[Any]:
    try:
        model.model_validate(_placed(path, value))
    except ValidationError as exc:
        return [
            e
            for e in exc.errors()
            if tuple(e["loc"][: len(path)]) == path and e["type"] != "missing"
        ]
    return []


@pytest.mark.parametrize(("model", "kind", "path", "leaf"), _body_cases())
def test_every_body_text_and_integer_is_bounded(
    model: type[Schema], kind: str, path: tuple[str | int, ...], leaf: dict[str, Any]
) -> None:
    if kind == "integer":
        assert leaf.get("maximum", INT32_MAX + 1) <= INT32_MAX, leaf
        assert leaf.get("minimum", -(2**63)) >= -(2**31), leaf
        for value in HOSTILE_INTEGERS:
            assert _errors_at(model, path, value), f"{value} accepted"
        return
    assert "maxLength" in leaf or "format" in leaf or leaf.get("pattern", "").endswith("$"), leaf
    for label, value in HOSTILE_TEXTS.items():
        assert _errors_at(model, path, value), f"{label} accepted"


def test_the_body_walk_sees_nested_texts_and_integers() -> None:
    ids = {c.id for c in _body_cases()}
    assert {
        "TransferCreate.source_version",
        "UserCreate.domains.0",
        "PredictRequest.sample_ids.0",
    } <= ids
