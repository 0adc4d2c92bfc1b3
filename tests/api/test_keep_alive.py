"""A 5xx never leaves a keep-alive client with a dead connection: against a real uvicorn
server (the production HTTP stack), one ``http.client`` connection makes a request that fails,
then another."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import uvicorn
from sqlalchemy.exc import OperationalError

from app.main import create_app
from bench._serving import free_port


def _bug() -> None:
    raise RuntimeError("a bug in a route")


def _database_fault() -> None:
    raise OperationalError("SELECT 1", None, psycopg.errors.AdminShutdown("terminating"))


@pytest.fixture
def server(settings_env: None) -> Iterator[int]:
    """uvicorn serving the app, plus two routes of this test's app only; yields its port."""
    app = create_app()
    app.add_api_route("/test-only/bug", _bug, include_in_schema=False)
    app.add_api_route("/test-only/database-fault", _database_fault, include_in_schema=False)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.02)
    yield port
    served.should_exit = True
    thread.join(timeout=10)


def _get(connection: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response


def test_after_a_500_the_next_request_on_the_connection_succeeds(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        failed = _get(connection, "/test-only/bug")
        assert failed.status == 500
        # The server closes the connection after a 500 and says so, so the client does not
        # send the next request into a closed socket (a reset) but opens another one.
        assert failed.getheader("Connection") == "close"
        assert _get(connection, "/healthz").status == 200
    finally:
        connection.close()


def test_after_a_503_the_same_connection_serves_the_next_request(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        unavailable = _get(connection, "/test-only/database-fault")
        assert unavailable.status == 503
        assert unavailable.getheader("Retry-After")
        assert unavailable.getheader("Connection") != "close"
        kept = connection.sock
        assert kept is not None
        assert _get(connection, "/healthz").status == 200
        assert connection.sock is kept  # kept alive: the same socket answered
    finally:
        connection.close()
