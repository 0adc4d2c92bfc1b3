"""Refuse oversized request bodies before they are read whole (413 in the error envelope).

A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
body without one (chunked transfer) is counted as it streams in and refused as soon as it
crosses the limit. The limit is ``settings.max_upload_bytes`` plus a small allowance for the
multipart framing and form fields around the file, read at each request so it can be changed
without rebuilding the app. The services check the file itself against the exact limit.

Uploaded files are read whole by the routes anyway, so parts up to :data:`IN_MEMORY_PART_BYTES`
are kept in memory while the body is parsed (:func:`keep_upload_parts_in_memory`) instead of
being spooled to a temporary file after the first MiB, which costs a write to disk and a trip
to the thread pool for every chunk of the body after that.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import envelope
from app.settings import get_settings

MULTIPART_ALLOWANCE = 64 * 1024
LIMITED_METHODS = frozenset({"POST", "PUT", "PATCH"})
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


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body crosses the limit.

    An HTTPException, so that FastAPI's body parsing re-raises it (rather than turning it into
    a 400) and the app's handler renders it in the envelope.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(max_bytes))


class UploadSizeLimit:
    """Pure ASGI middleware: 413 for request bodies over the configured limit."""

    def __init__(self, app: ASGIApp, *, allowance: int = MULTIPART_ALLOWANCE) -> None:
        self.app = app
        self.allowance = allowance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in LIMITED_METHODS:
            await self.app(scope, receive, send)
            return
        max_bytes = get_settings().max_upload_bytes
        limit = max_bytes + self.allowance
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, max_bytes)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Normally the app's handler has already answered; this covers bodies read
            # outside a route (e.g. by another middleware).
            if started:
                raise
            await _refuse(scope, receive, send, max_bytes)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: fall back to counting the body
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    response = envelope(
        413, "payload_too_large", too_large_detail(max_bytes), headers={"Connection": "close"}
    )
    await response(scope, receive, send)
