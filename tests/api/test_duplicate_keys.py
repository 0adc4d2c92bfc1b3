"""A JSON object with a key twice is refused (422 naming the key), whatever the body: readers
differ on which of the two counts. So are NaN, Infinity and numbers beyond float64 where the
route does not name them itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.enums import Role
from app.store import LocalStore
from tests.api.test_hostile_input import SPEC, _filler, _headers, _operations
from tests.helpers import Actor, assert_error, nothing_written

PREDICT = "/api/v1/models/titer_pls/versions/1/predict"
BY_ALIAS = "/api/v1/models/titer_pls/aliases/{alias}/predict"


def _json_routes() -> list[Any]:
    out = []
    for method, path, operation in _operations():
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content and "predict" not in path:
            out.append(pytest.param(method, path, id=f"{method} {path}"))
    return out


def _url(path: str) -> str:
    for param in SPEC["paths"][path]["post"].get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", _filler(param["schema"]))
    return path


@pytest.mark.parametrize(("method", "path"), _json_routes())
def test_every_json_body_refuses_a_key_sent_twice(
    client: TestClient,
    session: Session,
    store: LocalStore,
    actors: dict[Role, Actor],
    method: str,
    path: str,
) -> None:
    body = b'{"reason": "first", "reason": "second"}'
    headers = {**_headers(actors, method, path), "Content-Type": "application/json"}
    with nothing_written(session, store):
        r = client.request(method, _url(path), content=body, headers=headers)
    assert_error(r, 422, 'the JSON body has the key "reason" twice', code="invalid_input")


def test_the_walk_covers_the_bodies_that_matter() -> None:
    ids = {p.id for p in _json_routes()}
    assert {"POST /api/v1/transfers", "POST /api/v1/transfers/{id}/signatures"} <= ids
    assert "POST /api/v1/models/{name}/aliases/{alias}" in ids


def _plan(acceptance: str) -> bytes:
    return (
        b'{"source_model": "titer_pls", "source_version": 1, "target_domain": "plant", '
        b'"n_standards": 8, "change_control": "CC-1", "intended_use": "monitoring", '
        b'"operating_range": {"min": 1, "max": 4}, "reason": "r", "acceptance": '
        + acceptance.encode()
        + b"}"
    )


@pytest.mark.parametrize(
    ("acceptance", "fragment"),
    [
        ('{"max_rmse": 0.1, "max_rmse": 100}', 'the key "max_rmse" twice'),
        ('{"max_rmse": NaN}', "NaN, which is not a JSON number"),
        ('{"max_rmse": Infinity}', "Infinity, which is not a JSON number"),
        ('{"max_rmse": 1e400}', "beyond float64"),
    ],
)
def test_acceptance_criteria_are_read_one_way_only(
    client: TestClient,
    session: Session,
    store: LocalStore,
    actors: dict[Role, Actor],
    acceptance: str,
    fragment: str,
) -> None:
    headers = {**actors[Role.developer].headers, "Content-Type": "application/json"}
    with nothing_written(session, store):
        r = client.post("/api/v1/transfers", content=_plan(acceptance), headers=headers)
    assert_error(r, 422, fragment, code="invalid_input")


def test_a_huge_integer_is_a_422_not_a_parse_error(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    headers = {**actors[Role.developer].headers, "Content-Type": "application/json"}
    body = b'{"name": "m", "analyte": "a", "units": "u", "reason": ' + b"9" * 5000 + b"}"
    assert_error(client.post("/api/v1/models", content=body, headers=headers), 422, "not valid")


def _spectra_body(X: np.ndarray, *, twice: str, sample_ids: list[str] | None = None) -> bytes:
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in X)
    parts = [f'"spectra": [{rows}]']
    if sample_ids is not None:
        parts.append('"sample_ids": [' + ", ".join(f'"{s}"' for s in sample_ids) + "]")
    parts.append(
        {
            "spectra": f'"spectra": [{rows}]',
            "purpose": '"purpose": "evaluation", "purpose": "monitoring"',
        }[twice]
    )
    return ("{" + ", ".join(parts) + "}").encode()


@pytest.mark.parametrize("twice", ["spectra", "purpose"])
@pytest.mark.parametrize("path", ["fast", "strict"])
def test_a_prediction_body_with_a_key_twice_is_refused_and_not_logged(
    client: TestClient,
    session: Session,
    store: LocalStore,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    twice: str,
    path: str,
) -> None:
    """On either parser: the fast one (simdjson, which reads the first of two) and the strict
    one (which reads the last); a '[' inside a sample id sends the body to the strict one."""
    X = trained["X"][:2]
    ids = ["a", "b"] if path == "fast" else ["a[1]", "b"]
    body = _spectra_body(X, twice=twice, sample_ids=ids)
    headers = {**actors[Role.developer].headers, "Content-Type": "application/json"}
    with nothing_written(session, store):
        r = client.post(PREDICT, content=body, headers=headers)
    assert_error(r, 422, f'the JSON body has the key "{twice}" twice', code="invalid_input")


def test_a_prediction_body_with_each_key_once_is_served(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X = trained["X"][:2]
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in X)
    body = ('{"spectra": [' + rows + '], "purpose": "evaluation"}').encode()
    headers = {**actors[Role.developer].headers, "Content-Type": "application/json"}
    r = client.post(PREDICT, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2
