"""The prediction route on the deployed transaction path (no test overrides): real commits,
and the choice between the event loop and the thread pool.

The other API tests run each request inside a test transaction that is rolled back; the
prediction route opens its own Core transactions through ``request_transactions``, which they
replace. Here the app runs as deployed, on a database of its own, so the COMMIT of the log
row (and the rollback of a refused call) is the engine's own.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.api.routers import predict as predict_router
from app.db.models import PredictionLog
from app.db.session import (
    EngineTransactions,
    dispose_engines,
    make_engine,
    make_event_loop_engine,
)
from app.enums import Role
from app.errors import WouldBlock
from app.main import create_app
from app.services import auth as auth_service
from app.services import scopes
from app.services.predict import serving_models
from app.settings import get_settings
from app.store import get_store
from tests.conftest import _drop_pg_database, fresh_database
from tests.factories import (
    DOMAIN,
    create_domain,
    make_spectral_table,
    simulate_spectra,
    upload_dataset,
)
from tests.helpers import PASSWORD

CACHES = (get_settings, get_store)
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
    dispose_engines()
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        dispose_engines()
        for cached in CACHES:
            cached.cache_clear()
        if pg_name:
            _drop_pg_database(pg_name)


def _log_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(PredictionLog)) or 0)


@dataclass
class Plant:
    """The deployed app with titer_pls v1, a developer and a plant service account."""

    client: TestClient
    engine: Engine
    backend: str
    plant: dict[str, str]
    dev: dict[str, str]
    X: np.ndarray

    def predict(self, X: np.ndarray | None = None, **headers: str) -> Any:
        spectra = self.X if X is None else X
        body = orjson.dumps({"spectra": spectra}, option=orjson.OPT_SERIALIZE_NUMPY)
        return self.client.post(URL, content=body, headers=self.plant | headers)


@pytest.fixture
def plant(deployed: Engine, backend: str) -> Iterator[Plant]:
    serving_models.clear()  # each test starts with no model loaded in this process
    with Session(deployed, expire_on_commit=False) as session, session.begin():
        created = {
            role: auth_service.create_user(
                session,
                username=username,
                full_name=username,
                role=role,
                password=None if role is Role.plant else PASSWORD,
                actor="pytest",
                reason="test",
            )
            for role, username in ((Role.developer, "dev"), (Role.plant, "plant-dcs"))
        }
    plant_key = created[Role.plant].api_key
    assert plant_key is not None
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
        with Session(deployed) as session, session.begin():
            scopes.grant_scope(
                session, "plant-dcs", domains=[DOMAIN], models=None, actor="pytest", reason="t"
            )
        yield Plant(
            client,
            deployed,
            backend,
            {"Authorization": f"Bearer {plant_key}", "Content-Type": "application/json"},
            dev,
            X,
        )
    serving_models.clear()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each thread-pool trip the prediction route takes: "thread", or "credential" for
    the body guard's credential check before the body (app/api/limits.py)."""
    calls: list[str] = []
    real = predict_router.anyio.to_thread.run_sync

    async def recording(func: Callable[..., Any], *args: Any) -> Any:
        calls.append("credential" if getattr(func, "__name__", "") == "lookup" else "thread")
        return await real(func, *args)

    monkeypatch.setattr(predict_router.anyio.to_thread, "run_sync", recording)
    return calls


def test_the_deployed_route_commits_one_log_row_and_refusals_none(plant: Plant) -> None:
    r = plant.predict()
    assert r.status_code == 200, r.text
    assert r.json()["n_spectra"] == 3
    assert _log_rows(plant.engine) == 1
    with Session(plant.engine) as session:
        row = session.get(PredictionLog, uuid.UUID(r.json()["prediction_log_id"]))
        assert row is not None
        assert row.caller == "plant-dcs"
    r = plant.predict()  # the model is loaded now: on SQLite this one runs on the event loop
    assert r.status_code == 200, r.text
    assert _log_rows(plant.engine) == 2

    # Refused after the transaction began (the version is read, then the body refused),
    # before it (no credential), and by role: nothing is committed for any of them.
    assert plant.predict(plant.X[:, :-1].copy()).status_code == 422
    spectra = orjson.dumps({"spectra": plant.X}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert plant.client.post(URL, content=spectra).status_code == 401
    r = plant.client.post(URL, content=spectra, headers=plant.dev | {"Content-Type": "text/csv"})
    assert r.status_code == 415
    assert _log_rows(plant.engine) == 2


def test_small_calls_on_sqlite_run_on_the_event_loop_once_the_model_is_loaded(
    plant: Plant, trips: list[str]
) -> None:
    assert plant.predict().status_code == 200  # loads the model: in the thread pool
    # PostgreSQL: the credential is checked before the body in a trip of its own.
    before_body = [] if plant.backend == "sqlite" else ["credential"]
    assert trips == [*before_body, "thread"]
    for _ in range(3):
        assert plant.predict().status_code == 200
    large = np.repeat(plant.X, 100, axis=0)  # 300 spectra: over ON_LOOP_MAX_BODY as JSON
    assert plant.predict(large).status_code == 200
    if plant.backend == "sqlite":
        assert trips == ["thread", "thread"]  # the three small ones ran on the loop
    else:
        assert trips == ["credential", "thread"] * 5  # PostgreSQL: every call in the pool
    assert _log_rows(plant.engine) == 5


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the event-loop path's lock
def test_a_held_write_lock_sends_the_call_to_the_thread_pool_which_waits(
    plant: Plant, trips: list[str]
) -> None:
    assert plant.predict().status_code == 200  # the model is loaded
    path = plant.engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    released = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    released.start()
    try:
        t0 = time.perf_counter()
        r = plant.predict()
        waited = time.perf_counter() - t0
    finally:
        released.join()
        holder.close()
    assert r.status_code == 200, r.text
    assert waited >= 0.4  # it waited for the lock, in a worker thread, rather than fail
    assert trips == ["thread", "thread"]
    assert _log_rows(plant.engine) == 2


@pytest.fixture
def lock_db(tmp_path: Path) -> Iterator[tuple[EngineTransactions, sqlite3.Connection]]:
    """Units of work on a small SQLite file, and another connection to hold its write lock."""
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    units = EngineTransactions(make_engine(url), make_event_loop_engine(url))
    with units.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    holder = sqlite3.connect(tmp_path / "lock.db", isolation_level=None, check_same_thread=False)
    yield units, holder
    holder.close()
    for engine in (units.engine, units.loop_engine):
        assert engine is not None
        engine.dispose()


def test_on_the_event_loop_a_unit_reads_but_never_waits_to_write(
    lock_db: tuple[EngineTransactions, sqlite3.Connection],
) -> None:
    units, holder = lock_db
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    t0 = time.perf_counter()
    with pytest.raises(WouldBlock), units.open(on_event_loop=True) as unit:  # noqa: PT012
        assert unit.connection.exec_driver_sql("SELECT x FROM t").scalar() == 1  # reads: fine
        unit.write()  # the write lock: WouldBlock at once, not a wait
    assert time.perf_counter() - t0 < 0.1
    holder.execute("COMMIT")
    with units.open(on_event_loop=True) as unit:
        unit.write()
        unit.connection.exec_driver_sql("INSERT INTO t VALUES (2)")
    with units.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    with pytest.raises(WouldBlock), EngineTransactions(units.engine, None).open(on_event_loop=True):
        pass


def test_a_unit_takes_the_write_lock_only_to_write(
    lock_db: tuple[EngineTransactions, sqlite3.Connection],
) -> None:
    """In a worker thread the reads (and whatever is computed after them) go ahead while
    another connection holds the write lock; only write() waits for it."""
    units, holder = lock_db
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    released.start()
    t0 = time.perf_counter()
    try:
        with units.open(on_event_loop=False) as unit:
            assert unit.connection.exec_driver_sql("SELECT x FROM t").scalar() == 1
            read_at = time.perf_counter() - t0
            unit.write()
            unit.connection.exec_driver_sql("INSERT INTO t VALUES (3)")
        written_at = time.perf_counter() - t0
    finally:
        released.join()
    assert read_at < 0.2  # did not wait for the lock to read
    assert written_at >= 0.35  # waited for it to write
    with units.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT max(x) FROM t").scalar() == 3


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's single write lock
def test_reading_routes_do_not_queue_behind_a_writer(plant: Plant) -> None:
    """GET sessions begin DEFERRED on SQLite: a snapshot, no write lock (the deployed app)."""
    path = plant.engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer, mid-transaction
    try:
        t0 = time.perf_counter()
        r = plant.client.get("/api/v1/models/titer_pls/versions/1", headers=plant.dev)
        elapsed = time.perf_counter() - t0
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert r.status_code == 200, r.text
    assert elapsed < 2.0  # the busy timeout is 30 s: it did not wait for the lock
