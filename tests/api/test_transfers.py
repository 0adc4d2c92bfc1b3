"""Calibration transfers through HTTP: plan, standards, record, target version — and every
refusal leaving nothing behind. Runs on both databases (the ``client`` fixture)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.kennard_stone import kennard_stone
from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.core.transfer import fit_transfer
from app.db.models import AuditEvent, TransferRecord
from app.enums import Role
from app.services import transfers as transfers_service
from app.services.transfer_evaluation import CV_BASIS, VALIDATION_BASIS
from app.services.transfers import SELECTION_METHOD
from app.store import LocalStore
from tests.factories import (
    DOMAIN,
    PLANT_DOMAIN,
    create_domain,
    make_spectral_table,
    spectral_table,
    table_bytes,
    train_transfer_source,
    transfer_data,
    upload_dataset,
)
from tests.helpers import Actor, assert_error, grant_scope, nothing_written, record_counts

MODEL = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new soft sensor"}
N_STANDARDS = 12


@pytest.fixture
def dev(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.developer].headers


@pytest.fixture
def source(client: TestClient, dev: dict[str, str]) -> dict[str, Any]:
    """titer_pls v1 trained on simulated development-probe spectra; a plant domain."""
    return train_transfer_source(client, dev)


def _plan(source: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "auto",
        "n_standards": N_STANDARDS,
        "change_control": "CC-TEST-0001",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    return body | overrides


def _open(
    client: TestClient, headers: dict[str, str], source: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    r = client.post("/api/v1/transfers", json=_plan(source, **overrides), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _standards(
    client: TestClient,
    headers: dict[str, str],
    ref: Any,
    *,
    target: bytes | None = None,
    source_standards: bytes | None = None,
    validation: bytes | None = None,
    reason: str = "plant probe standards",
    **form: str,
) -> httpx.Response:
    files = {"target_standards": ("standards.parquet", target or transfer_data().target_bytes())}
    if source_standards is not None:
        files["source_standards"] = ("source_standards.parquet", source_standards)
    if validation is not None:
        files["validation"] = ("validation.parquet", validation)
    response: httpx.Response = client.post(
        f"/api/v1/transfers/{ref}/standards",
        data={"reason": reason, **form},
        files=files,
        headers=headers,
    )
    return response


def _load(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "meta"}


# --------------------------------------------------------------------------------------------
# The arc
# --------------------------------------------------------------------------------------------


def test_transfer_end_to_end_record_and_target_version(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    data = transfer_data()
    opened = _open(client, dev, source)
    assert opened["status"] == "awaiting_standards"
    assert opened["number"] >= 1
    assert opened["governance"]["requalification_status"] is None
    assert opened["governance"]["lineage"]["target_version"] is None
    assert opened["transfer"]["acceptance"]["verdict"] is None
    assert opened["source"]["in_domain_metrics"]["n"] == source["version"]["split"]["n_holdout"]

    r = _standards(client, dev, opened["number"], validation=data.validation_bytes())
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["status"] == "completed"
    assert record["id"] == opened["id"]

    src, tgt, tr, gov = (record[k] for k in ("source", "target", "transfer", "governance"))
    assert src["model"] == "titer_pls"
    assert src["version"] == 1
    assert src["domain"] == DOMAIN
    assert src["training_dataset_sha256"] == source["dataset"]["sha256"]
    assert src["in_domain_metrics"] == source["version"]["metrics"]["holdout"]
    assert src["instrument"]
    assert src["scale"] == "250 mL"
    assert tgt["domain"] == PLANT_DOMAIN
    assert tgt["scale"] == "2000 L"

    # The simulated probe shift ruins the source model; the transfer repairs it, on unseen
    # samples of another batch.
    assert tgt["naive_metrics"]["n"] == len(data.validation_ids)
    assert tgt["naive_metrics"]["r2"] < 0
    assert tr["post_transfer_metrics"]["n"] == len(data.validation_ids)
    assert tr["post_transfer_metrics"]["r2"] >= 0.98
    assert tr["metrics_basis"] == tgt["naive_basis"] == VALIDATION_BASIS

    assert tr["method_requested"] == "auto"
    assert tr["method_chosen"] in {"pds", "ds", "sbc", "bias", "naive", "weighted"}
    assert tr["parameters"] is not None
    assert tr["selection_rule"] == "weighted"
    assert sum(m["weight"] for m in tr["members"]) == pytest.approx(1.0)
    weights = {(r["method"], str(r["params"])): r["weight"] for r in tr["cv_table"]}
    for m in tr["members"]:
        assert weights[(m["method"], str(m["params"]))] == pytest.approx(m["weight"])
    if tr["method_chosen"] == "weighted":
        assert tr["parameters"] == {"n_members": len(tr["members"])}
        assert "cross-validation-weighted combination" in tr["conclusion"]
    assert tr["n_standards"] == N_STANDARDS
    assert tr["n_candidates"] == data.candidates.size
    assert len(tr["standard_sample_ids"]) == N_STANDARDS
    assert tr["selection_method"] == SELECTION_METHOD
    assert tr["scheme"] == f"leave-one-out over {N_STANDARDS} standards"
    assert len(tr["cv_table"]) >= 10
    assert tr["source_standards_origin"] == "source training dataset"
    assert tr["source_standards_dataset_sha256"] is None
    assert tr["reference_column"] == "titer_g_L"
    acceptance = tr["acceptance"]
    assert acceptance["criteria"] == {"max_rmse": None, "max_rmse_ratio": 3.0}
    always, flag_rate, result = acceptance["results"]
    assert always == {
        "criterion": "not_worse_than_naive",
        "limit": tgt["naive_metrics"]["rmse"],
        "observed": tr["post_transfer_metrics"]["rmse"],
        "passed": True,
    }
    rates_99 = tr["applicability"]["flag_rates"]["at_99"]
    assert flag_rate == {
        "criterion": "max_flag_rate",
        "limit": 0.05,
        "observed": max(rates_99["t2"], rates_99["q"]),
        "passed": True,
    }
    ratio = tr["post_transfer_metrics"]["rmse"] / src["in_domain_metrics"]["rmse"]
    assert result == {
        "criterion": "max_rmse_ratio",
        "limit": 3.0,
        "observed": pytest.approx(ratio, rel=1e-12),
        "passed": ratio <= 3.0,
    }
    assert acceptance["verdict"] == ("pass" if ratio <= 3.0 else "fail")
    assert "calibrated on target-probe data" in tr["diagnostics"]

    for key, domain in (
        ("target_standards_dataset_sha256", PLANT_DOMAIN),
        ("validation_dataset_sha256", PLANT_DOMAIN),
    ):
        pinned = client.get(f"/api/v1/datasets/{tr[key]}", headers=dev)
        assert pinned.status_code == 200
        assert pinned.json()["domain"] == domain

    assert gov["requalification_status"] == "pending_requalification"
    assert gov["operating_range"] == source["version"]["operating_range"]
    assert gov["intended_use"] == "monitoring"
    assert gov["change_control"] == "CC-TEST-0001"
    assert gov["created_by"] == gov["completed_by"] == "test-developer"
    assert gov["completed_at"] >= gov["created_at"]
    lineage = gov["lineage"]
    assert lineage["source_version"] == {
        "model": "titer_pls",
        "version": 1,
        "id": source["version"]["id"],
    }
    assert lineage["transfer"] == {"number": record["number"], "id": record["id"]}
    assert lineage["target_version"]["version"] == 2

    card = client.get("/api/v1/models/titer_pls/versions/2", headers=dev).json()
    assert card["kind"] == "transferred"
    assert card["transfer_verdict"] == record["transfer"]["acceptance"]["verdict"] == "pass"
    assert card["status"] == "pending_requalification"
    assert card["domain"] == PLANT_DOMAIN
    assert card["source_version"] == 1
    assert card["transfer_id"] == record["id"]
    assert card["transfer_number"] == record["number"]
    assert card["artifact_sha256"] == record["artifact_sha256"]
    assert card["source_training_dataset_sha256"] == source["dataset"]["sha256"]
    assert card["source_component_selection"] == source["version"]["component_selection"]
    assert card["source_split"] == source["version"]["split"]
    assert card["source_in_domain_metrics"] == source["version"]["metrics"]["holdout"]
    assert card["source_in_domain_basis"] == "held-out rows of the source training dataset"
    assert card["target_standards_dataset_sha256"] == tr["target_standards_dataset_sha256"]
    assert card["validation_dataset_sha256"] == tr["validation_dataset_sha256"]
    assert card["source_standards_dataset_sha256"] is None
    assert "dataset_sha256" not in card
    assert card["n_components"] == source["version"]["n_components"]
    assert card["metrics"]["post_transfer"] == tr["post_transfer_metrics"]
    assert card["metrics"]["naive"] == tgt["naive_metrics"]
    assert card["metrics"]["basis"] == VALIDATION_BASIS
    # The target domain's limits, not the source version's (tests/api/test_transfer_limits.py).
    limits = tr["applicability"]["limits"]
    assert (card["t2_limit_95"], card["t2_limit_99"]) == (limits["t2_95"], limits["t2_99"])
    assert (card["q_limit_95"], card["q_limit_99"]) == (limits["q_95"], limits["q_99"])
    assert card["q_limit_99"] != source["version"]["q_limit_99"]
    assert card["limits_basis"] == tr["applicability"]["summary"]
    assert card["operating_range_source"] == "declared"

    by_uuid = client.get(f"/api/v1/transfers/{record['id']}", headers=dev)
    by_number = client.get(f"/api/v1/transfers/{record['number']}", headers=dev)
    assert by_uuid.json() == by_number.json() == record

    actions = list(
        session.scalars(
            select(AuditEvent.action).where(AuditEvent.entity_id.in_([record["id"], card["id"]]))
        )
    )
    assert sorted(actions) == ["model_version.create", "transfer.complete", "transfer.open"]


def test_target_artifact_predicts_as_core_transform_then_predict(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    data = transfer_data()
    params = {"window": 7, "rcond": 0.01}
    opened = _open(client, dev, source, method="pds", params=params)
    r = _standards(client, dev, opened["id"], validation=data.validation_bytes())
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["transfer"]["method_chosen"] == "pds"
    assert record["transfer"]["parameters"] == params
    assert record["transfer"]["cv_table"] is None  # fixed method, validation set given

    artifact = client.get("/api/v1/models/titer_pls/versions/2/artifact", headers=dev)
    assert artifact.headers["X-Content-SHA256"] == record["artifact_sha256"]
    served = ServingModel.from_arrays(_load(artifact.content))
    v1 = client.get("/api/v1/models/titer_pls/versions/1/artifact", headers=dev)
    model = LinearSoftSensor.from_arrays(_load(v1.content))

    # The same arc in app.core alone: KS on the plant spectra, pair, fit, transform, predict.
    Xt = data.plant_x[data.candidates]
    chosen = data.candidates[kennard_stone(Xt, N_STANDARDS)]
    assert record["transfer"]["standard_sample_ids"] == [data.source_ids[i] for i in chosen]
    transfer = fit_transfer(
        "pds",
        data.source_x[chosen],
        data.plant_x[chosen],
        coef=model.coef,
        intercept=model.intercept,
        **params,
    )
    expected = model.predict(transfer.transform(data.validation_x))
    np.testing.assert_allclose(served.predict(data.validation_x), expected, rtol=0, atol=1e-9)
    t2, q = served.diagnose(data.validation_x)
    t2_core, q_core = model.diagnose(transfer.transform(data.validation_x))
    np.testing.assert_allclose(t2, t2_core, rtol=1e-9)
    np.testing.assert_allclose(q, q_core, rtol=1e-9)


def test_without_validation_set_metrics_are_cross_validated_over_the_standards(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    opened = _open(client, dev, source, method="pds", params={"window": 5})
    r = _standards(client, dev, opened["number"])
    assert r.status_code == 201, r.text
    tr = r.json()["transfer"]
    assert tr["metrics_basis"] == CV_BASIS
    assert r.json()["target"]["naive_basis"] == CV_BASIS
    assert tr["post_transfer_metrics"]["n"] == N_STANDARDS
    assert r.json()["target"]["naive_metrics"]["n"] == N_STANDARDS
    assert tr["parameters"] == {"window": 5, "rcond": 0.01}
    (row,) = tr["cv_table"]
    assert row["method"] == "pds"
    assert row["rmsecv"] == pytest.approx(tr["post_transfer_metrics"]["rmse"], rel=1e-12)
    assert tr["validation_dataset_sha256"] is None


def test_uploaded_source_standards_are_pinned_in_the_source_domain(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    data = transfer_data()
    opened = _open(client, dev, source, method="ds", params={"rcond": 0.03})
    r = _standards(
        client,
        dev,
        opened["number"],
        source_standards=data.source_standards_bytes(),
        validation=data.validation_bytes(),
    )
    assert r.status_code == 201, r.text
    tr = r.json()["transfer"]
    assert tr["source_standards_origin"] == "uploaded"
    pinned = client.get(f"/api/v1/datasets/{tr['source_standards_dataset_sha256']}", headers=dev)
    assert pinned.json()["domain"] == DOMAIN


def test_same_inputs_give_the_same_numbers_to_the_last_digit(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    validation = transfer_data().validation_bytes()
    records = []
    for _ in range(2):
        opened = _open(client, dev, source)
        r = _standards(client, dev, opened["number"], validation=validation)
        assert r.status_code == 201, r.text
        records.append(r.json())
    first, second = records
    assert first["number"] != second["number"]
    for block, keys in (
        ("transfer", ("method_chosen", "parameters", "standard_sample_ids", "cv_table")),
        ("transfer", ("post_transfer_metrics", "acceptance", "target_standards_dataset_sha256")),
        ("target", ("naive_metrics",)),
        ("source", ("in_domain_metrics",)),
    ):
        for key in keys:
            assert first[block][key] == second[block][key], key  # exact: == on floats


def test_list_filters_by_status_model_domain_and_change_control(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    done = _open(client, dev, source, method="sbc", change_control="CC-A")
    assert _standards(client, dev, done["number"]).status_code == 201
    waiting = _open(client, dev, source, change_control="CC-B")

    def numbers(**query: str) -> list[int]:
        r = client.get("/api/v1/transfers", params=query, headers=dev)
        assert r.status_code == 200, r.text
        return [t["number"] for t in r.json()]

    assert numbers() == [done["number"], waiting["number"]]
    assert numbers(status="completed") == [done["number"]]
    assert numbers(status="awaiting_standards") == [waiting["number"]]
    assert numbers(change_control="CC-B") == [waiting["number"]]
    assert numbers(model="titer_pls", domain=DOMAIN) == [done["number"], waiting["number"]]
    assert numbers(domain=PLANT_DOMAIN, change_control="CC-A") == [done["number"]]
    r = client.get("/api/v1/transfers", params={"model": "nope"}, headers=dev)
    assert r.status_code == 404


def test_the_list_pages_with_a_link_to_the_next_page(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    numbers = [_open(client, dev, source, change_control="CC-P")["number"] for _ in range(3)]
    r = client.get("/api/v1/transfers", params={"change_control": "CC-P", "limit": 2}, headers=dev)
    assert r.status_code == 200, r.text
    assert [t["number"] for t in r.json()] == numbers[:2]
    next_url = r.links["next"]["url"]
    assert f"after={numbers[1]}" in next_url
    assert "change_control=CC-P" in next_url  # the filters carry over
    r = client.get(next_url, headers=dev)
    assert [t["number"] for t in r.json()] == numbers[2:]
    assert "next" not in r.links
    assert "link" not in r.headers


# --------------------------------------------------------------------------------------------
# Refusals: 4xx in the envelope, nothing written
# --------------------------------------------------------------------------------------------


def test_unpaired_sample_ids_are_refused_and_name_the_ids(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    data = transfer_data()
    idx = data.candidates
    ids = [data.source_ids[i] for i in idx]
    ids[3], ids[7] = "NOT-IN-SOURCE-1", "NOT-IN-SOURCE-2"
    blob = table_bytes(
        spectral_table(data.plant_x[idx], data.source_y[idx], data.axis, sample_ids=ids)
    )
    opened = _open(client, dev, source)
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"], target=blob)
    assert_error(r, 422, "2 target standard(s)", "'NOT-IN-SOURCE-1'", "'NOT-IN-SOURCE-2'")


def test_a_different_spectral_axis_is_refused_naming_the_channel(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    data = transfer_data()
    idx = data.candidates
    axis = data.axis.copy()
    axis[100:] += 0.5  # a recalibrated spectrometer: the same channel count, another axis
    ids = [data.source_ids[i] for i in idx]
    blob = table_bytes(spectral_table(data.plant_x[idx], data.source_y[idx], axis, sample_ids=ids))
    opened = _open(client, dev, source)
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"], target=blob)
    assert_error(r, 422, "target standards", "channel 100", "600.5", "expected 600")


def test_standards_inside_the_validation_set_are_refused(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    data = transfer_data()
    opened = _open(client, dev, source)
    rows = data.candidates[:20]
    with nothing_written(session, store):
        r = _standards(
            client,
            dev,
            opened["number"],
            target=data.target_bytes(data.candidates[10:]),
            validation=data.target_bytes(rows),
        )
    first = data.source_ids[data.candidates[10]]
    assert_error(r, 422, "10 standard(s) are also in the validation set", repr(first))


def test_fewer_standards_than_planned_are_refused(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    data = transfer_data()
    opened = _open(client, dev, source, method="pds", params={"window": 11})
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"], target=data.target_bytes(data.candidates[:8]))
    assert_error(r, 422, f"need {N_STANDARDS} target standards, got 8")


def test_too_many_candidates_for_kennard_stone_are_refused(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transfers_service, "MAX_CANDIDATES", 20)
    opened = _open(client, dev, source)
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"])
    assert_error(r, 422, "30 candidate standards offered", "at most 20")


def test_pds_and_auto_need_three_standards(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    before = record_counts(session)
    for method in ("pds", "auto"):
        r = client.post(
            "/api/v1/transfers", json=_plan(source, method=method, n_standards=2), headers=dev
        )
        assert_error(r, 422, "at least 3 standards")
    assert record_counts(session) == before


def test_window_wider_than_the_spectrum_is_refused(
    client: TestClient, dev: dict[str, str], session: Session
) -> None:
    create_domain(client, dev)
    create_domain(client, dev, PLANT_DOMAIN)
    blob = make_spectral_table(n_samples=20, n_channels=9, seed=4)
    sha = upload_dataset(client, dev, blob).json()["sha256"]
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    body = {"dataset_sha256": sha, "n_components": 2, "intended_use": "monitoring", "reason": "t"}
    version = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev).json()
    before = record_counts(session)
    r = client.post(
        "/api/v1/transfers",
        json=_plan({"version": version}, method="pds", params={"window": 11}),
        headers=dev,
    )
    assert_error(r, 422, "window (11 channels) is wider than the spectrum (9 channels)")
    assert record_counts(session) == before


def test_operating_range_outside_the_source_is_refused(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    hi = source["version"]["operating_range"]["max"]
    before = record_counts(session)
    r = client.post(
        "/api/v1/transfers",
        json=_plan(source, operating_range={"min": 0.5, "max": hi + 1.0}),
        headers=dev,
    )
    assert_error(r, 422, "lies outside the operating range of titer_pls v1")
    assert record_counts(session) == before


def test_a_completed_transfer_is_immutable(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    opened = _open(client, dev, source, method="sbc")
    assert _standards(client, dev, opened["number"]).status_code == 201
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"])
    assert_error(r, 409, "already completed")
    # Behind the service's back, the database refuses too.
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(
            update(TransferRecord)
            .where(TransferRecord.number == opened["number"])
            .values(verdict="pass")
        )


INVALID_PLANS: list[tuple[dict[str, Any], int, str]] = [
    ({"target_domain": DOMAIN}, 422, "already reads"),
    ({"target_domain": "nowhere"}, 404, "domain 'nowhere' does not exist"),
    ({"source_model": "nope"}, 404, "model 'nope' does not exist"),
    ({"source_version": 9}, 404, "has no version 9"),
    ({"params": {"window": 5}}, 422, "takes no fixed parameters"),
    ({"method": "sbc", "params": {"rcond": 0.1}}, 422, "takes no fixed parameters"),
    ({"method": "pds", "params": {"window": 4}}, 422, "must be odd"),
    ({"method": "ds", "params": {"window": 5}}, 422, "applies to pds only"),
    ({"method": "ds", "params": {"rcond": 1.0}}, 422, "rcond"),
    ({"acceptance": {}}, 422, "at least one acceptance criterion"),
    ({"change_control": ""}, 422, "change_control"),
]


def test_invalid_plans_are_refused(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    before = record_counts(session)
    for overrides, status, fragment in INVALID_PLANS:
        r = client.post("/api/v1/transfers", json=_plan(source, **overrides), headers=dev)
        assert_error(r, status, fragment)
    assert record_counts(session) == before


def test_unknown_transfer_is_404(client: TestClient, dev: dict[str, str]) -> None:
    for ref in ("999", "3f0f1a2e-0000-4000-8000-000000000000", "not-a-ref"):
        assert_error(client.get(f"/api/v1/transfers/{ref}", headers=dev), 404, "does not exist")


def test_a_failed_verdict_shows_on_the_version_card_and_the_version_list(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    opened = _open(client, dev, source, acceptance={"max_rmse": 1e-9})
    r = _standards(client, dev, opened["number"], validation=transfer_data().validation_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["transfer"]["acceptance"]["verdict"] == "fail"
    version = r.json()["governance"]["lineage"]["target_version"]["version"]
    card = client.get(f"/api/v1/models/titer_pls/versions/{version}", headers=dev).json()
    assert card["transfer_verdict"] == "fail"
    listed = client.get("/api/v1/models/titer_pls/versions", headers=dev).json()
    assert [v.get("transfer_verdict") for v in listed] == [None, "fail"]
    predicted = client.post(
        f"/api/v1/models/titer_pls/versions/{version}/predict",
        json={"spectra": transfer_data().validation_x[:1].tolist()},
        headers=dev,
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["transfer_record"]["verdict"] == "fail"
    failed = client.get("/api/v1/transfers", params={"verdict": "fail"}, headers=dev).json()
    assert [t["number"] for t in failed] == [opened["number"]]
    passed = client.get("/api/v1/transfers", params={"verdict": "pass"}, headers=dev).json()
    assert opened["number"] not in [t["number"] for t in passed]
    assert_error(client.get("/api/v1/transfers?verdict=maybe", headers=dev), 422, "verdict")


def test_the_log_and_the_audit_trail_filter_by_transfer_number_or_uuid(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], actors: dict[Role, Actor]
) -> None:
    data = transfer_data()
    opened = _open(client, dev, source)
    r = _standards(client, dev, opened["number"], validation=data.validation_bytes())
    assert r.status_code == 201, r.text
    record = r.json()
    grant_scope(client, actors[Role.admin].headers, [DOMAIN, PLANT_DOMAIN])
    plant, qa = actors[Role.plant].headers, actors[Role.qa].headers
    for version in (1, 2):
        call = client.post(
            f"/api/v1/models/titer_pls/versions/{version}/predict",
            json={"spectra": data.validation_x[:2].tolist()},
            headers=plant,
        )
        assert call.status_code == 200, call.text

    for ref in (record["number"], record["id"]):
        log = client.get("/api/v1/prediction-log", params={"transfer": ref}, headers=qa)
        assert log.status_code == 200, log.text
        entries = log.json()["entries"]
        assert [(e["version"], e["transfer_number"]) for e in entries] == [(2, record["number"])]
        events = client.get(
            "/api/v1/audit", params={"entity_type": "transfer", "entity_id": ref}, headers=qa
        ).json()["events"]
        assert [e["action"] for e in events] == ["transfer.open", "transfer.complete"]
        assert {e["entity_id"] for e in events} == {record["id"]}
    assert_error(
        client.get("/api/v1/prediction-log", params={"transfer": 999}, headers=qa), 404, "999"
    )


def test_the_record_says_in_words_when_no_correction_beats_naive(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    """Target standards measured on the source probe itself: nothing to correct."""
    data = transfer_data()
    opened = _open(client, dev, source)
    r = _standards(
        client,
        dev,
        opened["number"],
        target=data.source_standards_bytes(),
        validation=data.validation_bytes(),
    )
    assert r.status_code == 201, r.text
    tr = r.json()["transfer"]
    naive = next(row for row in tr["cv_table"] if row["method"] == "naive")
    assert naive["rmsecv"] == min(row["rmsecv"] for row in tr["cv_table"])
    assert "no correction beat the source model applied untouched" in tr["conclusion"]
    assert opened["transfer"]["conclusion"] is None


def test_a_failed_record_names_the_failed_criteria(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    opened = _open(client, dev, source, acceptance={"max_rmse": 1e-9})
    r = _standards(client, dev, opened["number"], validation=transfer_data().validation_bytes())
    assert r.status_code == 201, r.text
    conclusion = r.json()["transfer"]["conclusion"]
    assert "FAILED acceptance: max_rmse observed" in conclusion
    assert "limit 1e-09" in conclusion


def test_a_transfer_awaiting_standards_can_be_cancelled_with_a_reason(
    client: TestClient,
    dev: dict[str, str],
    source: dict[str, Any],
    session: Session,
    store: LocalStore,
    actors: Any,
) -> None:
    opened = _open(client, dev, source)
    qa = actors[Role.qa].headers
    assert_error(
        client.post(
            f"/api/v1/transfers/{opened['number']}/cancel", json={"reason": "x"}, headers=qa
        ),
        403,
    )
    assert_error(
        client.post(f"/api/v1/transfers/{opened['number']}/cancel", json={}, headers=dev), 422
    )
    r = client.post(
        f"/api/v1/transfers/{opened['number']}/cancel",
        json={"reason": "opened against the wrong target domain"},
        headers=dev,
    )
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["status"] == "cancelled"
    gov = record["governance"]
    assert gov["cancelled_by"] == "test-developer"
    assert gov["cancel_reason"] == "opened against the wrong target domain"
    assert gov["cancelled_at"] >= gov["created_at"]
    assert record["transfer"]["conclusion"] is None
    events = client.get(
        "/api/v1/audit",
        params={"entity_type": "transfer", "entity_id": opened["number"]},
        headers=qa,
    ).json()["events"]
    assert [e["action"] for e in events] == ["transfer.open", "transfer.cancel"]
    assert events[-1]["reason"] == "opened against the wrong target domain"
    assert events[-1]["before"] == {"status": "awaiting_standards"}

    # A cancelled record can neither be run, nor cancelled again, nor edited behind the back.
    with nothing_written(session, store):
        r = _standards(client, dev, opened["number"])
    assert_error(r, 409, "was cancelled")
    assert_error(
        client.post(
            f"/api/v1/transfers/{opened['id']}/cancel", json={"reason": "again"}, headers=dev
        ),
        409,
        "was cancelled",
    )
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(
            update(TransferRecord)
            .where(TransferRecord.number == opened["number"])
            .values(status="awaiting_standards")
        )
    listed = client.get("/api/v1/transfers", params={"status": "cancelled"}, headers=dev).json()
    assert [t["number"] for t in listed] == [opened["number"]]


def test_a_completed_transfer_cannot_be_cancelled(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    opened = _open(client, dev, source, method="sbc")
    assert _standards(client, dev, opened["number"]).status_code == 201
    assert_error(
        client.post(
            f"/api/v1/transfers/{opened['number']}/cancel", json={"reason": "late"}, headers=dev
        ),
        409,
        "already completed",
    )


def test_lineage_follows_datasets_versions_and_transfers_both_ways(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    opened = _open(client, dev, source)
    r = _standards(client, dev, opened["number"], validation=transfer_data().validation_bytes())
    assert r.status_code == 201, r.text
    record = r.json()
    tr = record["transfer"]
    cancelled = _open(client, dev, source)
    assert (
        client.post(
            f"/api/v1/transfers/{cancelled['number']}/cancel", json={"reason": "t"}, headers=dev
        ).status_code
        == 200
    )

    graph = client.get("/api/v1/models/titer_pls/versions/2/lineage", headers=dev).json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert graph["version"]["label"] == "titer_pls v2"
    ancestors = {(nodes[i]["kind"], nodes[i]["label"]) for i in graph["ancestors"]}
    assert ("transfer", f"transfer #{record['number']}") in ancestors
    assert ("version", "titer_pls v1") in ancestors
    shas = {nodes[i]["sha256"] for i in graph["ancestors"] if nodes[i]["kind"] == "dataset"}
    assert shas == {
        source["dataset"]["sha256"],
        tr["target_standards_dataset_sha256"],
        tr["validation_dataset_sha256"],
    }
    assert graph["descendants"] == []
    relations = {(nodes[e["source"]]["label"], e["relation"]) for e in graph["edges"]}
    assert ("titer_pls v1", "source_version") in relations
    assert (f"transfer #{record['number']}", "created") in relations

    v1 = client.get("/api/v1/models/titer_pls/versions/1/lineage", headers=dev).json()
    v1_nodes = {n["id"]: n for n in v1["nodes"]}
    made = {(v1_nodes[i]["label"], v1_nodes[i]["status"]) for i in v1["descendants"]}
    assert ("titer_pls v2", "pending_requalification") in made
    assert (f"transfer #{cancelled['number']}", "cancelled") in made
    assert {v1_nodes[i]["kind"] for i in v1["ancestors"]} == {"dataset"}
    assert_error(client.get("/api/v1/models/titer_pls/versions/9/lineage", headers=dev), 404)


def test_the_standards_datasets_audit_events_name_their_transfer(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    opened = _open(client, dev, source)
    r = _standards(client, dev, opened["number"], validation=transfer_data().validation_bytes())
    assert r.status_code == 201, r.text
    tr = r.json()["transfer"]
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.register"))
    named = {
        e.after["sha256"]: e.after["registered_for"]
        for e in events
        if e.after is not None and "registered_for" in e.after
    }
    for key, label in (
        ("target_standards_dataset_sha256", "target standards"),
        ("validation_dataset_sha256", "validation"),
    ):
        assert named[tr[key]]["transfer_number"] == opened["number"]
        assert named[tr[key]]["transfer_id"] == opened["id"]
        assert label in named[tr[key]]["as"]
