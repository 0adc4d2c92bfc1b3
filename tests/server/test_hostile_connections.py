"""Hostile connections against a real ``ssreg serve`` (uvicorn with app/server.py's protocol) on
a free port, over raw sockets: bodies the server must not read, bodies that stall or overflow
the budget, and request heads that never end.

The server runs with short timeouts and a 1 MiB budget of body bytes in flight (the settings
below); the app-level checks in detail: tests/api/test_request_bodies.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from app.enums import Role
from bench._serving import free_port, until_stopped
from tests.factories import domain_payload
from tests.helpers import Actor

HEADER_TIMEOUT = 1.0
BODY_READ_TIMEOUT = 2.0
BUDGET = 2**20
SETTINGS = {
    "REGISTRY_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "REGISTRY_BODY_READ_TIMEOUT_SECONDS": str(BODY_READ_TIMEOUT),
    "REGISTRY_MAX_INFLIGHT_BODY_BYTES": str(BUDGET),
    "REGISTRY_MAX_HEADER_BYTES": str(16 * 1024),
}
# How long a test waits for an answer before it fails (never reached when the server behaves).
PATIENCE = 20.0
# Slack for a loaded 2-core machine between the server's deadline and the client seeing it.
SLACK = 4.0


@dataclass(frozen=True)
class Served:
    port: int
    token: str


@pytest.fixture(scope="module")
def served(
    engine: Engine, actors: dict[Role, Actor], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``ssreg serve`` on the test database, where the session's users are committed."""
    where = tmp_path_factory.mktemp("hostile")
    url = engine.url.render_as_string(hide_password=False)
    env = os.environ | SETTINGS | {"REGISTRY_DATABASE_URL": url, "REGISTRY_STORE_ROOT": str(where)}
    port = free_port()
    log = where / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        with until_stopped(
            proc, f"http://127.0.0.1:{port}", "ssreg serve", lambda: log.read_text()[-2000:]
        ):
            yield Served(port, actors[Role.developer].credential)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class Connection:
    """A raw HTTP/1.1 client connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> Response:
        """The next response (interim 1xx responses included)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before a response: {self.buffer!r}")
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """True once the server has closed the connection (EOF or reset) within PATIENCE."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


Connect = Callable[[], Connection]


@pytest.fixture
def connect(served: Served) -> Iterator[Connect]:
    opened: list[Connection] = []

    def open_one() -> Connection:
        opened.append(Connection(served.port))
        return opened[-1]

    yield open_one
    for c in opened:
        c.close()


def _auth(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.token}"}


# ---- bodies ---------------------------------------------------------------------------------


def test_an_unauthenticated_upload_is_answered_while_most_of_it_is_unsent(
    connect: Connect,
) -> None:
    c = connect()
    c.head(
        "POST",
        "/api/v1/datasets",
        {
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(60_000_000),
            "Expect": "100-continue",
        },
    )
    sent = 64 * 1024
    c.send(b"x" * sent)
    r = c.response()
    # The first answer is the refusal: the server never asked for the body (no 100 Continue).
    assert r.status == 401, r
    assert r.json() == {
        "error": "not_authenticated",
        "detail": "send 'Authorization: Bearer <token or API key>'",
    }
    assert r.headers["connection"] == "close"
    assert c.closed_by_server()
    assert sent < 60_000_000 // 100


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_sent(
    served: Served, connect: Connect
) -> None:
    c = connect()
    headers = {
        **_auth(served),
        "Content-Type": "application/json",
        "Content-Length": str(10 * 2**20),
    }
    c.head("POST", "/api/v1/domains", headers)
    r = c.response()
    assert r.status == 413
    assert r.json()["error"] == "payload_too_large"  # type: ignore[index]
    assert c.closed_by_server()


def test_a_stalled_body_is_408_and_its_connection_closed(served: Served, connect: Connect) -> None:
    body = json.dumps(domain_payload("stalled")).encode()
    c = connect()
    headers = {
        **_auth(served),
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    c.head("POST", "/api/v1/domains", headers)
    c.send(body[:10])
    r = c.response()
    assert r.status == 408
    assert r.json()["error"] == "request_timeout"  # type: ignore[index]
    assert c.closed_by_server()


def test_bodies_beyond_the_in_flight_budget_are_503_until_it_is_free(
    served: Served, connect: Connect
) -> None:
    declared = 900 * 1024  # of the 1 MiB budget
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    tail = b"\r\n--x--\r\n"
    body = head + b"x" * (declared - len(head) - len(tail)) + tail
    headers = {
        **_auth(served),
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": str(declared),
        "Expect": "100-continue",
    }
    first = connect()
    first.head("POST", "/api/v1/datasets", headers)
    # 100 Continue: the server asks for the body, so its length is reserved.
    assert first.response().status == 100
    second = connect()
    second.head("POST", "/api/v1/datasets", headers)
    refused = second.response()
    assert refused.status == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json()["error"] == "server_busy"  # type: ignore[index]
    first.send(body)
    assert first.response().status == 422  # read whole; not a dataset (no form fields)
    third = connect()
    third.head("POST", "/api/v1/datasets", headers)
    assert third.response().status == 100  # the budget was given back
    third.send(body)
    assert third.response().status == 422


# ---- request heads --------------------------------------------------------------------------


def _closed_within(c: Connection, seconds: float) -> float:
    started = time.monotonic()
    assert c.closed_by_server(), "the server kept the connection open"
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"closed after {elapsed:.1f} s"
    return elapsed


def test_a_partial_head_is_408_and_closed_within_the_timeout(connect: Connect) -> None:
    c = connect()
    c.send(b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end of the head
    _closed_within(c, HEADER_TIMEOUT + SLACK)
    assert c.buffer.startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_closed_within_the_timeout(
    connect: Connect,
) -> None:
    c = connect()
    _closed_within(c, HEADER_TIMEOUT + SLACK)
    assert c.buffer == b""


def test_a_head_dribbled_a_byte_at_a_time_is_cut_off_at_its_deadline(
    connect: Connect,
) -> None:
    c = connect()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in head:  # each byte well within the timeout, the whole head not
            c.send(bytes([byte]))
            time.sleep(HEADER_TIMEOUT / 5)
            if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                break
    _closed_within(c, SLACK)
    assert time.monotonic() - started < HEADER_TIMEOUT + 2 * SLACK


def test_a_partial_head_after_a_kept_alive_request_is_cut_off(connect: Connect) -> None:
    c = connect()
    c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert c.response().status == 200
    c.send(b"GET /healthz HTTP/1.1\r\n")
    _closed_within(c, HEADER_TIMEOUT + SLACK)


def test_a_head_over_the_size_cap_is_431_and_closed(connect: Connect) -> None:
    c = connect()
    c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    with contextlib.suppress(OSError):
        for _ in range(10):
            c.send(b"X-Big: " + b"a" * 4000 + b"\r\n")  # 40 KB, over the 16 KiB cap
    assert c.closed_by_server()
    assert c.buffer.startswith(b"HTTP/1.1 431 ")


def test_complete_heads_are_served_on_a_kept_alive_connection(connect: Connect) -> None:
    c = connect()
    for _ in range(3):
        c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert c.response().status == 200
        time.sleep(HEADER_TIMEOUT * 1.5)  # idle between requests is the keep-alive's (5 s)
    c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert c.response().status == 200
