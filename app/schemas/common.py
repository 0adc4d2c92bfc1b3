from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Reason = Annotated[
    str, Field(min_length=1, max_length=2000, description="why (GxP: every change says why)")
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", frozen=True)


SchemaT = TypeVar("SchemaT", bound=Schema)


def read_from(schema: type[SchemaT], row: object, **computed: Any) -> SchemaT:
    """``schema`` filled from ``row``'s attributes of the same names; ``computed`` gives the
    fields the row does not hold itself (names resolved from ids, derived figures)."""
    values = {
        name: computed[name] if name in computed else getattr(row, name)
        for name in schema.model_fields
        if name in computed or hasattr(row, name)
    }
    return schema.model_validate(values)


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
