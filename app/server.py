"""How the service is served: uvicorn with a connection protocol that times out slow heads.

uvicorn has no timeout on a request's line and headers: its keep-alive timer runs only between
requests and is cancelled by any byte received, and a new connection has no timer at all, so a
client that sends part of a request head (or nothing) holds its connection for as long as it
likes, and its headers may grow without bound (httptools buffers them all). The protocol here
is uvicorn's httptools protocol (the one it picks by default) with a clock on each head: a
head not complete ``header_timeout_seconds`` after the connection opened, or after its first
byte on a kept-alive connection, or larger than ``max_header_bytes``, ends the connection
(with a 408 or 431 when no response is under way). Bodies have their own timeouts in the app
(:mod:`app.api.limits`), which can answer in the error envelope.

``ssreg serve`` (and so ``make run``), the tests and the benches serve through
:func:`uvicorn_options`, so they all run the same protocol with the same settings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings

log = logging.getLogger("uvicorn.error")
APP = "app.main:create_app"


def _refusal(status: bytes, text: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
            str(len(text)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            text,
        ]
    )


HEAD_TIMEOUT = _refusal(b"408 Request Timeout", b"request head not received in time")
HEAD_TOO_LARGE = _refusal(
    b"431 Request Header Fields Too Large", b"request line and headers too large"
)


class HeadGuardProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on every request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.head_timeout = settings.header_timeout_seconds
        self.max_head_bytes = settings.max_header_bytes
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0  # bytes received since the head's clock started
        self.in_message = False  # between a request's first byte and the end of its body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._start_head_clock()  # any byte after a response starts the next head
        if self.head_timer is not None:
            self.head_bytes += len(data)
        super().data_received(data)
        # Still no complete head after these bytes: all of them belong to the head.
        if self.head_timer is not None and self.head_bytes > self.max_head_bytes:
            log.warning("request head over %d bytes: connection closed", self.max_head_bytes)
            self._refuse(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        self.in_message = True
        super().on_message_begin()
        self._start_head_clock()  # a pipelined request: its head starts now

    def on_headers_complete(self) -> None:
        self._stop_head_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_message = False
        super().on_message_complete()

    def _no_response_under_way(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _between_requests(self) -> bool:
        # Not while the rest of a body the app did not read is being discarded.
        return not self.in_message and self._no_response_under_way()

    def _start_head_clock(self) -> None:
        if self.head_timer is None:
            self.head_bytes = 0
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_clock(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.head_bytes:
            log.warning("request head not complete after %gs: connection closed", self.head_timeout)
        self._refuse(HEAD_TIMEOUT if self.head_bytes else None)

    def _refuse(self, answer: bytes | None) -> None:
        self._stop_head_clock()
        if self.transport.is_closing():
            return
        # A raw answer only when no response of an earlier (pipelined) request is being sent.
        if answer is not None and self._no_response_under_way():
            self.transport.write(answer)
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for :func:`uvicorn.run` / :class:`uvicorn.Config` besides host, port
    and workers: the app factory and the protocol (as an import string, so that worker
    processes import it themselves)."""
    return {
        "app": APP,
        "factory": True,
        "http": f"{__name__}:{HeadGuardProtocol.__name__}",
    }
