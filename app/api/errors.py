"""One error envelope for every failure: ``{"error": "<code>", "detail": "<human text>"}``.

A database fault (:func:`app.db.faults.is_database_fault`) is a 503 with ``Retry-After``;
nothing needs restarting afterwards (the engine replaces dead connections). Any other
unexpected exception is a 500 with ``Connection: close``: Starlette re-raises it after the
response so that the server logs it, and uvicorn then closes the connection, so the response
says so and a keep-alive client opens a new one instead of meeting a reset.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Protocol

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.headers import add_security_headers
from app.db.faults import is_database_fault
from app.errors import DomainError, IntegrityFailure, TooManyAttempts
from app.telemetry import context, metrics

log = logging.getLogger("app")

RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = (
    "the database is unavailable or the connection to it was lost, so the request could not "
    f"be completed; retry after {RETRY_AFTER_SECONDS} s"
)
INTERNAL_ERROR = "internal error; the request was rolled back"


class PageError(Protocol):
    """How the pages answer an error as a page: the envelope's ``code`` and ``detail`` under
    a ``heading`` (``problems``: the detail's items, one a line), or None when the request
    is not for a page (then the envelope)."""

    def __call__(
        self,
        request: Request,
        status: int,
        heading: str,
        detail: str,
        headers: Mapping[str, str],
        *,
        code: str,
        problems: Sequence[str] = (),
    ) -> Response | None: ...


class ErrorBody(BaseModel):
    error: str
    detail: str


def envelope(
    status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status_code, content={"error": code, "detail": detail}, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_attempts",
}


def _validation_problems(exc: RequestValidationError) -> list[str]:
    """One ``"<field>: <message>"`` a refused value (the first ten)."""
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc or 'request'}: {message}")
    return parts or ["invalid request"]


INVALID_PAGE_REQUEST = (
    "The page was asked for with values it cannot use, so nothing was shown or changed:"
)


def _database_unavailable(request: Request, exc: BaseException, page: PageError | None) -> Response:
    # One line, not a traceback per request while the database is away; the engine hides the
    # statement's parameters.
    log.warning("database fault, answered 503: %s: %s", type(exc).__name__, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    heading = "The database is unavailable"
    shown = (
        page(request, 503, heading, DATABASE_UNAVAILABLE, headers, code="database_unavailable")
        if page
        else None
    )
    return shown or envelope(503, "database_unavailable", DATABASE_UNAVAILABLE, headers)


def _internal_error(request: Request, exc: BaseException, page: PageError | None) -> Response:
    log.exception("unhandled error", exc_info=exc)
    headers = {"Connection": "close"}
    shown = (
        page(request, 500, "Internal error", INTERNAL_ERROR, headers, code="internal_error")
        if page
        else None
    )
    return shown or envelope(500, "internal_error", INTERNAL_ERROR, headers)


def _invalid(request: Request, code: str, problems: list[str], page: PageError | None) -> Response:
    """A 422: on a page, a page listing what was refused; elsewhere the envelope."""
    detail = "; ".join(problems)
    heading = "These values cannot be used"
    shown = (
        page(request, 422, heading, INVALID_PAGE_REQUEST, {}, code=code, problems=problems)
        if page
        else None
    )
    return shown or envelope(422, code, detail)


def install_error_handlers(app: FastAPI, *, page: PageError | None = None) -> None:
    """The envelope for every failure; ``page`` renders the 5xx and the 422s of a page
    request as a page."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if exc.status_code == 422:  # a page's refused query (app.api.query), say
            return _invalid(request, exc.code, [exc.detail], page)
        if isinstance(exc, IntegrityFailure):
            # A record not as audited is an incident whatever its status (a 409 on the
            # serving path): logged and counted, so monitoring sees it beside the 5xx.
            log.error("integrity failure, answered %d: %s", exc.status_code, exc.detail)
            metrics.count_integrity_failure(exc.status_code)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        if isinstance(exc, TooManyAttempts):
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return envelope(exc.status_code, exc.code, exc.detail, headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _invalid(request, "invalid_input", _validation_problems(exc), page)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # An exception may name its own code (app.api.limits.BodyRefused does).
        code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
        return envelope(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    async def _database(request: Request, exc: Exception) -> Response:
        if is_database_fault(exc):
            return _database_unavailable(request, exc, page)
        return _internal_error(request, exc, page)

    # SQLAlchemy's errors, and the drivers' own where code reaches the driver directly (the
    # SQLite BEGIN): handled here, so the response is the whole story and the connection
    # stays open.
    for database_error in (SQLAlchemyError, sqlite3.Error, psycopg.Error):
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Reached from outside the routes too (a middleware), where a database fault can
        # also surface. Starlette re-raises after this response and uvicorn closes the
        # connection: say so.
        if is_database_fault(exc):
            response = _database_unavailable(request, exc, page)
        else:
            response = _internal_error(request, exc, page)
        response.headers["Connection"] = "close"
        # Sent from outside our middleware, which adds these to every other response.
        add_security_headers(response.headers)
        current = context.current()
        if current is not None:
            response.headers["X-Request-ID"] = current.request_id
        return response
