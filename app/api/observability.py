"""Per request: its id (``X-Request-ID``), one JSON log line, and the HTTP metrics.

The id is the client's ``X-Request-ID`` when it is 1-128 characters of letters, digits and
``.``, ``_``, ``:``, ``-`` (a UUID, a trace id), else a new one (32 hex digits): it is echoed in
the response's ``X-Request-ID`` and logged with every line written while serving the request.
A client id that is refused is replaced, not an error (the line says
``request_id_refused``): a tracing header must not cost the request.

Pure ASGI (no ``BaseHTTPMiddleware``, which costs a task and a stream per request): the
prediction hot path pays a few microseconds.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from fastapi import APIRouter
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.telemetry import context, metrics
from app.telemetry.logs import REQUEST_LOG

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def _request_id(scope: Scope) -> tuple[str, bool]:
    """The request's id, and whether the client sent one that was refused."""
    for key, value in scope.get("headers", ()):
        if key == HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii"), False
            return secrets.token_hex(16), True
    return secrets.token_hex(16), False


class RouteTemplates:
    """The full path template of the route that served a request (bounded cardinality).

    The route a request reaches names its path within its router; a router included under a
    prefix (``/api/v1``) is registered here with that prefix.
    """

    def __init__(self) -> None:
        self._prefixes: dict[int, tuple[BaseRoute, str]] = {}  # by id(route), route kept

    def include(self, router: APIRouter, prefix: str) -> None:
        for route in router.routes:
            self._prefixes[id(route)] = (route, prefix)

    def label(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            entry = self._prefixes.get(id(route))
            return path if entry is None else entry[1] + path
        if route is None and scope.get("endpoint") is not None and scope.get("root_path"):
            return f"{scope['root_path']}/{{path}}"  # a mounted app (/static): its mount path
        return metrics.UNMATCHED_ROUTE


class RequestTelemetry:
    def __init__(self, app: ASGIApp, *, routes: RouteTemplates) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, refused = _request_id(scope)
        current = context.begin(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (HEADER, request_id.encode("ascii"))
        status = 500  # unless a response starts: the error handler outside answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method, route = scope["method"], self.routes.label(scope)
            metrics.observe_request(method, route, status, elapsed)
            if REQUEST_LOG.isEnabledFor(logging.INFO):
                fields: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": request_id,
                    "user": current.user,
                }
                if refused:
                    fields["request_id_refused"] = True
                REQUEST_LOG.info("request", extra=fields)
