"""Unknown query parameters are refused, not ignored: a misspelt or unsupported filter would
otherwise return an unfiltered answer that looks like a filtered one."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.errors import InvalidInput

# By id(route), with the route kept beside its names: an id is only reused once its object is
# gone, and a kept route is never gone (routes are not hashable, so they cannot be the key).
_ACCEPTED: dict[int, tuple[APIRoute, frozenset[str]]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def accepted_query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares, its dependencies' included (computed once)."""
    entry = _ACCEPTED.get(id(route))
    if entry is None:
        entry = _ACCEPTED[id(route)] = (route, frozenset(_query_names(route.dependant)))
    return entry[1]


async def reject_unknown_query_parameters(request: Request) -> None:
    """App-wide dependency: 422 naming the parameters the route does not take, and those it
    does. Asynchronous and free when there is no query string (the prediction hot path)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    accepted = accepted_query_parameters(route)
    unknown = sorted(set(request.query_params) - accepted)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        where = f"{request.method} {request.url.path}"
        takes = ", ".join(sorted(accepted)) if accepted else "no query parameters"
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidInput(f"unknown query parameter{plural} {names}; {where} accepts: {takes}")
