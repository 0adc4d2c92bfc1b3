"""A transferred version's T²/Q limits are the target domain's (issue 10, item 3): the record
says what they were calibrated on and how often they flag, predictions flag against them, and
the always-on max_flag_rate criterion fails a transfer whose validation spectra they flag far
above nominal. Runs on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.core.simulate import ProbeShift, remeasure, simulate_batch, with_foreign_band
from app.db.models import ModelVersion, TransferRecord
from app.enums import Role
from app.schemas.models import TransferredVersionRead
from app.schemas.transfers import MAX_FLAG_RATE_99, TransferRead
from app.services import models as models_service
from app.services import transfers as transfers_service
from tests.factories import (
    PLANT_DOMAIN,
    spectral_table,
    table_bytes,
    train_transfer_source,
    transfer_data,
)
from tests.helpers import Actor, grant_scope

N_STANDARDS = 12
SEED = 3  # transfer_data's campaign; its plant probe measured with seed + 1


@pytest.fixture
def dev(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.developer].headers


@pytest.fixture
def source(client: TestClient, dev: dict[str, str]) -> dict[str, Any]:
    return train_transfer_source(client, dev)


def _transfer(
    client: TestClient,
    headers: dict[str, str],
    source: dict[str, Any],
    *,
    validation: bytes | None,
    method: str = "auto",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": method,
        "n_standards": N_STANDARDS,
        "change_control": "CC-TEST-0010",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    if params is not None:
        plan["params"] = params
    opened = client.post("/api/v1/transfers", json=plan, headers=headers)
    assert opened.status_code == 201, opened.text
    files = {"target_standards": ("standards.parquet", transfer_data().target_bytes())}
    if validation is not None:
        files["validation"] = ("validation.parquet", validation)
    r = client.post(
        f"/api/v1/transfers/{opened.json()['number']}/standards",
        data={"reason": "plant probe standards"},
        files=files,
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _plant(batch_id: str, *, foreign_band: bool = False) -> np.ndarray:
    """Every 2nd hour of another batch on the plant probe, never uploaded anywhere."""
    batch = simulate_batch(batch_id, seed=SEED)
    if foreign_band:
        batch = with_foreign_band(batch)
    return np.ascontiguousarray(
        remeasure(batch, ProbeShift(), seed=SEED + 1, probe=PLANT_DOMAIN).X[::2]
    )


def _predict(client: TestClient, headers: dict[str, str], X: np.ndarray) -> dict[str, Any]:
    r: httpx.Response = client.post(
        "/api/v1/models/titer_pls/versions/2/predict",
        content=orjson.dumps({"spectra": X}, option=orjson.OPT_SERIALIZE_NUMPY),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_record_says_what_the_target_limits_were_calibrated_on_and_how_often_they_flag(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    data = transfer_data()
    record = _transfer(client, dev, source, validation=data.validation_bytes())
    app = record["transfer"]["applicability"]
    assert app["calibrated"] is True
    calibration = app["calibration"]
    assert calibration["n_standards"] == N_STANDARDS
    assert calibration["n_other_candidates"] == data.candidates.size - N_STANDARDS
    assert calibration["n_validation"] == len(data.validation_ids)
    assert calibration["n_values"] == data.candidates.size + len(data.validation_ids)
    assert "mapped by the transfers of the selection's cross-validation" in calibration["standards"]
    assert "Nomikos & MacGregor" in calibration["method"]
    rates = app["flag_rates"]
    assert rates["spectra"] == "validation"
    assert rates["n"] == len(data.validation_ids)
    assert "leave-one-out" in rates["method"]
    assert (rates["at_95"]["nominal"], rates["at_99"]["nominal"]) == (0.05, 0.01)
    assert rates["at_99"]["t2"] <= 0.03
    assert rates["at_99"]["q"] <= 0.03
    assert rates["at_95"]["either"] >= max(rates["at_95"]["t2"], rates["at_95"]["q"])
    assert app["source_limits"] == {
        "t2_95": source["version"]["t2_limit_95"],
        "t2_99": source["version"]["t2_limit_99"],
        "q_95": source["version"]["q_limit_95"],
        "q_99": source["version"]["q_limit_99"],
    }
    assert app["source_limits_flag_rates"]["n"] == rates["n"]
    assert app["limits"] != app["source_limits"]
    card = client.get("/api/v1/models/titer_pls/versions/2", headers=dev).json()
    assert card["t2_limit_99"] == app["limits"]["t2_99"]
    assert card["q_limit_99"] == app["limits"]["q_99"]
    assert card["limits_basis"] == app["summary"]
    assert app["summary"].startswith(f"calibrated on {calibration['n_values']} target-probe")
    v1 = client.get("/api/v1/models/titer_pls/versions/1", headers=dev).json()
    assert v1["q_limit_99"] == source["version"]["q_limit_99"]  # the source keeps its own


def test_predictions_flag_in_control_target_spectra_rarely_and_another_process(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], actors: dict[Role, Actor]
) -> None:
    record = _transfer(client, dev, source, validation=transfer_data().validation_bytes())
    grant_scope(client, actors[Role.admin].headers, [PLANT_DOMAIN])
    plant = actors[Role.plant].headers
    in_control = _predict(client, plant, _plant("BATCH-2026-003"))
    n = len(in_control["predictions"])
    assert (
        in_control["limits"]["q_limit_99"] == record["transfer"]["applicability"]["limits"]["q_99"]
    )
    assert in_control["flag_counts"]["t2_exceeded"] <= 0.03 * n
    assert in_control["flag_counts"]["q_exceeded"] <= 0.03 * n
    other = _predict(client, plant, _plant("BATCH-2026-003", foreign_band=True)[:10])
    assert all(other["flags"]["q_exceeded"])


def test_without_a_validation_set_the_flag_rates_are_the_standards(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    data = transfer_data()
    app = _transfer(client, dev, source, validation=None)["transfer"]["applicability"]
    assert app["flag_rates"]["spectra"] == "standards"
    assert app["calibration"]["n_validation"] == 0
    assert app["flag_rates"]["n"] == app["calibration"]["n_values"] == data.candidates.size


def test_validation_spectra_flagged_far_above_nominal_fail_the_transfer(
    client: TestClient, dev: dict[str, str], source: dict[str, Any]
) -> None:
    """8 of the 84 validation spectra come from another process (an ethanol band, 80 counts):
    whatever the RMSE, the target limits flag them and max_flag_rate fails the transfer."""
    data = transfer_data()
    other = remeasure(
        with_foreign_band(simulate_batch("BATCH-2026-002", seed=SEED), height=80.0),
        ProbeShift(),
        seed=SEED + 1,
        probe=PLANT_DOMAIN,
    )
    X_val = data.validation_x.copy()
    X_val[-8:] = other.X[1::4][-8:]  # the same hours, the same sample ids
    validation = table_bytes(
        spectral_table(X_val, data.validation_y, data.axis, sample_ids=data.validation_ids)
    )
    record = _transfer(
        client, dev, source, validation=validation, method="pds", params={"window": 5}
    )
    tr = record["transfer"]
    criterion = next(r for r in tr["acceptance"]["results"] if r["criterion"] == "max_flag_rate")
    assert criterion["limit"] == MAX_FLAG_RATE_99
    assert criterion["observed"] > 0.05
    assert criterion["passed"] is False
    assert tr["acceptance"]["verdict"] == "fail"
    assert "max_flag_rate observed" in tr["conclusion"]
    # The RMSE criteria pass: the flag rate alone failed it.
    assert all(r["passed"] for r in tr["acceptance"]["results"] if r is not criterion)


def test_a_record_completed_before_target_limits_still_reads(
    client: TestClient, dev: dict[str, str], source: dict[str, Any], session: Session
) -> None:
    record = _transfer(client, dev, source, validation=transfer_data().validation_bytes())
    row = session.get(TransferRecord, uuid.UUID(record["id"]))
    target = record["governance"]["lineage"]["target_version"]
    version = session.get(ModelVersion, uuid.UUID(target["id"]))
    assert row is not None
    assert version is not None
    result = dict(row.result or {})
    result.pop("applicability")
    result["acceptance_results"] = [
        r for r in result["acceptance_results"] if r["criterion"] != "max_flag_rate"
    ]
    with session.no_autoflush:  # an old record as stored; never written (the row is immutable)
        row.result = result
        old = transfers_service.describe_transfer(session, row)
        card = models_service.describe_version(session, version)
    session.expire(row)
    assert isinstance(old, TransferRead)
    assert old.transfer.applicability is None
    assert [r.criterion for r in old.transfer.acceptance.results or []] == [
        "not_worse_than_naive",
        "max_rmse_ratio",
    ]
    assert isinstance(card, TransferredVersionRead)
    assert card.limits_basis == models_service.SOURCE_LIMITS_BASIS
