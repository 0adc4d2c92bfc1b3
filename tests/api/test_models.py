"""Models and server-trained versions through HTTP."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.pls import LinearSoftSensor
from app.db.models import AuditEvent, ModelVersion
from app.enums import Role
from app.store import LocalStore
from tests.factories import create_domain, make_spectral_table, upload_dataset
from tests.helpers import Actor, assert_error, counted_statements

MODEL = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new soft sensor"}


def _version_body(sha: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "dataset_sha256": sha,
        "intended_use": "monitoring",
        "intended_use_statement": "monitoring titer in Ambr 250 runs",
        "reason": "first calibration",
    }
    return body | overrides


@pytest.fixture
def trained(client: TestClient, actors: dict[Role, Actor]) -> dict[str, Any]:
    dev = actors[Role.developer].headers
    create_domain(client, dev)
    blob = make_spectral_table(n_samples=60, n_channels=40, seed=3)
    ds = upload_dataset(client, dev, blob).json()
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    r = client.post(
        "/api/v1/models/titer_pls/versions", json=_version_body(ds["sha256"]), headers=dev
    )
    assert r.status_code == 201, r.text
    return {"dataset": ds, "version": r.json(), "blob": blob}


def test_version_card_carries_computed_metrics_and_pins(trained: dict[str, Any]) -> None:
    card = trained["version"]
    assert card["kind"] == "trained"
    assert card["version"] == 1
    assert card["status"] == "draft"
    assert card["dataset_sha256"] == trained["dataset"]["sha256"]
    assert card["split"]["n_holdout"] == 12
    assert card["metrics"]["holdout"]["n"] == 12
    assert card["metrics"]["holdout"]["r2"] > 0.95
    assert card["metrics"]["cv"]["n"] == 48
    # each figure says what it was computed on
    assert card["metrics"]["holdout_basis"].startswith("held out: 12 rows")
    assert card["metrics"]["cv_basis"].startswith("cross-validated: 5-fold")
    assert "48 training rows" in card["metrics"]["cv_basis"]
    assert card["metrics"]["calibration_basis"].startswith("in-sample")
    assert card["component_selection"]["cv_table"]
    assert card["operating_range_source"] == "training_reference"
    assert 0 < card["t2_limit_95"] < card["t2_limit_99"]
    assert 0 < card["q_limit_95"] < card["q_limit_99"]


def test_artifact_download_hashes_to_the_card_and_loads_without_pickle(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    r = client.get(
        "/api/v1/models/titer_pls/versions/1/artifact", headers=actors[Role.auditor].headers
    )
    assert r.status_code == 200
    digest = hashlib.sha256(r.content).hexdigest()
    assert digest == trained["version"]["artifact_sha256"] == r.headers["X-Content-SHA256"]
    with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
        model = LinearSoftSensor.from_arrays(npz)
    holdout = trained["version"]["split"]["n_holdout"]
    assert model.n_components == trained["version"]["n_components"]
    assert holdout == 12


def test_versions_number_one_two_three(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer].headers
    sha = trained["dataset"]["sha256"]
    numbers = [
        client.post(
            "/api/v1/models/titer_pls/versions",
            json=_version_body(sha, n_components=2, reason=f"fixed a, try {i}"),
            headers=dev,
        ).json()["version"]
        for i in range(2)
    ]
    assert numbers == [2, 3]
    assert client.get("/api/v1/models/titer_pls", headers=dev).json()["latest_version"] == 3


def test_declared_operating_range_must_lie_inside_training_range(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    before = session.scalar(select(func.count()).select_from(ModelVersion))
    r = client.post(
        "/api/v1/models/titer_pls/versions",
        json=_version_body(trained["dataset"]["sha256"], operating_range={"min": 0, "max": 99}),
        headers=actors[Role.developer].headers,
    )
    assert r.status_code == 422
    assert "outside the training reference range" in r.json()["detail"]
    assert session.scalar(select(func.count()).select_from(ModelVersion)) == before


def test_unknown_model_and_dataset_are_404(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer].headers
    r = client.post(
        "/api/v1/models/nope/versions",
        json=_version_body(trained["dataset"]["sha256"]),
        headers=dev,
    )
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = client.post("/api/v1/models/titer_pls/versions", json=_version_body("a" * 64), headers=dev)
    assert r.status_code == 404


def test_failed_training_leaves_no_row_audit_or_artifact(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    """Too many fixed components for the data: 422, and nothing written anywhere."""
    digests = set(store.digests())
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    r = client.post(
        "/api/v1/models/titer_pls/versions",
        json=_version_body(trained["dataset"]["sha256"], n_components=45),
        headers=actors[Role.developer].headers,
    )
    assert r.status_code == 422, r.text
    assert set(store.digests()) == digests
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_units_of_dataset_must_match_the_model(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer].headers
    blob = make_spectral_table(n_samples=30, n_channels=40, seed=9)
    ds = upload_dataset(client, dev, blob, units="mg/L", name="other units").json()
    r = client.post(
        "/api/v1/models/titer_pls/versions", json=_version_body(ds["sha256"]), headers=dev
    )
    assert r.status_code == 422
    assert "units" in r.json()["detail"]


def test_creating_a_model_is_audited_with_its_reason(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    body = MODEL | {"name": "glucose_pls", "analyte": "glucose"}
    assert (
        client.post("/api/v1/models", json=body, headers=actors[Role.developer].headers).status_code
        == 201
    )
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "model.create")
        .order_by(AuditEvent.seq.desc())
    ).first()
    assert event is not None
    assert event.reason == "new soft sensor"
    assert event.actor == "test-developer"


def test_version_cards_are_a_union_discriminated_on_kind(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/api/v1/models/{name}/versions/{version}"]["get"]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema["discriminator"]["propertyName"] == "kind"
    refs = {s["$ref"].rsplit("/", 1)[-1] for s in schema["oneOf"]}
    assert refs == {"TrainedVersionRead", "TransferredVersionRead"}
    trained = spec["components"]["schemas"]["TrainedVersionRead"]["properties"]
    assert trained["metrics"]["$ref"].endswith("/TrainedMetricsRead")


def test_the_version_list_runs_the_same_statements_for_two_or_six_versions(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    dev = actors[Role.developer].headers
    create_domain(client, dev)
    ds = upload_dataset(client, dev, make_spectral_table(n_samples=30, n_channels=12, seed=5))
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    body = _version_body(ds.json()["sha256"], n_components=2, holdout_scheme="none")

    def listing_statements() -> int:
        with counted_statements(session) as statements:
            r = client.get("/api/v1/models/titer_pls/versions", headers=dev)
        assert r.status_code == 200
        return len(statements)

    for _ in range(2):
        assert client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev).is_success
    two = listing_statements()
    for _ in range(4):
        assert client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev).is_success
    assert listing_statements() == two


@pytest.fixture
def ten_rows(client: TestClient, actors: dict[Role, Actor]) -> str:
    dev = actors[Role.developer].headers
    create_domain(client, dev)
    ds = upload_dataset(client, dev, make_spectral_table(n_samples=10, n_channels=20, seed=11))
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    return str(ds.json()["sha256"])


def test_too_many_components_for_the_rows_are_refused(
    client: TestClient, actors: dict[Role, Actor], ten_rows: str
) -> None:
    """10 rows with a 2-row hold-out leave 8 to fit: 4 components need 2(4+1) = 10."""
    r = client.post(
        "/api/v1/models/titer_pls/versions",
        json=_version_body(ten_rows, n_components=4),
        headers=actors[Role.developer].headers,
    )
    assert_error(r, 422, "8 calibration rows", "2(k+1)", "at most 3 components")


def test_a_small_calibration_carries_warnings_on_the_card(
    client: TestClient, actors: dict[Role, Actor], ten_rows: str
) -> None:
    dev = actors[Role.developer].headers
    r = client.post(
        "/api/v1/models/titer_pls/versions",
        json=_version_body(ten_rows, n_components=2),
        headers=dev,
    )
    assert r.status_code == 201, r.text
    warnings = r.json()["warnings"]
    assert any("ASTM E1655" in w and "8 rows for 2 components" in w for w in warnings)
    assert any("2 rows" in w for w in warnings)
    card = client.get("/api/v1/models/titer_pls/versions/1", headers=dev).json()
    assert card["warnings"] == warnings


def test_auto_components_stay_within_the_small_data_line(
    client: TestClient, actors: dict[Role, Actor], ten_rows: str
) -> None:
    r = client.post(
        "/api/v1/models/titer_pls/versions",
        json=_version_body(ten_rows, cv_folds=2),
        headers=actors[Role.developer].headers,
    )
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["component_selection"]["max_components"] == 3
    assert card["n_components"] <= 3


def test_an_ample_calibration_has_no_warnings(trained: dict[str, Any]) -> None:
    card = trained["version"]
    assert card["split"]["n_train"] == 48
    assert card["split"]["n_holdout"] == 12
    assert 6 * (card["n_components"] + 1) <= 48
    assert card["warnings"] == []
