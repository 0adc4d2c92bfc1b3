"""The request being served: its id and, once its credential is resolved, its user.

Set by the API's request middleware for each request; read by the log filter and the error
handler. The value is a mutable object, so a user noted in a worker thread (synchronous
dependencies and routes run in copies of the request's context) is seen by the middleware.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestContext:
    request_id: str
    user: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("registry_request", default=None)


def begin(request_id: str) -> RequestContext:
    """The context of a request that starts now (in the request's own task)."""
    context = RequestContext(request_id)
    _current.set(context)
    return context


def current() -> RequestContext | None:
    return _current.get()


def note_user(username: str) -> None:
    """Record who the request is from (no-op outside a request: CLI, tests)."""
    context = _current.get()
    if context is not None:
        context.user = username
