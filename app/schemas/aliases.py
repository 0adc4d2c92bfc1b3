"""Contract of the alias routes: moves (QA, password re-entered), the current aliases, the
history and "which version at time t"."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.enums import VersionStatus
from app.schemas.common import INT32_MAX, NoNul, Reason, Schema


class AliasMoveCreate(Schema):
    """Move (or withdraw) an alias: a signed QA action (21 CFR 11.200: both components of the
    signer's credentials entered again)."""

    version: Annotated[
        int | None,
        Field(
            ge=1,
            le=INT32_MAX,
            description="the version the alias will name; null withdraws the alias",
        ),
    ]
    reason: Reason
    change_control: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="change-control reference the move is made under",
            examples=["CC-2026-0042"],
        ),
        NoNul,
    ]
    username: Annotated[
        str, Field(min_length=1, max_length=64, description="the signer's own user name"), NoNul
    ]
    password: Annotated[
        str, Field(min_length=1, max_length=200, description="entered again"), NoNul
    ]


class AliasMoveRead(Schema):
    """One move of an alias (``version`` null: withdrawn)."""

    sequence: int
    version: int | None
    assigned_at: datetime
    assigned_by: Annotated[str, Field(description="the signer's user name")]
    signer_full_name: str
    reason: str
    change_control: str


class AliasRead(Schema):
    """An alias now: the version it names (null: withdrawn) and that version's status now."""

    alias: str
    version: int | None
    status: VersionStatus | None
    qualified: Annotated[
        bool,
        Field(
            description="the version is qualified now (it may have become unqualified since "
            "the move: the alias still resolves, and only purpose 'evaluation' is served)"
        ),
    ]
    assigned_at: datetime
    assigned_by: str
    change_control: str


class AliasHistoryRead(Schema):
    """An alias's full history and the version it named at ``at`` (or now)."""

    model: str
    alias: str
    at: Annotated[datetime | None, Field(description="the time asked about; null: now")]
    version: Annotated[
        int | None,
        Field(
            description="the version the alias named at that time; null when it named none "
            "(before its first move, or withdrawn then)"
        ),
    ]
    history: Annotated[list[AliasMoveRead], Field(description="every move, oldest first")]
