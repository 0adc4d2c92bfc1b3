"""``Link`` headers (RFC 8288) for lists that page."""

from __future__ import annotations

from fastapi import Request, Response


def set_next_link(request: Request, response: Response, **params: str | int) -> None:
    """Point ``rel="next"`` at this request's URL with ``params`` set (filters carry over)."""
    response.headers["Link"] = f'<{request.url.include_query_params(**params)}>; rel="next"'
