"""Change-control references: what is in use, and everything under one reference."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from app.enums import (
    DomainEventKind,
    LifecycleTrigger,
    Role,
    SignatureMeaning,
    SignedEntity,
    VersionStatus,
)
from app.schemas.audit import AuditEventRead
from app.schemas.common import Schema
from app.schemas.models import ModelVersionRead
from app.schemas.transfers import TransferRead


class ChangeControlCounts(Schema):
    """Rows carrying the reference, per kind."""

    transfers: int
    signatures: int
    lifecycle_events: int
    alias_moves: int
    domain_events: int


class ChangeControlSummary(Schema):
    ref: str = Field(description="the change-control reference, e.g. CC-2026-0042")
    counts: ChangeControlCounts
    first_at: datetime = Field(description="server time of the first row carrying it")
    last_at: datetime = Field(
        description="server time of its last activity (a transfer's: its completion or "
        "cancellation)"
    )


class ChangeControlSignature(Schema):
    """A Part 11 signature as shown under a change control, with its validity now."""

    id: uuid.UUID
    entity_type: SignedEntity
    entity_id: uuid.UUID
    record: str = Field(description="the signed record: 'transfer #1', 'titer_pls v2'")
    meaning: SignatureMeaning
    signer_username: str
    signer_full_name: str
    signer_role: Role
    signed_at: datetime
    comment: str | None
    content_sha256: str = Field(description="the record's content hash when it was signed")
    change_control: str | None
    valid: bool = Field(
        description="the record still hashes to content_sha256 (false: it changed after signing)"
    )


class ChangeControlLifecycleEvent(Schema):
    id: uuid.UUID
    model_version_id: uuid.UUID
    version: str = Field(description="'titer_pls v2'")
    occurred_at: datetime
    from_status: VersionStatus
    to_status: VersionStatus
    trigger: LifecycleTrigger
    signature_id: uuid.UUID | None
    domain_event_id: uuid.UUID | None
    actor: str
    reason: str
    change_control: str | None
    review_due_at: datetime | None


class ChangeControlAliasMove(Schema):
    id: uuid.UUID
    model: str
    alias: str
    sequence: int
    version: int | None = Field(description="the version named; null: alias withdrawn")
    assigned_at: datetime
    signer_username: str
    signer_full_name: str
    reason: str
    change_control: str


class ChangeControlDomainEvent(Schema):
    id: uuid.UUID
    domain: str
    kind: DomainEventKind
    occurred_at: datetime = Field(description="when it happened, as reported")
    description: str
    change_control: str | None
    recorded_at: datetime


class ChangeControlRead(Schema):
    """Everything under one change-control reference.

    ``transfers`` made under it (or signed under it), ``versions`` those transfers created
    and their source versions (and versions its lifecycle events, alias moves and signatures
    name), the ``signatures`` on all those records or carrying the reference, their
    ``lifecycle_events``, the ``alias_moves`` and ``domain_events`` carrying it, and the
    ``audit_events`` about any of those entities or their datasets, or whose reason or
    ``after`` names the reference — in sequence order.
    """

    ref: str
    transfers: list[TransferRead]
    versions: list[ModelVersionRead]
    signatures: list[ChangeControlSignature]
    lifecycle_events: list[ChangeControlLifecycleEvent]
    alias_moves: list[ChangeControlAliasMove]
    domain_events: list[ChangeControlDomainEvent]
    audit_events: list[AuditEventRead]
