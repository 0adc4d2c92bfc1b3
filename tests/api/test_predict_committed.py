"""The prediction route on the deployed transaction path (no test overrides): real commits.

The other API tests run each request inside a test transaction that is rolled back; the
prediction route opens its own Core transaction through ``request_transaction``, which they
replace. Here the app runs as deployed, on a database of its own, so the COMMIT of the log
row (and the rollback of a refused call) is the engine's own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db.models import PredictionLog
from app.db.session import get_engine, get_sessionmaker, make_engine
from app.enums import Role
from app.main import create_app
from app.services import auth as auth_service
from app.settings import get_settings
from app.store import get_store
from tests.conftest import _drop_pg_database, fresh_database
from tests.factories import create_domain, make_spectral_table, simulate_spectra, upload_dataset
from tests.helpers import PASSWORD

CACHES = (get_settings, get_engine, get_sessionmaker, get_store)
N_CHANNELS = 40
URL = "/api/v1/models/titer_pls/versions/1/predict"


@pytest.fixture
def deployed(
    backend: str,
    worker_id_safe: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Engine]:
    """A migrated database of the test's own, the settings pointed at it; yields an engine of
    the test's (to look at what the app committed)."""
    tag = f"{worker_id_safe}_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]}"
    url, pg_name = fresh_database(backend, tag, tmp_path)
    monkeypatch.setenv("REGISTRY_DATABASE_URL", url)
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(tmp_path / "store"))
    for cached in CACHES:
        cached.cache_clear()
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        get_engine().dispose()
        for cached in CACHES:
            cached.cache_clear()
        if pg_name:
            _drop_pg_database(pg_name)


def _log_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(PredictionLog)) or 0)


def test_the_deployed_route_commits_one_log_row_and_refusals_none(deployed: Engine) -> None:
    with Session(deployed, expire_on_commit=False) as session, session.begin():
        auth_service.create_user(
            session,
            username="dev",
            full_name="Developer",
            role=Role.developer,
            password=PASSWORD,
            actor="pytest",
            reason="test",
        )
        plant_key = auth_service.create_user(
            session,
            username="plant-dcs",
            full_name="Plant DCS",
            role=Role.plant,
            password=None,
            actor="pytest",
            reason="test",
        ).api_key
    assert plant_key is not None
    plant = {"Authorization": f"Bearer {plant_key}", "Content-Type": "application/json"}
    X, _, _ = simulate_spectra(3, N_CHANNELS, seed=11)

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        r = client.post("/api/v1/auth/token", data={"username": "dev", "password": PASSWORD})
        dev = {"Authorization": f"Bearer {r.json()['access_token']}"}
        create_domain(client, dev)
        blob = make_spectral_table(n_samples=60, n_channels=N_CHANNELS, seed=3)
        ds = upload_dataset(client, dev, blob).json()
        model = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new"}
        assert client.post("/api/v1/models", json=model, headers=dev).status_code == 201
        body = {"dataset_sha256": ds["sha256"], "intended_use": "monitoring", "reason": "first"}
        r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev)
        assert r.status_code == 201, r.text

        spectra = orjson.dumps({"spectra": X}, option=orjson.OPT_SERIALIZE_NUMPY)
        r = client.post(URL, content=spectra, headers=plant)
        assert r.status_code == 200, r.text
        assert r.json()["n_spectra"] == 3
        assert _log_rows(deployed) == 1
        with Session(deployed) as session:
            row = session.get(PredictionLog, uuid.UUID(r.json()["prediction_log_id"]))
            assert row is not None
            assert row.caller == "plant-dcs"

        # Refused after the transaction began (the version is read, then the body refused),
        # before it (no credential), and by role: nothing is committed for any of them.
        bad = orjson.dumps({"spectra": X[:, :-1].tolist()}, option=orjson.OPT_SERIALIZE_NUMPY)
        assert client.post(URL, content=bad, headers=plant).status_code == 422
        assert client.post(URL, content=spectra).status_code == 401
        r = client.post(URL, content=spectra, headers=dev | {"Content-Type": "text/csv"})
        assert r.status_code == 415
        assert _log_rows(deployed) == 1
