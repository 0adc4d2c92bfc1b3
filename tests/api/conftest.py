"""Fixtures shared by the API tests."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.enums import Role
from tests.factories import (
    DOMAIN,
    create_domain,
    make_spectral_table,
    simulate_spectra,
    upload_dataset,
)
from tests.helpers import Actor, grant_scope

N_CHANNELS = 40
MODEL = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new soft sensor"}


@pytest.fixture
def trained(client: TestClient, actors: dict[Role, Actor]) -> dict[str, Any]:
    """titer_pls v1 on 60 simulated spectra x 40 channels (axis 400, 402, ... 478); the plant
    actor is scoped to its domain."""
    dev = actors[Role.developer].headers
    create_domain(client, dev)
    blob = make_spectral_table(n_samples=60, n_channels=N_CHANNELS, seed=3)
    ds = upload_dataset(client, dev, blob).json()
    assert client.post("/api/v1/models", json=MODEL, headers=dev).status_code == 201
    body = {"dataset_sha256": ds["sha256"], "intended_use": "monitoring", "reason": "first"}
    r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev)
    assert r.status_code == 201, r.text
    grant_scope(client, actors[Role.admin].headers, [DOMAIN])
    X, _, axis = simulate_spectra(12, N_CHANNELS, seed=11)
    return {"version": r.json(), "X": X, "axis": axis}
