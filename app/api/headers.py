"""Security headers on every response: nosniff everywhere; on pages a Content-Security-Policy
that allows nothing but the service's own files, no framing and no caching.

The pages use no inline script or style at all, so their policy needs no exception. The API
documentation (``/docs``, ``/redoc``, Swagger's OAuth2 redirect page) is rendered by FastAPI
with an inline script: its policy allows exactly that script by its sha256, computed from the
page as sent, and inline styles (Swagger UI and ReDoc set them from their bundles).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
PAGE_POLICY = f"default-src 'self'; {_COMMON}"
_DOCS_POLICY = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data:; worker-src 'self' blob:; {_COMMON}"
)
# An inline script: a <script> element without a src attribute, and its text.
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


def docs_policy(html: bytes) -> str:
    """The policy of an API documentation page: its own inline scripts, by hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT.finditer(html)
    )
    return _DOCS_POLICY.format(hashes=hashes)


def add_security_headers(headers: MutableHeaders) -> None:
    """nosniff on every response; a page's policy, no framing, no caching on HTML."""
    headers["X-Content-Type-Options"] = "nosniff"
    if headers.get("content-type", "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        headers["X-Frame-Options"] = "DENY"
        # Pages show a signed-in person's records and carry their forms' CSRF token.
        headers.setdefault("Cache-Control", "no-store")


class SecurityHeaders:
    """Pure ASGI middleware: :func:`add_security_headers` on every response; the documentation
    pages (``docs_paths``, a few KiB each) are held back until their whole body is known."""

    def __init__(self, app: ASGIApp, *, docs_paths: Iterable[str]) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.docs_paths:
            await self._documentation(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _documentation(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        body = bytearray()

        async def held_back(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = MutableHeaders(scope=start)
            if headers.get("content-type", "").startswith("text/html"):
                headers["Content-Security-Policy"] = docs_policy(bytes(body))
            add_security_headers(headers)
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})

        await self.app(scope, receive, held_back)
