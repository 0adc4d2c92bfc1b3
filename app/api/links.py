"""``Link`` headers (RFC 8288) for lists that page."""

from __future__ import annotations

from fastapi import Request, Response

from app.settings import get_settings


def set_next_link(request: Request, response: Response, **params: str | int) -> None:
    """Point ``rel="next"`` at this request's path and query with ``params`` set (filters
    carry over), on the configured ``public_base_url``: never on the request's own Host
    header, which the client chose."""
    target = request.url.include_query_params(**params)
    query = f"?{target.query}" if target.query else ""
    base = get_settings().public_base_url
    response.headers["Link"] = f'<{base}{target.path}{query}>; rel="next"'
