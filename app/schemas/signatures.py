"""Electronic signatures (21 CFR 11.50, 11.70, 11.200), lifecycle history and domain events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from app.enums import (
    DomainEventKind,
    LifecycleTrigger,
    Role,
    SignatureMeaning,
    SignedEntity,
    VersionStatus,
)
from app.schemas.common import NoNul, Reason, Schema, UtcDateTime

Username = Annotated[
    str, Field(min_length=1, max_length=64, description="your user name, entered again"), NoNul
]
Password = Annotated[
    str, Field(min_length=1, max_length=1000, description="your password, entered again"), NoNul
]
ChangeControlRef = Annotated[
    str, Field(min_length=1, max_length=100, examples=["CC-2026-0042"]), NoNul
]


class SignatureCreate(Schema):
    """A signature: both components of your credentials entered again at every signing."""

    meaning: SignatureMeaning
    username: Username
    password: Password
    comment: Annotated[
        str | None,
        Field(
            max_length=4000,
            description="required for approved and rejected: the evidence or the reason",
        ),
        NoNul,
    ] = None
    review_interval_days: Annotated[
        int | None,
        Field(
            ge=1,
            le=3650,
            description="approved only: days until the periodic review (default: the setting)",
        ),
    ] = None

    @model_validator(mode="after")
    def _comment(self) -> SignatureCreate:
        needs = self.meaning in (SignatureMeaning.approved, SignatureMeaning.rejected)
        if needs and (self.comment is None or not self.comment.strip()):
            raise ValueError(f"a comment is required for a signature meaning {self.meaning.value}")
        if self.review_interval_days is not None and self.meaning is not SignatureMeaning.approved:
            raise ValueError("review_interval_days goes with an approved signature only")
        return self


class SignatureRead(Schema):
    """A signature as shown wherever its record is shown. ``valid``: the record still hashes
    to ``content_sha256`` (its canonical content when signed)."""

    id: uuid.UUID
    meaning: SignatureMeaning
    signer_username: str
    signer_full_name: str
    signer_role: Role
    signed_at: datetime
    comment: str | None
    content_sha256: str
    valid: bool


class SignatureCreated(SignatureRead):
    """The new signature and what it did to the record's lifecycle."""

    entity_type: SignedEntity
    entity_id: uuid.UUID
    record: str = Field(description="what was signed, e.g. 'transfer #1' or 'titer_pls v1'")
    version_status: VersionStatus | None = Field(
        description="the status now of the version the record governs (a transfer: its target "
        "version)"
    )
    review_due_at: datetime | None


class VersionRetire(Schema):
    """Retire a version for good: a reason, and your credentials entered again."""

    reason: Reason
    username: Username
    password: Password


class RequalificationTrigger(Schema):
    """QA's explicit trigger: the version must be requalified before it is used again."""

    reason: Reason


class LifecycleEventRead(Schema):
    id: uuid.UUID
    occurred_at: datetime
    from_status: VersionStatus
    to_status: VersionStatus
    trigger: LifecycleTrigger
    actor: str
    reason: str
    change_control: str | None
    review_due_at: datetime | None = Field(description="the review date this transition set")
    signature: SignatureRead | None = Field(
        description="the approving or rejecting signature (on the version or its transfer)"
    )
    signed_entity: SignedEntity | None = None
    domain_event_id: uuid.UUID | None


class DomainEventCreate(Schema):
    kind: DomainEventKind
    occurred_at: UtcDateTime | None = Field(
        default=None, description="when it happened (UTC, with a time zone); default now"
    )
    description: Reason
    change_control: ChangeControlRef | None = None


class VersionMadeDue(Schema):
    model: str
    version: int
    id: uuid.UUID
    from_status: VersionStatus


class DomainEventRead(Schema):
    id: uuid.UUID
    domain: str
    kind: DomainEventKind
    occurred_at: datetime
    description: str
    change_control: str | None
    recorded_at: datetime
    recorded_by: str
    versions_made_due: list[VersionMadeDue]
