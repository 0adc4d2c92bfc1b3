"""Request bodies: none is read before its sender is known, and none is read without bounds.

:class:`RequestBodyGuard`, a pure ASGI middleware, stands between the app and the body of
every POST, PUT, PATCH or DELETE that has one. When the app first asks for the body (FastAPI
does before it resolves any dependency, so the route's own credential check comes after the
whole body was read), and before a byte of it is taken from the connection, the guard

1. refuses a declared ``Content-Length`` over the route's limit (413): a route that takes a
   file (:data:`UPLOAD_ROUTES`) may receive ``max_upload_bytes`` plus a small allowance for the
   multipart framing and form fields; a sign-in form :data:`SIGN_IN_BODY_BYTES`; any other
   route ``max_request_body_bytes``;
2. checks the credential from the headers, as the route will again: the bearer token or API
   key on the API (401 in the envelope), the session cookie on the pages (303 to the login
   page, as the pages answer); sign-in routes (:data:`SIGN_IN_ROUTES`) have no credential yet.
   The prediction routes, the hot path, take the holder it found from the request's scope
   state (:func:`app.api.deps.checked_sender`) instead of looking the credential up again;
   the others check it again with their role;
3. reserves the declared length in the process's budget of body bytes in flight,
   ``max_inflight_body_bytes`` (503 with ``Retry-After`` when it would overflow).

While the body streams in it counts the bytes (413 as soon as a body without a declared length
crosses the limit; such a body reserves its budget as it arrives) and times the reads: a body
whose next bytes take longer than ``body_read_timeout_seconds``, or that is not complete
``body_total_timeout_seconds`` after its first read, is a 408. The budget is given back when
the request ends. Every refusal closes the connection (``Connection: close``), since the rest
of the body is never read. Limits are read from the settings at each request, so they change
without rebuilding the app. Slow or oversized request heads are the server's business:
:mod:`app.server`.

Refusals are raised from ``receive`` as :class:`BodyRefused`, an ``HTTPException``, so that
FastAPI's body parsing re-raises them (rather than turning them into a 400) and the app's
handler renders them in the envelope; the guard renders those raised outside a route.

Uploaded files are read whole by the routes anyway, so parts up to :data:`IN_MEMORY_PART_BYTES`
are kept in memory while the body is parsed (:func:`keep_upload_parts_in_memory`) instead of
being spooled to a temporary file after the first MiB, which costs a write to disk and a trip
to the thread pool for every chunk of the body after that.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import anyio
import anyio.to_thread
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import CHECKED_SENDER, MISSING_CREDENTIAL, REFUSED_CREDENTIAL
from app.api.errors import envelope
from app.db.session import Transactions, request_transactions
from app.errors import WouldBlock
from app.services.auth import API_KEY_PREFIX, Caller, resolve_caller
from app.settings import get_settings

MULTIPART_ALLOWANCE = 64 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Route names (the OpenAPI operation ids; the pages' function names).
UPLOAD_ROUTES = frozenset({"register_dataset", "upload_standards", "predict", "predict_by_alias"})
SIGN_IN_ROUTES = frozenset({"issue_token", "login_submit", "logout"})
# A user name, a password, a CSRF token and a return path, with room to spare.
SIGN_IN_BODY_BYTES = 16 * 1024
RETRY_AFTER_SECONDS = 5
# Starlette's default is 1 MiB; a dataset of a few hundred spectra is a few MiB. Larger parts
# still go to a temporary file, so a request holds at most this much of a part in memory
# besides the bytes its route reads.
IN_MEMORY_PART_BYTES = 16 * 2**20


def keep_upload_parts_in_memory(max_bytes: int = IN_MEMORY_PART_BYTES) -> None:
    """Let multipart file parts up to ``max_bytes`` stay in memory (process-wide: Starlette
    reads the size from its parser class)."""
    MultiPartParser.spool_max_size = max_bytes


def too_large_detail(max_bytes: int) -> str:
    return (
        f"the upload is larger than the limit of {max_bytes / 2**20:.3g} MiB "
        f"({max_bytes} bytes); split the data or ask an administrator to raise the limit"
    )


class BodyRefused(HTTPException):
    """A request refused while (or instead of) reading its body; ``code`` is the envelope's.
    The connection is closed after the answer: the rest of the body is not read."""

    def __init__(
        self, status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            status_code=status_code,
            detail=detail,
            headers={**(headers or {}), "Connection": "close"},
        )
        self.code = code


@dataclass(frozen=True)
class BodyPolicy:
    """What a route's body may be: ``limit`` bytes on the wire (``shown_limit`` in refusals),
    sent by the holder of a ``credential``."""

    limit: int
    shown_limit: int
    what: str
    credential: Literal["bearer", "cookie"] | None


class ByteBudget:
    """The bytes of request bodies in flight in this process. Taken and given on the event
    loop only (the guard runs there), so no lock."""

    def __init__(self) -> None:
        self.in_use = 0

    def take(self, n: int, cap: int) -> bool:
        if self.in_use + n > cap:
            return False
        self.in_use += n
        return True

    def give(self, n: int) -> None:
        self.in_use -= n


class RequestBodyGuard:
    """Pure ASGI middleware: the checks of the module docstring, on every request body.

    ``api_prefix``: paths under it authenticate with ``Authorization: Bearer``; others are
    pages, with the session cookie ``session_cookie`` and the login page at ``login_path``.
    """

    def __init__(
        self, app: ASGIApp, *, api_prefix: str, session_cookie: str, login_path: str
    ) -> None:
        self.app = app
        self.api_prefix = api_prefix.rstrip("/") + "/"
        self.session_cookie = session_cookie
        self.login_path = login_path
        self.budget = ByteBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        has_body, declared = _body_headers(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        body = _Body(self, scope, receive, declared)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except BodyRefused as refused:
            # Normally the app's handler has already answered; this covers bodies read
            # outside a route (e.g. by another middleware).
            if started:
                raise
            await _answer(refused, scope, receive, send)
        finally:
            self.budget.give(body.reserved)

    def policy(self, scope: Scope) -> BodyPolicy:
        settings = get_settings()
        name = getattr(scope.get("route"), "name", None)
        if name in SIGN_IN_ROUTES:
            return BodyPolicy(SIGN_IN_BODY_BYTES, SIGN_IN_BODY_BYTES, "a sign-in form", None)
        credential: Literal["bearer", "cookie"] = (
            "bearer" if scope["path"].startswith(self.api_prefix) else "cookie"
        )
        if name in UPLOAD_ROUTES:
            upload = settings.max_upload_bytes
            return BodyPolicy(upload + MULTIPART_ALLOWANCE, upload, "an upload", credential)
        limit = settings.max_request_body_bytes
        return BodyPolicy(limit, limit, "this route's body", credential)

    async def check_sender(self, scope: Scope, credential: Literal["bearer", "cookie"]) -> None:
        """401 (API) or 303 to the login page (pages) unless the request's credential is
        valid now; the route then checks the role (and, but for predictions, the credential
        again)."""
        connection = HTTPConnection(scope)
        if credential == "bearer":
            scheme, _, secret = connection.headers.get("authorization", "").partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                raise _unauthenticated(MISSING_CREDENTIAL)
            caller = await _resolve(scope, secret)
            if caller is None:
                raise _unauthenticated(REFUSED_CREDENTIAL)
            # A route may take the holder from here rather than look it up again (predict).
            scope.setdefault("state", {})[CHECKED_SENDER] = (secret, caller)
            return
        token = connection.cookies.get(self.session_cookie)
        if not token or token.startswith(API_KEY_PREFIX) or await _resolve(scope, token) is None:
            target = quote(scope["path"] + _query(scope))
            raise BodyRefused(
                303,
                "sign_in_required",
                "sign in first",
                {"Location": f"{self.login_path}?next={target}"},
            )


class _Body:
    """One request's body as the guard hands it to the app."""

    def __init__(
        self, guard: RequestBodyGuard, scope: Scope, receive: Receive, declared: int | None
    ):
        self.guard, self.scope, self.upstream, self.declared = guard, scope, receive, declared
        self.policy: BodyPolicy | None = None
        self.received = 0
        self.reserved = 0
        self.complete = False
        self.deadline = 0.0

    async def receive(self) -> Message:
        if self.complete:  # after the body (waiting for a disconnect): not timed
            return await self.upstream()
        if self.policy is None:
            self.policy = await self._admit()
        message = await self._read()
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.policy.limit:
            raise _too_large(self.policy)
        if self.received > self.reserved:
            self._reserve(self.received - self.reserved)
        if not message.get("more_body", False):
            self.complete = True
        return message

    async def _admit(self) -> BodyPolicy:
        policy = self.guard.policy(self.scope)
        if self.declared is not None and self.declared > policy.limit:
            raise _too_large(policy)
        if policy.credential is not None:
            await self.guard.check_sender(self.scope, policy.credential)
        if self.declared is not None:
            self._reserve(self.declared)
        self.deadline = time.monotonic() + get_settings().body_total_timeout_seconds
        return policy

    def _reserve(self, n: int) -> None:
        cap = get_settings().max_inflight_body_bytes
        if not self.guard.budget.take(n, cap):
            raise BodyRefused(
                503,
                "server_busy",
                f"the server is receiving {self.guard.budget.in_use} bytes of request bodies "
                f"already and this one needs {n} more (limit {cap} bytes); retry later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.reserved += n

    async def _read(self) -> Message:
        settings = get_settings()
        wait = min(settings.body_read_timeout_seconds, self.deadline - time.monotonic())
        try:
            with anyio.fail_after(max(wait, 0.0)):
                return await self.upstream()
        except TimeoutError:
            raise BodyRefused(
                408,
                "request_timeout",
                f"the request body stalled or came too slowly ({self.received} bytes received; "
                f"each part must arrive within {settings.body_read_timeout_seconds:g} s and "
                f"the whole body within {settings.body_total_timeout_seconds:g} s)",
            ) from None


async def _transactions(scope: Scope) -> Transactions:
    """The prediction route's unit-of-work dependency, as the app resolves it (tests
    override it to work inside their transaction)."""
    overrides = getattr(scope.get("app"), "dependency_overrides", {})
    provider = overrides.get(request_transactions, request_transactions)
    result = provider()
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


async def _resolve(scope: Scope, secret: str) -> Caller | None:
    """The credential's holder: a read on the event loop where nothing waits (SQLite), else
    one thread-pool trip. A database that cannot answer is a 503."""
    transactions = await _transactions(scope)

    def lookup(on_event_loop: bool) -> Caller | None:
        with transactions.open(on_event_loop=on_event_loop) as unit:
            return resolve_caller(unit.connection, secret)

    try:
        try:
            return lookup(True)
        except WouldBlock:
            return await anyio.to_thread.run_sync(lookup, False)
    except DBAPIError as exc:
        raise BodyRefused(
            503,
            "database_unavailable",
            "the database did not answer the credential check; retry later",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc


def _unauthenticated(detail: str) -> BodyRefused:
    return BodyRefused(401, "not_authenticated", detail, {"WWW-Authenticate": "Bearer"})


def _too_large(policy: BodyPolicy) -> BodyRefused:
    if policy.what == "an upload":
        detail = too_large_detail(policy.shown_limit)
    else:
        detail = f"the body is larger than the limit for {policy.what} ({policy.shown_limit} bytes)"
    return BodyRefused(413, "payload_too_large", detail)


def _body_headers(scope: Scope) -> tuple[bool, int | None]:
    """Whether the request has a body, and its declared length (None: not declared, or not a
    number, so the body is counted as it comes)."""
    has_body, declared = False, None
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                has_body = True
            else:
                has_body = has_body or declared > 0
        elif key == b"transfer-encoding":
            has_body = True
    return has_body, declared


def _query(scope: Scope) -> str:
    query = scope.get("query_string", b"")
    return f"?{query.decode('latin-1')}" if query else ""


async def _answer(refused: BodyRefused, scope: Scope, receive: Receive, send: Send) -> None:
    headers = dict(refused.headers or {})
    response = envelope(refused.status_code, refused.code, str(refused.detail), headers=headers)
    await response(scope, receive, send)
