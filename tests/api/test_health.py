from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.db.session import dispose_engines
from app.settings import get_settings
from tests.conftest import alembic_config


def test_healthz_needs_no_credentials(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.fixture
def file_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ready.db'}"
    monkeypatch.setenv("REGISTRY_DATABASE_URL", url)
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(tmp_path / "store"))
    get_settings.cache_clear()
    dispose_engines()
    yield url
    dispose_engines()
    get_settings.cache_clear()


def test_readyz_reports_unmigrated_then_ready(file_db: str) -> None:
    from app.main import create_app
    from app.store import get_store

    get_store.cache_clear()
    with TestClient(create_app()) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["migrations"] != "ok"
        from alembic import command

        command.upgrade(alembic_config(file_db), "head")
        r = c.get("/readyz")
        assert r.status_code == 200, r.json()
        assert r.json() == {
            "ready": True,
            "checks": {"database": "ok", "migrations": "ok", "store": "ok"},
        }
    get_store.cache_clear()


def test_the_app_limits_numeric_libraries_to_the_configured_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One worker per core: BLAS/OpenMP threads of its own would only contend."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from app.main import create_app

    with threadpool_limits(limits=2):  # restores the limits on exit
        monkeypatch.setenv("REGISTRY_COMPUTE_THREADS", "1")
        get_settings.cache_clear()
        try:
            create_app()
            pools = threadpool_info()
            assert any(p["user_api"] == "blas" for p in pools), "numpy's BLAS is not visible"
            assert {p["num_threads"] for p in pools} == {1}
        finally:
            get_settings.cache_clear()
