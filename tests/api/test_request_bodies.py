"""The request-body guard (app/api/limits.py) in the app, driven at the ASGI level so that each
test sees exactly how many times the app asked for the body: no byte is read before the sender
is known, and none beyond the limits of size, bytes in flight and time.

The same refusals over real connections: tests/server/test_hostile_connections.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.limits import SIGN_IN_BODY_BYTES, SIGN_IN_ROUTES, UPLOAD_ROUTES
from app.enums import Role
from app.settings import get_settings
from tests.factories import domain_payload
from tests.helpers import Actor, counted_statements

MiB = 2**20
MULTIPART = {"Content-Type": "multipart/form-data; boundary=guard"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    reads: int  # times the app asked for a part of the body

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sender:
    """The client side of one request: its body parts, then optionally a stall."""

    chunks: Sequence[bytes]
    stall_after: bool = False  # after the parts, send nothing more (the body is incomplete)
    gate: asyncio.Event | None = None  # wait for it before the second part
    delay: float = 0.0  # before each part
    reads: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.reads > len(self.chunks):
            if self.stall_after:
                await asyncio.Event().wait()  # never: the client stopped sending
            return {"type": "http.disconnect"}
        if self.reads == 2 and self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        more = self.reads < len(self.chunks) or self.stall_after
        return {"type": "http.request", "body": self.chunks[self.reads - 1], "more_body": more}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def answer(self) -> Answer:
        start = self.sent[0]
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return Answer(start["status"], headers, body, self.reads)


def _scope(
    method: str, path: str, headers: dict[str, str], *, declared: int | None
) -> dict[str, Any]:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared is None:
        raw.append((b"transfer-encoding", b"chunked"))
    else:
        raw.append((b"content-length", str(declared).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


async def _call(app: Any, scope: dict[str, Any], sender: Sender) -> Answer:
    async with asyncio.timeout(60):  # a guard that never answers fails the test
        await app(scope, sender.receive, sender.send)
    return sender.answer()


def run(
    client: TestClient,
    path: str,
    chunks: Sequence[bytes],
    *,
    headers: dict[str, str] | None = None,
    declared: int | None = -1,
    stall_after: bool = False,
    method: str = "POST",
) -> Answer:
    """One request straight into the app; ``declared=-1``: the parts' total length, None:
    chunked (no Content-Length)."""
    length = sum(len(c) for c in chunks) if declared == -1 else declared
    scope = _scope(method, path, headers or {}, declared=length)
    sender = Sender(chunks, stall_after=stall_after)
    return asyncio.run(_call(client.app, scope, sender))


@pytest.fixture
def dev(actors: dict[Role, Actor]) -> dict[str, str]:
    return {**actors[Role.developer].headers, "Content-Type": "application/json"}


@pytest.fixture
def tuned(monkeypatch: pytest.MonkeyPatch, settings_env: None) -> Iterator[None]:
    """Small limits and short timeouts for these tests."""
    for key, value in {
        "REGISTRY_MAX_REQUEST_BODY_BYTES": str(256 * 1024),
        "REGISTRY_MAX_INFLIGHT_BODY_BYTES": str(MiB),
        "REGISTRY_BODY_READ_TIMEOUT_SECONDS": "0.3",
        "REGISTRY_BODY_TOTAL_TIMEOUT_SECONDS": "60",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _domain_body() -> bytes:
    return json.dumps(domain_payload("guard-probe")).encode()


# ---- the sender first -----------------------------------------------------------------------


def test_an_upload_without_credentials_is_401_before_its_body_is_read(
    client: TestClient, tuned: None
) -> None:
    part = b"x" * 65536
    out = run(client, "/api/v1/datasets", [part] * 900, headers=MULTIPART, declared=60_000_000)
    assert (out.status, out.reads) == (401, 0)
    assert out.json() == {
        "error": "not_authenticated",
        "detail": "send 'Authorization: Bearer <token or API key>'",
    }
    assert out.headers["connection"] == "close", out.headers
    assert out.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("credential", ["Bearer not-a-token", "Bearer ssr_not-a-key", "Basic eA=="])
def test_a_body_with_a_wrong_credential_is_401_before_it_is_read(
    client: TestClient, tuned: None, credential: str
) -> None:
    out = run(client, "/api/v1/domains", [_domain_body()], headers={"Authorization": credential})
    assert (out.status, out.reads) == (401, 0)
    assert out.json()["error"] == "not_authenticated"


def test_a_chunked_body_without_credentials_is_401_before_it_is_read(
    client: TestClient, tuned: None
) -> None:
    out = run(client, "/api/v1/models/m/versions/1/predict", [b"{}"] * 10, declared=None)
    assert (out.status, out.reads) == (401, 0)


def test_a_revoked_credential_is_refused_before_the_body_is_read(
    client: TestClient, tuned: None, actors: dict[Role, Actor]
) -> None:
    qa = actors[Role.qa].headers
    admin = actors[Role.admin].headers
    # A fresh plant account whose key the administrator then revokes.
    created = client.post(
        "/api/v1/users",
        json={"username": "guard-plant", "full_name": "p", "role": "plant", "reason": "t"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    revoked = client.post(
        "/api/v1/users/guard-plant/api-key/revoke", json={"reason": "t"}, headers=admin
    )
    assert revoked.status_code == 200, revoked.text
    out = run(
        client, "/api/v1/domains", [_domain_body()], headers={"Authorization": f"Bearer {key}"}
    )
    assert (out.status, out.reads) == (401, 0)
    # A valid credential is let through to the route, which checks the role itself (403).
    out = run(client, "/api/v1/domains", [_domain_body()], headers=qa)
    assert out.status == 403
    assert out.reads >= 1


def test_a_valid_credential_lets_the_body_through(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    out = run(client, "/api/v1/domains", [_domain_body()[:10], _domain_body()[10:]], headers=dev)
    assert out.status == 201, out.body
    assert out.reads == 2


def test_a_page_form_without_a_session_is_sent_to_the_login_page_unread(
    client: TestClient, tuned: None, actors: dict[Role, Actor]
) -> None:
    form = b"current_password=a&new_password=b&confirm_password=b&csrf_token=c"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    out = run(client, "/account/password", [form], headers=headers)
    assert (out.status, out.reads) == (303, 0)
    assert out.headers["location"] == "/login?next=/account/password"
    # An API key is not a session, whatever cookie it comes in.
    key = actors[Role.plant].credential
    with_key = {**headers, "Cookie": f"ssr_session={key}"}
    out = run(client, "/account/password", [form], headers=with_key)
    assert (out.status, out.reads) == (303, 0)


def test_sign_in_forms_are_read_without_credentials_within_their_cap(
    client: TestClient, tuned: None
) -> None:
    form = b"username=nobody&password=wrong-password-here"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    out = run(client, "/api/v1/auth/token", [form], headers=headers)
    assert out.status == 401  # the route's own answer, after reading the form
    assert out.json()["error"] == "invalid_credentials"
    assert out.reads >= 1
    big = b"username=" + b"a" * SIGN_IN_BODY_BYTES
    for path in ("/api/v1/auth/token", "/login"):
        out = run(client, path, [big], headers=headers)
        assert (out.status, out.reads) == (413, 0), path
        assert out.json()["error"] == "payload_too_large"


# ---- size -----------------------------------------------------------------------------------


def test_a_declared_length_over_the_route_limit_is_413_unread(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    out = run(client, "/api/v1/domains", [b"{}"], headers=dev, declared=256 * 1024 + 1)
    assert (out.status, out.reads) == (413, 0)
    assert out.json() == {
        "error": "payload_too_large",
        "detail": "the body is larger than the limit for this route's body (262144 bytes)",
    }
    assert out.headers["connection"] == "close"


def test_a_chunked_body_is_413_once_it_crosses_the_limit(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    out = run(client, "/api/v1/domains", [b" " * 65536] * 10, headers=dev, declared=None)
    assert out.status == 413
    assert out.reads == 5  # the fifth part crossed 256 KiB; the rest was never read


def test_upload_routes_take_the_upload_limit_and_others_the_body_limit(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    size = 512 * 1024  # over max_request_body_bytes, under max_upload_bytes
    out = run(client, "/api/v1/models/x/versions/1/predict", [b" " * size], headers=dev)
    assert out.status == 404  # read and sent on to the route: no such model
    assert out.reads == 1
    out = run(client, "/api/v1/models", [b" " * size], headers=dev)
    assert (out.status, out.reads) == (413, 0)


def test_the_guard_names_routes_that_exist(client: TestClient) -> None:
    names = {getattr(route, "name", None) for route in _routes(client.app)}
    assert names >= UPLOAD_ROUTES
    assert names >= SIGN_IN_ROUTES


def test_every_route_that_takes_a_file_or_arrow_body_has_the_upload_limit(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    takes_files = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/vnd.apache.arrow.stream" in content or "multipart/form-data" in content:
                takes_files.add(operation["operationId"])
    assert takes_files == UPLOAD_ROUTES


def _routes(app: Any) -> list[Any]:
    from fastapi.routing import iter_route_contexts

    return list(iter_route_contexts(app.routes))


# ---- bytes in flight ------------------------------------------------------------------------


def test_bodies_beyond_the_in_flight_budget_are_503_with_retry_after(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    declared = 700 * 1024  # of the 1 MiB budget
    head = b'--guard\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    tail = b"\r\n--guard--\r\n"
    padding = b"x" * (declared - len(head) - len(tail))
    headers = {**dev, **MULTIPART}

    def upload() -> dict[str, Any]:
        return _scope("POST", "/api/v1/datasets", headers, declared=declared)

    async def scenario() -> tuple[Answer, Answer, Answer]:
        gate = asyncio.Event()
        first = Sender([head + padding[:1024], padding[1024:] + tail], gate=gate)
        first_task = asyncio.create_task(client.app(upload(), first.receive, first.send))
        async with asyncio.timeout(30):
            while first.reads < 2:  # admitted: its declared length is reserved
                await asyncio.sleep(0.01)
        second = Sender([head + padding + tail])
        await _call(client.app, upload(), second)
        gate.set()
        async with asyncio.timeout(60):
            await first_task
        third = Sender([head + padding + tail])
        await _call(client.app, upload(), third)
        return first.answer(), second.answer(), third.answer()

    first, second, third = asyncio.run(scenario())
    assert (second.status, second.reads) == (503, 0)
    assert second.json()["error"] == "server_busy"
    assert second.headers["retry-after"] == "5"
    assert second.headers["connection"] == "close"
    # The first was read whole and answered by the route (not a dataset: 422); its bytes
    # were given back, so the third fits again.
    assert first.status == 422
    assert first.reads == 2
    assert third.status == 422
    assert third.reads == 1


# ---- time -----------------------------------------------------------------------------------


def test_a_body_that_stalls_is_408_and_the_connection_closed(
    client: TestClient, tuned: None, dev: dict[str, str]
) -> None:
    body = _domain_body()
    out = run(
        client, "/api/v1/domains", [body[:10]], headers=dev, declared=len(body), stall_after=True
    )
    assert out.status == 408
    assert out.json()["error"] == "request_timeout"
    assert "10 bytes received" in out.json()["detail"]
    assert out.headers["connection"] == "close"


def test_a_body_that_comes_too_slowly_is_408(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tuned: None, dev: dict[str, str]
) -> None:
    monkeypatch.setenv("REGISTRY_BODY_TOTAL_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    body = _domain_body()
    parts = [body[i : i + 1] for i in range(len(body))]
    scope = _scope("POST", "/api/v1/domains", dev, declared=len(body))
    sender = Sender(parts, delay=0.05)  # each part in time, the whole too late
    out = asyncio.run(_call(client.app, scope, sender))
    assert out.status == 408
    assert out.reads < len(parts)


def test_requests_without_a_body_are_not_held(client: TestClient, tuned: None) -> None:
    r = client.post("/api/v1/domains")  # no body: the route answers itself
    assert r.status_code == 401
    r = client.get("/healthz")
    assert r.status_code == 200


# ---- the prediction path looks the credential up once ---------------------------------------


def test_a_prediction_looks_its_credential_up_once_before_the_body(
    client: TestClient, session: Session, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers
    body = json.dumps({"spectra": trained["X"][:2].tolist()}).encode()
    headers = {**plant, "Content-Type": "application/json"}
    with counted_statements(session) as statements:
        out = run(client, "/api/v1/models/titer_pls/versions/1/predict", [body], headers=headers)
    assert out.status == 200, out.body
    lookups = [s for s in statements if "api_key_hash" in s]
    assert len(lookups) == 1  # the guard's, before the body; the route takes its holder


def test_the_guards_holder_serves_only_the_credential_it_checked() -> None:
    from fastapi.security import HTTPAuthorizationCredentials
    from starlette.requests import Request

    from app.api.deps import CHECKED_SENDER, checked_sender
    from app.services.auth import Caller

    caller = Caller(uuid.uuid4(), "p", Role.plant)
    request = Request({"type": "http", "state": {CHECKED_SENDER: ("secret-a", caller)}})
    same = HTTPAuthorizationCredentials(scheme="Bearer", credentials="secret-a")
    other = HTTPAuthorizationCredentials(scheme="Bearer", credentials="secret-b")
    assert checked_sender(request, same) is caller
    assert checked_sender(request, other) is None
    assert checked_sender(request, None) is None
    assert checked_sender(Request({"type": "http", "state": {}}), same) is None


def test_every_operation_with_a_body_documents_the_guards_refusals(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert {"408", "413", "503"} <= set(operation["responses"]), (method, path)
