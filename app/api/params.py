"""Path and query parameters the routers share, bounded like the columns they are compared
with (see :mod:`app.schemas.common`): a value no row can hold is a 422 naming the parameter,
before a query runs, instead of a database error."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from app.schemas.common import INT32_MAX, NoNul, UtcDateTime

ModelName = Annotated[str, Path(max_length=100, description="the model's name"), NoNul]
DomainName = Annotated[str, Path(max_length=100, description="the domain's name"), NoNul]
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX, description="the version's number")]
AliasName = Annotated[str, Path(max_length=64, description="the alias, e.g. plant-2000L"), NoNul]
Username = Annotated[str, Path(max_length=64, description="the account's user name"), NoNul]
TransferRef = Annotated[
    str,
    Path(
        alias="id",
        max_length=64,
        description="the transfer's number (e.g. 1) or its UUID",
        examples=["1"],
    ),
    NoNul,
]

# Filters by name (a model, a domain, a user): as wide as the name column.
ModelFilter = Annotated[str | None, Query(max_length=100, description="model name"), NoNul]
DomainFilter = Annotated[str | None, Query(max_length=100, description="domain name"), NoNul]
UserFilter = Annotated[str | None, Query(max_length=64, description="user name"), NoNul]
# An opaque cursor from a previous page (base64 of a time and a key).
Cursor = Annotated[
    str | None,
    Query(max_length=400, description="from the previous page's Link header"),
    NoNul,
]
Since = Annotated[UtcDateTime | None, Query(description="inclusive; with a time zone")]
Until = Annotated[UtcDateTime | None, Query(description="exclusive; with a time zone")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many per page")]
