"""The monitoring section on the version page and the reviewer's home, and its plots
(through the app in-process, both backends)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from app.db.base import utcnow
from app.enums import Role
from tests.factories import (
    DOMAIN,
    create_domain,
    make_spectral_table,
    simulate_spectra,
    upload_dataset,
)
from tests.helpers import PASSWORD, Actor, grant_scope
from tests.signing import approve_version

V1 = "/models/titer_pls/versions/1"


def _log_in(client: TestClient, username: str) -> None:
    page = client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    data = {"username": username, "password": PASSWORD, "csrf_token": found.group(1)}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303


def _drifted_version(client: TestClient, actors: dict[Role, Actor]) -> None:
    """titer_pls v1 approved, predicted, and references 3 SEP above its predictions."""
    dev = actors[Role.developer].headers
    create_domain(client, dev)
    blob = make_spectral_table(n_samples=60, n_channels=40, seed=3)
    ds = upload_dataset(client, dev, blob).json()
    model = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "t"}
    assert client.post("/api/v1/models", json=model, headers=dev).status_code == 201
    body = {"dataset_sha256": ds["sha256"], "intended_use": "monitoring", "reason": "first"}
    assert (
        client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev).status_code == 201
    )
    grant_scope(client, actors[Role.admin].headers, [DOMAIN])
    approve_version(client, actors)
    api = "/api/v1" + V1
    settings = client.get(api + "/monitoring", headers=dev).json()["settings"]
    X, _, _ = simulate_spectra(6, 40, seed=11)
    call = client.post(
        api + "/predict",
        content=json.dumps({"spectra": X.tolist()}).encode(),
        headers={**dev, "Content-Type": "application/json"},
    ).json()
    for i, predicted in enumerate(call["predictions"]):
        value = predicted + settings["centre_value"] + 3 * settings["validation_sep"]
        r = client.post(
            f"/api/v1/prediction-log/{call['prediction_log_id']}/references",
            json={
                "row": i,
                "value": value,
                "units": "g/L",
                "assay_method": "HPLC",
                "sample_time": (utcnow() - timedelta(days=6 - i)).isoformat(),
                "lab_reference": f"LIMS-{i}",
            },
            headers=dev,
        )
        assert r.status_code == 201, r.text


def test_the_version_page_shows_the_rules_the_alarm_and_the_plots(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    _drifted_version(client, actors)
    _log_in(client, "test-qa")
    page = client.get(V1)
    assert page.status_code == 200
    assert "Monitoring against reference results" in page.text
    assert "monitoring alarm (" in page.text
    assert "requalification_due" in page.text
    for kind in ("chart", "predicted", "exceedance"):
        assert f"{V1}/monitoring/{kind}.svg" in page.text
        svg = client.get(f"{V1}/monitoring/{kind}.svg")
        assert svg.status_code == 200
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.content.lstrip().startswith(b"<?xml")
    assert client.get(f"{V1}/monitoring/nope.svg").status_code == 404
    assert client.get("/models/titer_pls/versions/9/monitoring/chart.svg").status_code == 404


def test_the_home_lists_the_versions_a_rule_made_due_with_their_chart(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    _log_in(client, "test-qa")
    assert "No monitoring rule has breached." in client.get("/home").text
    _drifted_version(client, actors)
    home = client.get("/home").text
    assert "Monitoring alarms (1)" in home
    assert f"{V1}/monitoring/chart.svg" in home
