"""Every endpoint × every role: 401 without credentials, 403 for a role that may not, 2xx for
a role that may. The table below is the access policy (the README shows the same table); a
route missing from it fails the test, so a new endpoint cannot ship without a decision."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.enums import Role
from app.main import create_app
from tests.factories import create_domain, make_spectral_table, simulate_spectra, upload_dataset
from tests.helpers import PASSWORD, Actor, grant_scope, lock_out, set_lifecycle

ANY = frozenset(Role)
A, D, Q, P, U = Role.admin, Role.developer, Role.qa, Role.plant, Role.auditor
PEOPLE = frozenset({A, D, Q, U})  # plant keys read only the models, versions and aliases
_counter = itertools.count()

Request = Callable[[TestClient, dict[str, str], dict[str, Any]], Any]


def _unique() -> str:
    return f"x{next(_counter)}"


def _post_dataset(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    blob = make_spectral_table(n_samples=20, n_channels=12, seed=100 + next(_counter))
    return upload_dataset(c, h, blob, domain=ctx["domain"], name=_unique())


def _post_version(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {
        "dataset_sha256": ctx["sha"],
        "n_components": 2,
        "intended_use": "monitoring",
        "reason": "t",
    }
    return c.post(f"/api/v1/models/{ctx['model']}/versions", json=body, headers=h)


def _transfer_plan(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_model": ctx["model"],
        "source_version": 1,
        "target_domain": ctx["target_domain"],
        "method": "ds",
        "n_standards": 5,
        "change_control": "CC-MATRIX",
        "intended_use": "monitoring",
        "operating_range": ctx["operating_range"],
        "acceptance": {"max_rmse": 1.0},
        "reason": "t",
    }


def _open_transfer(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    return c.post("/api/v1/transfers", json=_transfer_plan(ctx), headers=h)


def _post_standards(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    opened = _open_transfer(c, ctx["dev"], ctx)  # a fresh transfer awaiting its standards
    assert opened.status_code == 201, opened.text
    return c.post(
        f"/api/v1/transfers/{opened.json()['number']}/standards",
        data={"reason": "t"},
        files={"target_standards": ("t.parquet", ctx["standards"])},
        headers=h,
    )


def _predict(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    X, _, _ = simulate_spectra(2, 12, seed=5)
    return c.post(
        f"/api/v1/models/{ctx['model']}/versions/1/predict",
        json={"spectra": X.tolist(), "purpose": "evaluation"},
        headers=h,
    )


def _predict_by_alias(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    X, _, _ = simulate_spectra(2, 12, seed=5)
    return c.post(
        f"/api/v1/models/{ctx['model']}/aliases/matrix-alias/predict",
        json={"spectra": X.tolist(), "purpose": "monitoring"},
        headers=h,
    )


def _move_alias(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {
        "version": 1,
        "reason": "t",
        "change_control": "CC-MATRIX",
        "username": "test-qa",
        "password": PASSWORD,
    }
    return c.post(f"/api/v1/models/{ctx['model']}/aliases/{_unique()}", json=body, headers=h)


def _grant_scope(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    name = _new_user(c, ctx, "plant")
    body = {"domains": [ctx["domain"]], "reason": "t"}
    return c.post(f"/api/v1/users/{name}/scopes", json=body, headers=h)


def _log_entry(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    return c.get(f"/api/v1/prediction-log/{ctx['log_id']}", headers=h)


def _post_reference(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    predicted = _predict(c, ctx["dev"], ctx)  # a fresh call: each sample takes one reference
    assert predicted.status_code == 200, predicted.text
    body = {
        "row": 0,
        "value": predicted.json()["predictions"][0],
        "units": "g/L",
        "assay_method": "HPLC",
        "sample_time": "2026-01-01T00:00:00Z",
        "lab_reference": "LIMS-1",
    }
    log_id = predicted.json()["prediction_log_id"]
    return c.post(f"/api/v1/prediction-log/{log_id}/references", json=body, headers=h)


def _monitoring_settings(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {"rolling_n": 10 + next(_counter), "reason": "t"}
    url = f"/api/v1/models/{ctx['model']}/versions/1/monitoring/settings"
    return c.post(url, json=body, headers=h)


def _cancel_transfer(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    opened = _open_transfer(c, ctx["dev"], ctx)
    assert opened.status_code == 201, opened.text
    number = opened.json()["number"]
    return c.post(f"/api/v1/transfers/{number}/cancel", json={"reason": "t"}, headers=h)


def _new_user(c: TestClient, ctx: dict[str, Any], role: str = "qa") -> str:
    name = _unique()
    body: dict[str, Any] = {"username": name, "full_name": "N", "role": role, "reason": "t"}
    if role != "plant":
        body["password"] = PASSWORD
    r = c.post("/api/v1/users", json=body, headers=ctx["admin"])
    assert r.status_code == 201, r.text
    return name


def _account_action(action: str, role: str = "qa", setup: str | None = None) -> Request:
    def send(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
        name = _new_user(c, ctx, role)
        if setup == "deactivate":
            r = c.post(
                f"/api/v1/users/{name}/deactivate", json={"reason": "t"}, headers=ctx["admin"]
            )
            assert r.status_code == 200, r.text
        if setup == "lock":
            lock_out(c, name)
        body: dict[str, Any] = {"reason": "t"}
        if action == "role":
            body["role"] = "auditor"
        return c.post(f"/api/v1/users/{name}/{action}", json=body, headers=h)

    return send


def _change_password(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {"current_password": PASSWORD, "new_password": PASSWORD + "-changed"}
    return c.post("/api/v1/users/me/password", json=body, headers=h)


def _signature(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
    """The developer signs authored (they made the record), QA reviewed; others are refused
    by role before the body matters."""
    if h == ctx["dev"]:
        return {"meaning": "authored", "username": "test-developer", "password": PASSWORD}
    return {"meaning": "reviewed", "username": "test-qa", "password": PASSWORD}


def _sign_version(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    url = f"/api/v1/models/{ctx['model']}/versions/1/signatures"
    return c.post(url, json=_signature(c, h, ctx), headers=h)


def _completed_transfer(c: TestClient, ctx: dict[str, Any]) -> int:
    if "completed" not in ctx:
        r = _post_standards(c, ctx["dev"], ctx)
        assert r.status_code == 201, r.text
        ctx["completed"] = r.json()["number"]
    return int(ctx["completed"])


def _sign_transfer(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    url = f"/api/v1/transfers/{_completed_transfer(c, ctx)}/signatures"
    return c.post(url, json=_signature(c, h, ctx), headers=h)


def _approved_version(c: TestClient, ctx: dict[str, Any]) -> int:
    """A freshly trained version, authored and approved (once per test)."""
    if "approved" not in ctx:
        r = _post_version(c, ctx["dev"], ctx)
        assert r.status_code == 201, r.text
        number = r.json()["version"]
        url = f"/api/v1/models/{ctx['model']}/versions/{number}/signatures"
        for headers, body in (
            (ctx["dev"], {"meaning": "authored", "username": "test-developer"}),
            (ctx["qa"], {"meaning": "approved", "username": "test-qa", "comment": "ok"}),
        ):
            r = c.post(url, json={**body, "password": PASSWORD}, headers=headers)
            assert r.status_code == 201, r.text
        ctx["approved"] = number
    return int(ctx["approved"])


def _mark_due(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    number = _approved_version(c, ctx)
    url = f"/api/v1/models/{ctx['model']}/versions/{number}/requalification-due"
    return c.post(url, json={"reason": "t"}, headers=h)


def _retire(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {"reason": "t", "username": "test-qa", "password": PASSWORD}
    return c.post(f"/api/v1/models/{ctx['model']}/versions/1/retire", json=body, headers=h)


def _domain_event(c: TestClient, h: dict[str, str], ctx: dict[str, Any]) -> Any:
    body = {"kind": "instrument_serviced", "description": "annual service"}
    return c.post(f"/api/v1/domains/{ctx['domain']}/events", json=body, headers=h)


# (method, path template) -> (roles allowed, request builder)
POLICY: dict[tuple[str, str], tuple[frozenset[Role], Request]] = {
    ("POST", "/api/v1/users"): (
        frozenset({A}),
        lambda c, h, ctx: c.post(
            "/api/v1/users",
            json={
                "username": _unique(),
                "full_name": "N",
                "role": "qa",
                "password": PASSWORD,
                "reason": "t",
            },
            headers=h,
        ),
    ),
    ("GET", "/api/v1/users/me"): (ANY, lambda c, h, ctx: c.get("/api/v1/users/me", headers=h)),
    ("GET", "/api/v1/users"): (frozenset({A}), lambda c, h, ctx: c.get("/api/v1/users", headers=h)),
    ("POST", "/api/v1/users/me/password"): (frozenset({A, D, Q, U}), _change_password),
    ("POST", "/api/v1/users/{username}/deactivate"): (
        frozenset({A}),
        _account_action("deactivate"),
    ),
    ("POST", "/api/v1/users/{username}/reactivate"): (
        frozenset({A}),
        _account_action("reactivate", setup="deactivate"),
    ),
    ("POST", "/api/v1/users/{username}/unlock"): (
        frozenset({A}),
        _account_action("unlock", setup="lock"),
    ),
    ("POST", "/api/v1/users/{username}/role"): (frozenset({A}), _account_action("role")),
    ("POST", "/api/v1/users/{username}/api-key"): (
        frozenset({A}),
        _account_action("api-key", role="plant"),
    ),
    ("POST", "/api/v1/users/{username}/api-key/revoke"): (
        frozenset({A}),
        _account_action("api-key/revoke", role="plant"),
    ),
    ("POST", "/api/v1/domains"): (
        frozenset({D}),
        lambda c, h, ctx: c.post(
            "/api/v1/domains",
            json={
                "name": _unique(),
                "instrument": "i",
                "probe_serial": "p",
                "scale": "s",
                "site": "s",
                "reason": "t",
            },
            headers=h,
        ),
    ),
    ("POST", "/api/v1/users/{username}/scopes"): (frozenset({A}), _grant_scope),
    ("GET", "/api/v1/domains"): (PEOPLE, lambda c, h, ctx: c.get("/api/v1/domains", headers=h)),
    ("GET", "/api/v1/domains/{name}"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/domains/{ctx['domain']}", headers=h),
    ),
    ("POST", "/api/v1/datasets"): (frozenset({D}), _post_dataset),
    ("GET", "/api/v1/datasets"): (
        PEOPLE,
        lambda c, h, ctx: c.get("/api/v1/datasets", headers=h),
    ),
    ("GET", "/api/v1/datasets/{sha256}"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/datasets/{ctx['sha']}", headers=h),
    ),
    ("GET", "/api/v1/datasets/{sha256}/content"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/datasets/{ctx['sha']}/content", headers=h),
    ),
    ("POST", "/api/v1/models"): (
        frozenset({D}),
        lambda c, h, ctx: c.post(
            "/api/v1/models",
            json={"name": _unique(), "analyte": "titer", "units": "g/L", "reason": "t"},
            headers=h,
        ),
    ),
    ("GET", "/api/v1/models"): (ANY, lambda c, h, ctx: c.get("/api/v1/models", headers=h)),
    ("GET", "/api/v1/models/{name}"): (
        ANY,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}", headers=h),
    ),
    ("POST", "/api/v1/models/{name}/versions"): (frozenset({D}), _post_version),
    ("GET", "/api/v1/models/{name}/versions"): (
        ANY,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions", headers=h),
    ),
    ("GET", "/api/v1/models/{name}/versions/{version}"): (
        ANY,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions/1", headers=h),
    ),
    ("GET", "/api/v1/models/{name}/versions/{version}/lineage"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions/1/lineage", headers=h),
    ),
    ("GET", "/api/v1/models/{name}/versions/{version}/artifact"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions/1/artifact", headers=h),
    ),
    ("POST", "/api/v1/models/{name}/versions/{version}/predict"): (frozenset({P, D}), _predict),
    ("POST", "/api/v1/models/{name}/versions/{version}/signatures"): (
        frozenset({D, Q}),
        _sign_version,
    ),
    ("POST", "/api/v1/models/{name}/versions/{version}/retire"): (frozenset({Q}), _retire),
    ("POST", "/api/v1/models/{name}/versions/{version}/requalification-due"): (
        frozenset({Q}),
        _mark_due,
    ),
    ("GET", "/api/v1/models/{name}/versions/{version}/lifecycle"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions/1/lifecycle", headers=h),
    ),
    ("POST", "/api/v1/transfers/{id}/signatures"): (frozenset({D, Q}), _sign_transfer),
    ("POST", "/api/v1/domains/{name}/events"): (frozenset({D, Q}), _domain_event),
    ("GET", "/api/v1/domains/{name}/events"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/domains/{ctx['domain']}/events", headers=h),
    ),
    ("POST", "/api/v1/models/{name}/aliases/{alias}"): (frozenset({Q}), _move_alias),
    ("GET", "/api/v1/models/{name}/aliases"): (
        ANY,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/aliases", headers=h),
    ),
    ("GET", "/api/v1/models/{name}/aliases/{alias}"): (
        ANY,
        lambda c, h, ctx: c.get(
            f"/api/v1/models/{ctx['model']}/aliases/matrix-alias",
            params={"at": "2099-01-01T00:00:00Z"},
            headers=h,
        ),
    ),
    ("POST", "/api/v1/models/{name}/aliases/{alias}/predict"): (
        frozenset({P, D}),
        _predict_by_alias,
    ),
    ("POST", "/api/v1/transfers"): (frozenset({D}), _open_transfer),
    ("POST", "/api/v1/transfers/{id}/standards"): (frozenset({D}), _post_standards),
    ("POST", "/api/v1/transfers/{id}/cancel"): (frozenset({D}), _cancel_transfer),
    ("GET", "/api/v1/transfers"): (
        PEOPLE,
        lambda c, h, ctx: c.get("/api/v1/transfers", headers=h),
    ),
    ("GET", "/api/v1/transfers/{id}"): (
        PEOPLE,
        lambda c, h, ctx: c.get(f"/api/v1/transfers/{ctx['transfer']}", headers=h),
    ),
    ("GET", "/api/v1/audit"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/audit", headers=h),
    ),
    ("GET", "/api/v1/prediction-log"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/prediction-log", headers=h),
    ),
    ("GET", "/api/v1/prediction-log/{log_id}"): (frozenset({Q, U, A}), _log_entry),
    ("POST", "/api/v1/prediction-log/{log_id}/references"): (frozenset({P, D}), _post_reference),
    ("GET", "/api/v1/prediction-log/{log_id}/references"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get(f"/api/v1/prediction-log/{ctx['log_id']}/references", headers=h),
    ),
    ("GET", "/api/v1/models/{name}/versions/{version}/monitoring"): (
        ANY,
        lambda c, h, ctx: c.get(f"/api/v1/models/{ctx['model']}/versions/1/monitoring", headers=h),
    ),
    ("POST", "/api/v1/models/{name}/versions/{version}/monitoring/settings"): (
        frozenset({Q}),
        _monitoring_settings,
    ),
    ("GET", "/api/v1/prediction-log/export"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/prediction-log/export", headers=h),
    ),
    ("GET", "/api/v1/audit/verify"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/audit/verify", headers=h),
    ),
    ("GET", "/api/v1/change-controls"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/change-controls", headers=h),
    ),
    ("GET", "/api/v1/change-controls/{ref}"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/change-controls/CC-MATRIX", headers=h),
    ),
    ("GET", "/api/v1/change-controls/{ref}/export"): (
        frozenset({Q, U, A}),
        lambda c, h, ctx: c.get("/api/v1/change-controls/CC-MATRIX/export", headers=h),
    ),
}
PUBLIC = {("POST", "/api/v1/auth/token"), ("GET", "/healthz"), ("GET", "/readyz")}


def _routes() -> set[tuple[str, str]]:
    """Every operation the app publishes (read from its OpenAPI document)."""
    paths = create_app().openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_route_has_an_access_decision() -> None:
    routes = _routes()
    assert routes - PUBLIC - set(POLICY) == set(), "add the new route to POLICY"
    assert set(POLICY) - routes == set(), "POLICY names a route that does not exist"


@pytest.fixture
def ctx(client: TestClient, actors: dict[Role, Actor], session: Session) -> dict[str, Any]:
    dev = actors[D].headers
    domain = create_domain(client, dev, name="matrix-domain")["name"]
    blob = make_spectral_table(n_samples=20, n_channels=12, seed=1)
    sha = upload_dataset(client, dev, blob, domain="matrix-domain").json()["sha256"]
    body = {"name": "matrix_pls", "analyte": "titer", "units": "g/L", "reason": "t"}
    assert client.post("/api/v1/models", json=body, headers=dev).status_code == 201
    ctx: dict[str, Any] = {
        "domain": domain,
        "sha": sha,
        "model": "matrix_pls",
        "dev": dev,
        "qa": actors[Q].headers,
        "admin": actors[A].headers,
    }
    version = _post_version(client, dev, ctx)
    assert version.status_code == 201
    ctx["target_domain"] = create_domain(client, dev, name="matrix-target")["name"]
    ctx["operating_range"] = version.json()["operating_range"]
    # The same samples on a probe with less throughput and a baseline (12 channels).
    X, y, axis = simulate_spectra(20, 12, seed=1)
    ctx["standards"] = make_spectral_table(
        X=0.9 * X[:8] + 0.02, y=y[:8], axis=axis, sample_ids=[f"S{i + 1:03d}" for i in range(8)]
    )
    opened = _open_transfer(client, dev, ctx)
    assert opened.status_code == 201, opened.text
    ctx["transfer"] = opened.json()["number"]
    # The plant actor's scope; v1 qualified (bypassing the lifecycle) and named by an alias.
    grant_scope(client, actors[A].headers, [domain])
    set_lifecycle(session, "matrix_pls", 1, "approved")
    alias = {
        "version": 1,
        "reason": "t",
        "change_control": "CC-MATRIX",
        "username": "test-qa",
        "password": PASSWORD,
    }
    moved = client.post(
        "/api/v1/models/matrix_pls/aliases/matrix-alias", json=alias, headers=actors[Q].headers
    )
    assert moved.status_code == 201, moved.text
    predicted = _predict(client, dev, ctx)
    assert predicted.status_code == 200, predicted.text
    ctx["log_id"] = predicted.json()["prediction_log_id"]
    # The prediction wrote on the test connection outside the request session's savepoint;
    # a request that commits takes it in, so later refused requests (rolled back) keep it.
    assert client.get("/api/v1/users/me", headers=dev).status_code == 200
    return ctx


@pytest.mark.parametrize("endpoint", sorted(POLICY), ids=lambda e: f"{e[0]} {e[1]}")
def test_endpoint_role_matrix(
    client: TestClient,
    actors: dict[Role, Actor],
    ctx: dict[str, Any],
    endpoint: tuple[str, str],
) -> None:
    allowed, send = POLICY[endpoint]
    anonymous = send(client, {}, ctx)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"] == "not_authenticated"
    for role in Role:
        r = send(client, actors[role].headers, ctx)
        if role in allowed:
            assert 200 <= r.status_code < 300, f"{role.value}: {r.status_code} {r.text}"
        else:
            assert r.status_code == 403, f"{role.value}: {r.status_code} {r.text}"
            assert r.json()["error"] == "forbidden"
