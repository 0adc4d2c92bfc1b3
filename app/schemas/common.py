"""What every schema shares: the base class, the bounds of texts and numbers, the error body.

Every text and number a client sends is bounded here, at the schema, by what its column holds:
an integer column is a 32-bit ``INTEGER`` on PostgreSQL (:data:`INT32_MAX`), a name column a
``VARCHAR(n)``, and PostgreSQL text cannot hold the NUL character (:data:`NoNul`). A value
beyond them is a 422 naming the field, before any query runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The largest value of a 32-bit INTEGER column (PostgreSQL ``integer``): version, transfer and
# audit sequence numbers, counts. SQLite's integers are wider; the contract is the same.
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
ValueT = TypeVar("ValueT")


def refuse_nul(value: ValueT) -> ValueT:
    """``value`` unchanged unless it is a text holding U+0000 (PostgreSQL refuses those)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


# Appended to a text's Annotated metadata: runs after its length bound.
NoNul = AfterValidator(refuse_nul)


def as_utc(value: datetime) -> datetime:
    """An aware time converted to UTC, or ValueError: naive (ambiguous on a server that keeps
    UTC), or outside the years 1-9999 once converted (e.g. 0001-01-01T00:00+23:59)."""
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-11-27T10:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "is outside the years 1 to 9999 once converted to UTC; give a time between "
            "0001-01-02 and 9999-12-30"
        ) from None


# A client's time: with a time zone, and in UTC from here on.
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Reason = Annotated[
    str,
    Field(min_length=1, max_length=2000, description="why (GxP: every change says why)"),
    NoNul,
]
# Texts by their column's width (VARCHAR(n)), or a bound of their own for TEXT columns.
Text64 = Annotated[str, Field(max_length=64), NoNul]
Text100 = Annotated[str, Field(max_length=100), NoNul]
Text200 = Annotated[str, Field(max_length=200), NoNul]
Text2000 = Annotated[str, Field(max_length=2000), NoNul]
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]


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
