"""Fixtures: both database backends, real migrations once per run, one rolled-back
transaction per test, a throwaway artifact store, and one user per role.

Every test that uses ``session`` or ``client`` runs twice: on SQLite and on PostgreSQL
(127.0.0.1:5432, user postgres). Outside CI an unreachable PostgreSQL skips its half; with
``CI=true`` it fails instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from app.api.deps import get_session, request_store
from app.db.session import (
    commit_unit,
    make_engine,
    request_transactions,
    roll_back_unit,
    unit_of_work,
)
from app.enums import Role
from app.main import create_app
from app.services import auth as auth_service
from app.settings import get_settings
from app.store import LocalStore
from tests.helpers import PASSWORD, Actor

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("REGISTRY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def alembic_config(url: str) -> Config:
    cfg = Config(toml_file=str(ROOT / "pyproject.toml"))
    cfg.attributes["database_url"] = url
    return cfg


def _pg_database_url(name: str) -> str:
    """Create (afresh) database ``name`` on the test server and return its URL."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI and is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    # The pid keeps concurrent pytest runs on one machine out of each other's databases.
    wid = getattr(request.config, "workerinput", {}).get("workerid", "main")
    return f"{wid}_{os.getpid()}"


def fresh_database(backend: str, tag: str, tmp_dir: Path) -> tuple[str, str | None]:
    """A migrated, empty database. Returns its URL and the PostgreSQL name to drop later."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / f'{tag}.db'}"
        pg_name = None
    else:
        pg_name = f"registry_test_{tag}"
        url = _pg_database_url(pg_name)
    command.upgrade(alembic_config(url), "head")
    return url, pg_name


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def engine(
    backend: str, worker_id_safe: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    url, pg_name = fresh_database(backend, worker_id_safe, tmp_path_factory.mktemp(backend))
    eng = make_engine(url)
    yield eng
    eng.dispose()
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture
def pg_engine(
    worker_id_safe: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """A migrated PostgreSQL database of the test's own, for real commits from many threads."""
    tag = f"{worker_id_safe}_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]}"
    url, name = fresh_database("postgresql", tag, tmp_path)
    eng = make_engine(url)
    yield eng
    eng.dispose()
    assert name is not None
    _drop_pg_database(name)


@pytest.fixture(scope="session")
def actors(engine: Engine) -> dict[Role, Actor]:
    """One committed user per role (created once per backend); plant uses its API key."""
    out: dict[Role, Actor] = {}
    with unit_of_work(bind=engine) as session:
        for role in Role:
            password = None if role is Role.plant else PASSWORD
            created = auth_service.create_user(
                session,
                username=f"test-{role.value}",
                full_name=f"Test {role.value}",
                role=role,
                password=password,
                actor="pytest",
                reason="test fixture",
            )
            if created.api_key is not None:
                out[role] = Actor(created.user, created.api_key)
            else:
                issued = auth_service.login(
                    session, username=f"test-{role.value}", password=PASSWORD, client_host=None
                )
                assert issued is not None
                out[role] = Actor(created.user, issued.token)
    return out


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A fresh view of the database per test: everything, commits included, is rolled back."""
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as sess:
            yield sess
        outer.rollback()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, store: LocalStore) -> Iterator[None]:
    """Point the settings at the test store; tests may monkeypatch more REGISTRY_* first."""
    monkeypatch.setenv("REGISTRY_STORE_ROOT", str(store.root))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class _TestTransactions:
    """:class:`app.db.session.Transactions` inside the test's transaction (a savepoint,
    released on success, rolled back on an exception); nothing waits, so both ways work."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @contextlib.contextmanager
    def open(self, *, on_event_loop: bool) -> Iterator[_TestUnit]:
        connection = self.session.connection()
        with connection.begin_nested():
            yield _TestUnit(connection)


class _TestUnit:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def write(self) -> None:
        pass


@pytest.fixture
def client(
    session: Session, store: LocalStore, settings_env: None, actors: dict[Role, Actor]
) -> Iterator[TestClient]:
    def _test_session() -> Iterator[Session]:  # same commit/rollback contract as get_session
        try:
            yield session
            commit_unit(session, close=False)  # RELEASE SAVEPOINT; the outer transaction stays
        except BaseException:
            roll_back_unit(session, close=False)
            raise

    app = create_app()
    app.dependency_overrides[get_session] = _test_session
    app.dependency_overrides[request_transactions] = lambda: _TestTransactions(session)
    app.dependency_overrides[request_store] = lambda: store
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
