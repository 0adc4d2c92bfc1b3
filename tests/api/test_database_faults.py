"""A database fault is a 503 in the envelope (a page for a page) with ``Retry-After``, and the
service recovers by itself: no restart, no operator. The app here runs on its own engine and
the real session dependency (no test transaction), against a database that misbehaves."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.api.deps import SessionDep
from app.api.errors import RETRY_AFTER_SECONDS
from app.db import session as db_session
from app.db.faults import is_database_fault
from app.db.session import dispose_engines, unit_of_work
from app.enums import Role
from app.main import create_app
from app.services import auth as auth_service
from app.settings import get_settings
from app.store import get_store
from bench._serving import free_port
from tests.conftest import PG_ADMIN_URL, fresh_database
from tests.db_proxy import TcpForwarder
from tests.helpers import PASSWORD

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/users/me"
AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AppFactory]:
    """``app_on(url)``: a client of a fresh app whose engine is the service's own for ``url``."""
    clients: list[TestClient] = []

    def build(url: str, routes: Callable[[FastAPI], None] | None = None) -> TestClient:
        monkeypatch.setenv("REGISTRY_DATABASE_URL", url)
        monkeypatch.setenv("REGISTRY_STORE_ROOT", str(tmp_path / "store"))
        dispose_engines()
        get_settings.cache_clear()
        get_store.cache_clear()
        app = create_app()
        if routes is not None:
            routes(app)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
    dispose_engines()
    get_settings.cache_clear()
    get_store.cache_clear()


def _with_user(url: str) -> None:
    engine = db_session.make_engine(url)
    try:
        with unit_of_work(bind=engine) as session:
            auth_service.create_user(
                session,
                username="fault-qa",
                full_name="Fault QA",
                role=Role.qa,
                password=PASSWORD,
                actor="pytest",
                reason="fault tests",
            )
    finally:
        engine.dispose()


def _login(client: TestClient) -> int:
    response = client.post(TOKEN, data={"username": "fault-qa", "password": PASSWORD})
    return response.status_code


def assert_unavailable(response: object) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {
        "error": "database_unavailable",
        "detail": response.json()["detail"],
    }
    assert "retry after" in response.json()["detail"]


# ----------------------------------------------------------------------------- classification


def _sqlite_error(make: Callable[[sqlite3.Connection], object]) -> sqlite3.Error:
    connection = sqlite3.connect(":memory:")
    try:
        make(connection)
    except sqlite3.Error as exc:
        return exc
    finally:
        connection.close()
    raise AssertionError("no error raised")


def test_faults_are_told_from_bugs_and_bad_input() -> None:
    assert is_database_fault(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_database_fault(psycopg.errors.CannotConnectNow("the database system is starting"))
    assert is_database_fault(psycopg.errors.SerializationFailure("could not serialize"))
    assert is_database_fault(psycopg.OperationalError("connection refused"))  # from libpq
    assert is_database_fault(OperationalError("SELECT 1", None, psycopg.errors.AdminShutdown()))
    assert not is_database_fault(psycopg.errors.UniqueViolation("duplicate key"))
    assert not is_database_fault(psycopg.errors.ProgramLimitExceeded("index row too large"))
    assert not is_database_fault(psycopg.errors.NumericValueOutOfRange("integer out of range"))
    assert not is_database_fault(
        IntegrityError("INSERT", None, psycopg.errors.UniqueViolation("duplicate key"))
    )
    syntax = _sqlite_error(lambda c: c.execute("SELEC 1"))
    assert isinstance(syntax, sqlite3.OperationalError)  # an OperationalError, and a bug
    assert not is_database_fault(syntax)
    assert not is_database_fault(_sqlite_error(lambda c: c.execute("SELECT * FROM nowhere")))
    assert not is_database_fault(ValueError("not a database error"))


# ----------------------------------------------------------------------------------- SQLite


def test_a_locked_sqlite_database_is_a_503_then_serves_again(
    app_on: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = fresh_database("sqlite", "locked", tmp_path)
    _with_user(url)
    monkeypatch.setattr(db_session, "BUSY_TIMEOUT_MS", 50)  # wait 50 ms for the lock, not 30 s
    client = app_on(url)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        assert_unavailable(client.post(TOKEN, data={"username": "fault-qa", "password": "x"}))
        holder.execute("ROLLBACK")
        assert _login(client) == 200  # nothing to restart
    finally:
        holder.close()


def test_a_sqlite_file_that_is_not_a_database_is_a_503(app_on: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not an SQLite database file " * 200)
    client = app_on(f"sqlite:///{path}")
    assert_unavailable(client.get(ME, headers={"Authorization": "Bearer some-token"}))
    assert_unavailable(client.post(TOKEN, data={"username": "fault-qa", "password": "x"}))


def test_a_page_answers_a_database_fault_with_a_503_page(
    app_on: AppFactory, tmp_path: Path
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"\x00garbage" * 500)
    client = app_on(f"sqlite:///{path}")
    client.cookies.set("ssr_session", "a-session-token")
    response = client.get("/home")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["content-type"].startswith("text/html")
    assert "The database is unavailable" in response.text
    assert "retry after" in response.text


# ------------------------------------------------------------------------------- PostgreSQL


def _app_backends(database: str) -> list[int]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [pid for (pid,) in rows]


def _terminate(pids: list[int]) -> None:
    """pg_terminate_backend from an administrator's connection; returns once they are gone."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, f"backends {pids} still alive"
            time.sleep(0.05)


def test_terminated_backends_between_requests_are_replaced_unseen(
    app_on: AppFactory, pg_engine: Engine
) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    _with_user(url)
    client = app_on(url)
    assert _login(client) == 200  # the pool now holds a connection to a live backend
    database = pg_engine.url.database
    assert database is not None
    pids = _app_backends(database)
    assert pids
    _terminate(pids)
    # The pooled connection's backend is gone; the engine pings it at checkout and reconnects.
    assert _login(client) == 200
    assert set(_app_backends(database)).isdisjoint(pids)


def test_a_backend_terminated_mid_request_is_a_503_then_serves_again(
    app_on: AppFactory, pg_engine: Engine
) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    _with_user(url)

    def terminated_mid_request(session: SessionDep) -> dict[str, str]:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate([pid])
        session.execute(text("SELECT 1"))
        return {"unexpected": "the terminated backend answered"}

    def routes(app: FastAPI) -> None:  # this test's app only, never the service's
        app.add_api_route("/test-only/terminated", terminated_mid_request, methods=["POST"])

    client = app_on(url, routes)
    assert_unavailable(client.post("/test-only/terminated"))
    assert _login(client) == 200  # the invalidated connection was dropped, nothing to do


def test_a_database_refusing_connections_is_a_503_until_it_is_back(
    app_on: AppFactory, pg_engine: Engine
) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    _with_user(url)
    port = free_port()  # nothing listens here yet: connections are refused
    via_port = pg_engine.url.set(host="127.0.0.1", port=port)
    client = app_on(via_port.render_as_string(hide_password=False))
    assert_unavailable(client.post(TOKEN, data={"username": "fault-qa", "password": PASSWORD}))
    assert_unavailable(client.get(ME, headers={"Authorization": "Bearer some-token"}))
    client.cookies.set("ssr_session", "a-session-token")
    page = client.get("/home")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    client.cookies.clear()
    target = (pg_engine.url.host or "127.0.0.1", pg_engine.url.port or 5432)
    with TcpForwarder(port, target):  # the database is back on that address
        assert _login(client) == 200
        dispose_engines()  # before the forwarder goes
