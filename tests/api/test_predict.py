"""Corrected predictions through HTTP: the numbers, both body formats, refusals, the log, the
model cache."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.db.models import AuditEvent, ModelVersion, PredictionLog
from app.enums import Role, VersionStatus
from app.schemas.predict import ARROW_STREAM, PredictionRead
from app.services import audit
from app.services import predict as predict_service
from app.settings import get_settings
from app.store import LocalStore
from tests.factories import (
    PLANT_DOMAIN,
    create_domain,
    transfer_data,
    upload_dataset,
)
from tests.helpers import Actor, grant_scope

N_CHANNELS = 40
URL = "/api/v1/models/titer_pls/versions/1/predict"
MODEL = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new soft sensor"}


def _artifact_model(client: TestClient, headers: dict[str, str]) -> LinearSoftSensor:
    r = client.get("/api/v1/models/titer_pls/versions/1/artifact", headers=headers)
    assert r.status_code == 200
    with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
        return LinearSoftSensor.from_arrays(npz)


def _arrow(X: np.ndarray, axis: np.ndarray, prefix: str = "wn_", **extra: Any) -> bytes:
    columns: dict[str, Any] = dict(extra)
    for j, position in enumerate(axis):
        columns[f"{prefix}{position:g}"] = X[:, j]
    table = pa.table(columns)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _json(**body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _post(
    client: TestClient,
    headers: dict[str, str],
    content: bytes,
    content_type: str = "application/json",
    **params: str,
) -> Any:
    return client.post(
        URL, content=content, headers=headers | {"Content-Type": content_type}, params=params
    )


def test_prediction_equals_the_artifacts_linear_model(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers
    X = trained["X"]
    r = _post(client, plant, _json(spectra=X))
    assert r.status_code == 200, r.text
    out = PredictionRead.model_validate(r.json())  # the response honours its documented schema
    model = _artifact_model(client, actors[Role.developer].headers)
    np.testing.assert_allclose(out.predictions, X @ model.coef + model.intercept, rtol=0, atol=1e-9)
    t2, q = model.diagnose(X)
    np.testing.assert_allclose(out.t2, t2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.q, q, rtol=1e-9, atol=1e-12)
    assert out.n_spectra == len(X)
    assert out.model == "titer_pls"
    assert out.version == 1
    assert out.status is VersionStatus.draft
    assert out.qualified is False  # nothing is approved until the GxP workflow lands
    assert out.artifact_sha256 == trained["version"]["artifact_sha256"]
    assert out.units == "g/L"
    assert out.transfer_record is None
    assert out.input_format == "json"
    assert out.limits.flag_confidence == 0.99
    assert out.limits.t2_limit_99 == trained["version"]["t2_limit_99"]


def test_arrow_and_json_bodies_give_identical_predictions(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer].headers
    X, axis = trained["X"], trained["axis"]
    as_json = _post(client, dev, _json(spectra=X, axis=axis)).json()
    ids = [f"S{i}" for i in range(len(X))]
    as_arrow = _post(client, dev, _arrow(X, axis, sample_id=ids), ARROW_STREAM)
    assert as_arrow.status_code == 200, as_arrow.text
    body = as_arrow.json()
    assert body["input_format"] == "arrow"
    for key in ("predictions", "t2", "q", "flags", "flag_counts"):
        assert body[key] == as_json[key]


def test_a_nested_or_unusual_json_body_gives_the_same_numbers(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    """A '[' in a sample id and integer values take the strict parser: same result."""
    dev = actors[Role.developer].headers
    X = np.round(trained["X"] * 1000)
    fast = _post(client, dev, _json(spectra=X)).json()
    ids = [f"run [{i}]" for i in range(len(X))]
    strict = _post(client, dev, _json(spectra=X.astype(int), sample_ids=ids)).json()
    assert strict["predictions"] == fast["predictions"]
    assert strict["sample_ids"] == ids


@pytest.mark.parametrize("fmt", ["json", "arrow"])
def test_axis_mismatch_is_422_naming_the_first_channel(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], fmt: str
) -> None:
    X, axis = trained["X"], trained["axis"].copy()
    axis[7] += 1.0  # 414 -> 415
    content = _json(spectra=X, axis=axis) if fmt == "json" else _arrow(X, axis)
    r = _post(
        client,
        actors[Role.plant].headers,
        content,
        "application/json" if fmt == "json" else ARROW_STREAM,
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert "at channel 7: got 415, expected 414" in r.json()["detail"]
    if fmt == "arrow":
        assert "'wn_415'" in r.json()["detail"]


def test_arrow_with_missing_channels_is_422(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"], trained["axis"]
    r = _post(client, actors[Role.plant].headers, _arrow(X[:, :-1], axis[:-1]), ARROW_STREAM)
    assert r.status_code == 422
    assert "39 channels, expected 40" in r.json()["detail"]


def test_wrong_channel_count_is_422_naming_the_row(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    rows = trained["X"].tolist()
    rows[3] = rows[3][:-2]
    r = _post(client, actors[Role.plant].headers, _json(spectra=rows))
    assert r.status_code == 422
    assert r.json()["detail"] == "row 3 of spectra has 38 values but the model expects 40 channels"


@pytest.mark.parametrize("fmt", ["json", "arrow"])
def test_nan_is_422_naming_row_and_channel(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], fmt: str
) -> None:
    X = trained["X"].copy()
    X[2, 5] = np.nan
    if fmt == "json":
        # Strict JSON has no NaN; clients that write one anyway get it named, not a parse error.
        content, ctype = json.dumps({"spectra": X.tolist()}).encode(), None
    else:
        content, ctype = _arrow(X, trained["axis"]), ARROW_STREAM
    r = _post(client, actors[Role.plant].headers, content, ctype or "application/json")
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        "row 2, channel 5 (wn_410) is NaN or null: spectra must be finite"
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"spectra": [[1, 2', "the body is not valid JSON"),
        (b'{"spectra": [[1]], "wavelengths": [1]}', "unknown field 'wavelengths'"),
        (b'{"spectra": []}', "no spectra"),
        (b'{"axis": [1]}', "spectra is required"),
        (b"[[1, 2]]", "the JSON body must be an object"),
    ],
)
def test_malformed_json_bodies_are_422(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    content: bytes,
    detail: str,
) -> None:
    r = _post(client, actors[Role.plant].headers, content)
    assert r.status_code == 422
    assert detail in r.json()["detail"]


def test_a_value_that_is_not_a_number_is_422_naming_it(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    rows: list[list[Any]] = trained["X"].tolist()
    rows[1][4] = "12.5"
    r = _post(client, actors[Role.plant].headers, _json(spectra=rows))
    assert r.status_code == 422
    assert r.json()["detail"] == 'row 1 of spectra, position 4: "12.5" is not a number'


def test_too_many_spectra_is_422(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGISTRY_MAX_PREDICT_SPECTRA", "5")
    get_settings.cache_clear()
    r = _post(client, actors[Role.plant].headers, _json(spectra=trained["X"]))
    assert r.status_code == 422
    assert "12 spectra in one call; the limit is 5" in r.json()["detail"]


def test_unsupported_content_type_is_415(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    r = _post(client, actors[Role.plant].headers, b"wn_400,wn_402\n1,2\n", "text/csv")
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type"
    assert "text/csv" in r.json()["detail"]


def test_a_body_that_is_not_an_arrow_stream_is_422(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    r = _post(client, actors[Role.plant].headers, b"not arrow", ARROW_STREAM)
    assert r.status_code == 422
    assert "not an Arrow IPC stream" in r.json()["detail"]


def test_unknown_model_or_version_is_404(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers | {"Content-Type": "application/json"}
    body = _json(spectra=trained["X"])
    r = client.post("/api/v1/models/nope/versions/1/predict", content=body, headers=plant)
    assert r.status_code == 404
    assert "model 'nope' does not exist" in r.json()["detail"]
    r = client.post("/api/v1/models/titer_pls/versions/9/predict", content=body, headers=plant)
    assert r.status_code == 404
    assert "has no version 9" in r.json()["detail"]


def test_each_call_writes_one_prediction_log_row_and_no_audit_event(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    plant = actors[Role.plant]
    X = trained["X"].copy()
    X[:2] *= 10  # two spectra far outside the calibration
    content = _arrow(X, trained["axis"])
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    r = _post(client, plant.headers, content, ARROW_STREAM, purpose="evaluation")
    assert r.status_code == 200, r.text
    out = r.json()
    log = session.get(PredictionLog, uuid.UUID(out["prediction_log_id"]))
    assert log is not None
    assert log.caller_id == plant.user.id
    assert log.caller == plant.user.username
    assert str(log.model_version_id) == trained["version"]["id"]
    assert log.artifact_sha256 == trained["version"]["artifact_sha256"]
    assert log.transfer_id is None
    assert log.qualified is False
    assert log.n_spectra == len(X)
    assert log.input_sha256 == hashlib.sha256(content).hexdigest() == out["input_sha256"]
    assert log.input_format == "arrow"
    assert log.purpose == "evaluation"
    assert log.for_gmp is False
    assert log.occurred_at == PredictionRead.model_validate(out).occurred_at
    assert log.flag_counts == {**out["flag_counts"], "flag_confidence": 0.99}
    assert log.flag_counts["t2_exceeded"] >= 2
    # Predictions change no record: the log is their record, the audit chain is untouched.
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_purpose_given_twice_is_422(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    before = session.scalar(select(func.count()).select_from(PredictionLog))
    r = _post(
        client,
        actors[Role.plant].headers,
        _json(spectra=trained["X"], purpose="evaluation"),
        purpose="advisory",
    )
    assert r.status_code == 422
    assert "give purpose once" in r.json()["detail"]
    assert session.scalar(select(func.count()).select_from(PredictionLog)) == before


def test_spectra_far_outside_the_calibration_are_flagged(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X = trained["X"]
    far = np.vstack([X[:3], X[:1] * 10.0])
    out = _post(client, actors[Role.plant].headers, _json(spectra=far)).json()
    flags = out["flags"]
    assert flags["t2_exceeded"][3]
    assert flags["q_exceeded"][3]
    assert flags["outside_operating_range"][3]
    assert out["t2"][3] > out["limits"]["t2_limit_99"]
    assert out["q"][3] > out["limits"]["q_limit_99"]
    assert not any(flags[k][0] for k in ("t2_exceeded", "q_exceeded"))
    assert out["flag_counts"]["any_flag"] == sum(
        any(flags[k][i] for k in flags) for i in range(len(far))
    )


def _audit_transition(session: Session, version: ModelVersion) -> None:
    """The audit event of a status change (predict refuses a version whose row differs from
    its last audited state)."""
    audit.record(
        session,
        actor="pytest",
        action="model_version.transition",
        entity_type="model_version",
        entity_id=version.id,
        reason="test",
    )


def test_the_status_is_read_fresh_on_every_call(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    plant = actors[Role.plant].headers
    content = _json(spectra=trained["X"][:1])
    assert _post(client, plant, content).json()["qualified"] is False
    version = session.get(ModelVersion, uuid.UUID(trained["version"]["id"]))
    assert version is not None
    version.status = VersionStatus.approved  # what the GxP workflow does, audited
    _audit_transition(session, version)
    out = _post(client, plant, content).json()
    assert (out["status"], out["qualified"]) == ("approved", True)
    version.status = VersionStatus.retired
    _audit_transition(session, version)
    r = _post(client, plant, content)
    assert r.status_code == 409
    assert "retired" in r.json()["detail"]


def test_the_artifact_is_read_once_per_process(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    store: LocalStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    predict_service.serving_models.clear()
    reads: list[str] = []
    real_get = store.get

    def counting_get(digest: str) -> bytes:
        reads.append(digest)
        return real_get(digest)

    monkeypatch.setattr(store, "get", counting_get)
    plant = actors[Role.plant].headers
    content = _json(spectra=trained["X"])
    first = _post(client, plant, content).json()
    assert reads == [trained["version"]["artifact_sha256"]]
    store.path(trained["version"]["artifact_sha256"]).unlink()  # gone from the store
    second = _post(client, plant, content)
    assert second.status_code == 200, second.text
    assert second.json()["predictions"] == first["predictions"]
    assert len(reads) == 1


def test_a_corrupt_artifact_is_refused_on_first_load(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], store: LocalStore
) -> None:
    predict_service.serving_models.clear()
    path = store.path(trained["version"]["artifact_sha256"])
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))  # one bit pattern changed
    r = _post(client, actors[Role.plant].headers, _json(spectra=trained["X"]))
    assert r.status_code == 409  # not a 5xx for the plant to retry: the bytes stay corrupt
    assert r.json()["error"] == "integrity_failure"
    assert "is corrupt" in r.json()["detail"]


def test_a_non_numeric_arrow_column_is_422_naming_it(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"], trained["axis"]
    table = pa.table({f"wn_{p:g}": X[:, j] for j, p in enumerate(axis)})
    table = table.set_column(3, "wn_406", pa.array([str(v) for v in X[:, 3]]))
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    r = _post(client, actors[Role.plant].headers, sink.getvalue(), ARROW_STREAM)
    assert r.status_code == 422
    assert r.json()["detail"] == "spectral column 'wn_406' is not numeric (its type is string)"


def test_arrow_integer_and_float32_columns_are_read_as_float64(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers
    X, axis = np.round(trained["X"] * 64) / 64, trained["axis"]  # exact in float32
    columns: dict[str, Any] = {f"wn_{p:g}": X[:, j].astype(np.float32) for j, p in enumerate(axis)}
    columns["wn_400"] = (X[:, 0] * 64).astype(np.int64)
    X[:, 0] *= 64
    table = pa.table(columns)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = _post(client, plant, sink.getvalue(), ARROW_STREAM)
    assert arrow.status_code == 200, arrow.text
    assert (
        arrow.json()["predictions"] == _post(client, plant, _json(spectra=X)).json()["predictions"]
    )


def test_a_transferred_version_predicts_as_core_transform_then_predict(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    """Target version 2 (PDS) serves the collapsed model: equal to transforming the plant
    spectra with the transfer and predicting with version 1, and it names its record."""
    dev = actors[Role.developer].headers
    data = transfer_data()
    create_domain(client, dev)
    create_domain(client, dev, PLANT_DOMAIN, scale="2000 L", probe_serial="plant-probe")
    ds = upload_dataset(client, dev, data.source_bytes(), name="BATCH-2026-001").json()
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    body = {
        "dataset_sha256": ds["sha256"],
        "n_components": 5,
        "intended_use": "monitoring",
        "reason": "r",
    }
    v1 = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev).json()
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "pds",
        "params": {"window": 7, "rcond": 0.01},
        "n_standards": 12,
        "change_control": "CC-PREDICT-1",
        "intended_use": "monitoring",
        "operating_range": v1["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    opened = client.post("/api/v1/transfers", json=plan, headers=dev)
    assert opened.status_code == 201, opened.text
    record = client.post(
        f"/api/v1/transfers/{opened.json()['id']}/standards",
        data={"reason": "plant probe standards"},
        files={"target_standards": ("standards.parquet", data.target_bytes())},
        headers=dev,
    )
    assert record.status_code == 201, record.text

    grant_scope(client, actors[Role.admin].headers, [PLANT_DOMAIN])
    plant = actors[Role.plant].headers
    r = client.post(
        "/api/v1/models/titer_pls/versions/2/predict",
        content=_json(spectra=data.validation_x, axis=data.axis),
        headers=plant | {"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    source = _artifact_model(client, dev)
    artifact = client.get("/api/v1/models/titer_pls/versions/2/artifact", headers=dev)
    with np.load(io.BytesIO(artifact.content), allow_pickle=False) as npz:
        transfer = ServingModel.from_arrays(dict(npz)).transfer
    assert transfer is not None
    mapped = transfer.transform(data.validation_x)
    np.testing.assert_allclose(out["predictions"], source.predict(mapped), rtol=0, atol=1e-9)
    t2, q = source.diagnose(mapped)
    np.testing.assert_allclose(out["t2"], t2, rtol=1e-9)
    np.testing.assert_allclose(out["q"], q, rtol=1e-9)
    assert out["transfer_record"] == {
        "id": record.json()["id"],
        "number": record.json()["number"],
        "status": "completed",
        "verdict": record.json()["transfer"]["acceptance"]["verdict"],
    }
    assert out["status"] == "pending_requalification"
    assert out["qualified"] is False
    log = session.get(PredictionLog, uuid.UUID(out["prediction_log_id"]))
    assert log is not None
    assert str(log.transfer_id) == record.json()["id"]
