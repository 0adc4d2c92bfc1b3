"""JSON request bodies parsed by :mod:`app.services.strict_json` (a key twice in one object,
NaN, Infinity: 422 in the envelope) instead of FastAPI's plain ``json.loads``.

Every API router is an ``APIRouter(route_class=StrictJSONRoute)``. The prediction routes read
their bodies themselves (:mod:`app.services.spectra_bodies`) and apply the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app.errors import InvalidInput
from app.services import strict_json


class InvalidJSONBody(HTTPException):
    """A Starlette HTTPException, so that FastAPI's body parsing lets it through (anything
    else it turns into a bare 400) and the app's handler writes the envelope."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=422, detail=detail)


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json.loads(await self.body())
            except InvalidInput as exc:
                raise InvalidJSONBody(exc.detail) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route whose JSON body is read by :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
