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


# What the request-body guard (app/api/limits.py) may answer to any request with a body.
BODY_REFUSALS = {
    "408": "the body stalled or came too slowly",
    "413": "the body is larger than the route's limit",
    "503": "too many request bodies are being received at once (see Retry-After)",
}


def _document_body_refusals(schema: dict[str, Any]) -> None:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in BODY_REFUSALS.items():
                responses.setdefault(status, {"description": description, "content": error})


def install_openapi(app: FastAPI) -> None:
    """Serve the adjusted document at ``/openapi.json`` (built once, on first request)."""
    build = app.openapi  # FastAPI's own: builds the document once and keeps it

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _mark_binary(schema)
            _document_body_refusals(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
