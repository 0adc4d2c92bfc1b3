from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Reason = Annotated[
    str, Field(min_length=1, max_length=2000, description="why (GxP: every change says why)")
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", frozen=True)


class ErrorBody(Schema):
    error: str
    detail: str


Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {
    401: {"model": ErrorBody, "description": "not authenticated"},
    403: {"model": ErrorBody, "description": "role not allowed"},
    422: {"model": ErrorBody, "description": "invalid input"},
}
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "not found"}}
CONFLICT: Responses = {409: {"model": ErrorBody, "description": "conflict"}}
