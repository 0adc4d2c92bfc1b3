"""The served OpenAPI document, adjusted where FastAPI's output misleads client generators."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def _mark_binary(node: Any) -> None:
    # OpenAPI 3.1 describes an uploaded file as a string with a contentMediaType; generators
    # (openapi-python-client among them) recognise a file only by ``format: binary`` and
    # otherwise send the field as text. Both keywords together are valid 3.1.
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("contentMediaType") == (
            "application/octet-stream"
        ):
            node["format"] = "binary"
        for value in node.values():
            _mark_binary(value)
    elif isinstance(node, list):
        for value in node:
            _mark_binary(value)


def install_openapi(app: FastAPI) -> None:
    """Serve the adjusted document at ``/openapi.json`` (built once, on first request)."""
    build = app.openapi  # FastAPI's own: builds the document once and keeps it

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _mark_binary(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
