"""Typed ORM rows. They never leave the service layer except through API schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, utcnow
from app.enums import (
    DomainEventKind,
    IntendedUse,
    LifecycleTrigger,
    MonitoringRule,
    PasswordCheck,
    Role,
    SettingsOrigin,
    SignatureMeaning,
    SignedEntity,
    TransferMethod,
    TransferStatus,
    VersionStatus,
)


def _enum(cls: type[StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable and readable in SQL.
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class User(Base):
    """A person or a service account (role ``plant``, authenticated by API key)."""

    __tablename__ = "app_user"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    api_key_prefix: Mapped[str | None] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True)
    # Failed password checks counted towards the lockout at the last failure (a snapshot of
    # the count over the window, see app.services.auth; 0 after a success, lockout or unlock).
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    # Failures up to this time no longer count towards the lockout: set by a successful
    # password check and an unlock to then, by a lockout to its end.
    failures_reset_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))


class LoginFailure(Base):
    """A failed password check, as the login throttle (per client address) and the account
    lockout count them over their window. Operational state: the audit trail keeps the record
    of every failure (``auth.login_failed``)."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index(None, "client_address", "occurred_at"),
        Index(None, "user_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    occurred_at: Mapped[datetime]
    kind: Mapped[PasswordCheck] = mapped_column(_enum(PasswordCheck, "password_check"))
    # The login's throttle key (app.services.auth.throttle_key); None for checks made inside
    # a signed-in session, which the address throttle does not count.
    client_address: Mapped[str | None] = mapped_column(String(64))
    # The account it counts against (None: no such account, or one without a password).
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))


class AccessToken(Base):
    """A bearer token issued at login; only its sha256 is stored."""

    __tablename__ = "access_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="raise")


class AuditEvent(Base):
    """One link of the append-only, hash-chained audit trail (21 CFR 11.10(e))."""

    __tablename__ = "audit_event"
    __table_args__ = (Index(None, "entity_type", "entity_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The rows the event's transaction wrote, as they were after it ({"table:id": {column:
    # value or {"sha256": ...}}}, see app/services/record_state.py) and that JSON's sha256;
    # None on events that wrote no row and on events older than state hashing.
    state: Mapped[dict[str, Any] | None]
    state_sha256: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """Single row pointing at the newest event; locked to serialize appends across workers."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed checkpoint of the chain: (seq, hash) signed with the operator's Ed25519 key,
    which the database never holds. Also appended to a file outside the database. A *seal*
    also carries every record table's row count. Append-only."""

    __tablename__ = "audit_checkpoint"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # chain | seal
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    rows: Mapped[dict[str, Any] | None]  # seals: {table: row count}
    signature: Mapped[str] = mapped_column(String(128))  # base64 of the 64-byte signature


class Domain(Base):
    """A measurement domain: one probe on one instrument at one scale and site."""

    __tablename__ = "domain"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    instrument: Mapped[str] = mapped_column(String(200))
    probe_serial: Mapped[str] = mapped_column(String(100))
    scale: Mapped[str] = mapped_column(String(100))
    site: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))


class Dataset(Base):
    """Spectra with reference values measured in one domain, pinned by the sha256 of its bytes."""

    __tablename__ = "dataset"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domain.id"), index=True)
    file_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    reference_column: Mapped[str] = mapped_column(String(200))
    units: Mapped[str] = mapped_column(String(50))
    sample_id_column: Mapped[str | None] = mapped_column(String(200))
    spectral_prefix: Mapped[str] = mapped_column(String(50))
    axis_unit: Mapped[str] = mapped_column(String(16))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_channels: Mapped[int] = mapped_column(Integer)
    axis: Mapped[list[Any]]
    reference_min: Mapped[float] = mapped_column(Float)
    reference_max: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))

    domain: Mapped[Domain] = relationship(lazy="raise")


class SoftSensorModel(Base):
    """A named soft sensor (e.g. ``titer_pls``); its versions carry the numbers."""

    __tablename__ = "soft_sensor_model"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    analyte: Mapped[str] = mapped_column(String(100))
    units: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))


class ModelVersion(Base):
    """An immutable, server-trained version of a soft sensor."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("soft_sensor_model.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "version_status"))
    # The version reads spectra of this domain (the training data's, or a transfer's target).
    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domain.id"))
    # Trained versions: their training data. Transferred versions: the source's training data.
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dataset.id"))
    # Lineage of a transferred version: source version -> transfer -> this version.
    source_version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("model_version.id"))
    # use_alter: transfer also points at model_version (its source); break the cycle at DDL.
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("transfer.id", use_alter=True), unique=True
    )
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    n_components: Mapped[int] = mapped_column(Integer)
    component_selection: Mapped[dict[str, Any]]
    split: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    operating_range_min: Mapped[float] = mapped_column(Float)
    operating_range_max: Mapped[float] = mapped_column(Float)
    operating_range_source: Mapped[str] = mapped_column(String(32))
    t2_limit_95: Mapped[float] = mapped_column(Float)
    t2_limit_99: Mapped[float] = mapped_column(Float)
    q_limit_95: Mapped[float] = mapped_column(Float)
    q_limit_99: Mapped[float] = mapped_column(Float)
    # What the version may be used for (ordered: advisory < monitoring < control < release)
    # and the words of its intended-use statement.
    intended_use: Mapped[IntendedUse] = mapped_column(_enum(IntendedUse, "intended_use"))
    intended_use_statement: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    # Lifecycle (the only columns that change, by audited transitions): ``status`` above and
    # the periodic-review date set when the version is approved or requalified.
    review_due_at: Mapped[datetime | None]

    model: Mapped[SoftSensorModel] = relationship(lazy="raise")
    dataset: Mapped[Dataset] = relationship(lazy="raise", foreign_keys=[dataset_id])


class TransferRecord(Base):
    """A calibration-transfer record: opened with its plan, completed once by the service
    when the target probe's standards arrive, immutable from then on (database trigger)."""

    __tablename__ = "transfer"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    status: Mapped[TransferStatus] = mapped_column(_enum(TransferStatus, "transfer_status"))
    source_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"), index=True)
    target_domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domain.id"), index=True)
    method_requested: Mapped[TransferMethod] = mapped_column(
        _enum(TransferMethod, "transfer_method")
    )
    n_standards: Mapped[int] = mapped_column(Integer)
    fixed_params: Mapped[dict[str, Any]]
    change_control: Mapped[str] = mapped_column(String(100), index=True)
    intended_use: Mapped[str] = mapped_column(String(32))
    operating_range_min: Mapped[float] = mapped_column(Float)
    operating_range_max: Mapped[float] = mapped_column(Float)
    acceptance: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    # Filled once, when the service runs the transfer (status -> completed).
    completed_at: Mapped[datetime | None]
    completed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    target_standards_dataset_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("dataset.id"))
    source_standards_dataset_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("dataset.id"))
    validation_dataset_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("dataset.id"))
    method_chosen: Mapped[str | None] = mapped_column(String(16))
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(8))
    result: Mapped[dict[str, Any] | None]
    # Filled once when a transfer still awaiting its standards is cancelled (immutable after).
    cancelled_at: Mapped[datetime | None]
    cancelled_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def dataset_ids(self) -> list[uuid.UUID]:
        """The datasets the standards step pinned: target standards, source standards (when
        uploaded), validation (when uploaded)."""
        return [
            d
            for d in (
                self.target_standards_dataset_id,
                self.source_standards_dataset_id,
                self.validation_dataset_id,
            )
            if d is not None
        ]


class PredictionLog(Base):
    """ALCOA+ record of one prediction call (not the spectra: their sha256). Append-only."""

    __tablename__ = "prediction_log"
    __table_args__ = (
        Index(None, "model_version_id", "occurred_at"),
        Index(None, "occurred_at", "id"),  # the review listing's order and keyset cursor
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    caller: Mapped[str] = mapped_column(String(64))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transfer.id"))
    qualified: Mapped[bool]
    n_spectra: Mapped[int] = mapped_column(Integer)
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_format: Mapped[str] = mapped_column(String(16))
    flag_counts: Mapped[dict[str, Any]]
    purpose: Mapped[str | None] = mapped_column(String(500))
    # Calls through an alias name it; evaluation calls (and every call of a version that is
    # not qualified) are not for GMP use.
    alias: Mapped[str | None] = mapped_column(String(64))
    for_gmp: Mapped[bool | None]
    # What was reported, per row: predictions, T², Q, flags and the client's sample ids
    # (canonical JSON, see app.services.canonical), and that JSON's sha256.
    results: Mapped[dict[str, Any] | None]
    results_sha256: Mapped[str | None] = mapped_column(String(64))


class Signature(Base):
    """A Part 11 electronic signature on a transfer record or a version (append-only).

    ``content_sha256`` is the sha256 of the record's canonical content when it was signed; a
    signature whose record no longer hashes to it is shown invalid.
    """

    __tablename__ = "signature"
    __table_args__ = (Index(None, "entity_type", "entity_id", "signed_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    entity_type: Mapped[SignedEntity] = mapped_column(_enum(SignedEntity, "signed_entity"))
    entity_id: Mapped[uuid.UUID]
    meaning: Mapped[SignatureMeaning] = mapped_column(_enum(SignatureMeaning, "signature_meaning"))
    signer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    signer_username: Mapped[str] = mapped_column(String(64))
    signer_full_name: Mapped[str] = mapped_column(String(200))
    signer_role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
    comment: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    change_control: Mapped[str | None] = mapped_column(String(100), index=True)


class DomainEvent(Base):
    """Something that happened to a measurement domain (probe replaced, instrument serviced,
    recalibrated ...): every qualified version reading that domain becomes due. Append-only."""

    __tablename__ = "domain_event"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domain.id"), index=True)
    kind: Mapped[DomainEventKind] = mapped_column(_enum(DomainEventKind, "domain_event_kind"))
    occurred_at: Mapped[datetime]  # when it happened, as reported
    description: Mapped[str] = mapped_column(Text)
    change_control: Mapped[str | None] = mapped_column(String(100), index=True)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))


class LifecycleEvent(Base):
    """One status transition of a version, with what caused it. Append-only."""

    __tablename__ = "lifecycle_event"
    __table_args__ = (Index(None, "model_version_id", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "version_status"))
    to_status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "version_status"))
    trigger: Mapped[LifecycleTrigger] = mapped_column(_enum(LifecycleTrigger, "lifecycle_trigger"))
    signature_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("signature.id"))
    domain_event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("domain_event.id"))
    # None when the service itself recorded it (``ssreg lifecycle run``, a passed review date).
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    change_control: Mapped[str | None] = mapped_column(String(100), index=True)
    review_due_at: Mapped[datetime | None]  # the version's review date set by this transition


class AliasAssignment(Base):
    """One move of a model's named alias (e.g. ``plant-2000L``) to a version, signed by QA
    with the password. The newest row per (model, alias) is the alias now; older rows answer
    "which version did the alias name at time t". ``version_id`` None: alias withdrawn.
    Append-only."""

    __tablename__ = "alias_assignment"
    __table_args__ = (UniqueConstraint("model_id", "alias", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("soft_sensor_model.id"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per (model, alias)
    version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("model_version.id"))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    signer_username: Mapped[str] = mapped_column(String(64))
    signer_full_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    change_control: Mapped[str] = mapped_column(String(100), index=True)


class AccountScope(Base):
    """What a service account may call: its domains and, optionally, its models. The newest
    row per account is in force; older rows are its history. Append-only."""

    __tablename__ = "account_scope"
    __table_args__ = (UniqueConstraint("user_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    domain_ids: Mapped[list[Any]]  # UUID strings; never empty
    model_ids: Mapped[list[Any] | None]  # UUID strings; None: every model of those domains
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    granted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    reason: Mapped[str] = mapped_column(Text)


class MonitoringSettings(Base):
    """The monitoring rules of a version and their parameters, in force from ``set_at``.

    Recorded when the version is approved or requalified (origin ``qualification``: the
    previous row's parameters, else the defaults; a new monitoring window opens at
    ``window_start``) and when QA changes them with a reason (origin ``qa``: same window).
    The newest row per version is in force; older rows are its history. ``validation_sep``
    and ``validation_mean_residual`` are the version's validation figures the residuals are
    standardized with (None when the version has no SEP). Append-only.
    """

    __tablename__ = "monitoring_settings"
    __table_args__ = (UniqueConstraint("model_version_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"))
    sequence: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per version
    parameters: Mapped[dict[str, Any]]
    validation_sep: Mapped[float | None] = mapped_column(Float)
    validation_mean_residual: Mapped[float | None] = mapped_column(Float)
    figures_basis: Mapped[str] = mapped_column(Text)
    window_start: Mapped[datetime | None]
    origin: Mapped[SettingsOrigin] = mapped_column(_enum(SettingsOrigin, "settings_origin"))
    lifecycle_event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lifecycle_event.id"))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    set_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class ReferenceResult(Base):
    """The offline (laboratory) result for one predicted sample of a logged call.

    ``revision`` 1 is the first result for the sample (``prediction_log_id``, ``row``); a
    correction is revision 2, 3, ... with its ``correction_reason`` and the row it corrects.
    The newest revision is in force; every one stays visible. The prediction it is compared
    with (``predicted``, of the call's ``results``) and the call's version, alias and time are
    copied from the log row. Append-only.
    """

    __tablename__ = "reference_result"
    __table_args__ = (
        UniqueConstraint("prediction_log_id", "row", "revision"),
        Index(None, "model_version_id", "predicted_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    prediction_log_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prediction_log.id"))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"))
    row: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    sample_id: Mapped[str | None] = mapped_column(String(200))
    alias: Mapped[str | None] = mapped_column(String(64))
    predicted: Mapped[float] = mapped_column(Float)
    predicted_at: Mapped[datetime]
    value: Mapped[float] = mapped_column(Float)
    units: Mapped[str] = mapped_column(String(50))
    assay_method: Mapped[str] = mapped_column(String(200))
    sample_time: Mapped[datetime]
    lab_reference: Mapped[str] = mapped_column(String(200))
    correction_reason: Mapped[str | None] = mapped_column(Text)
    corrects_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("reference_result.id"))
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)
    posted_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    posted_by: Mapped[str] = mapped_column(String(64))


class MonitoringAlarm(Base):
    """A monitoring rule breached in a version's monitoring window: the figures, the limit
    and the references behind it, and the transition to requalification_due it caused (None
    when the version was due already). One per rule and window. Append-only."""

    __tablename__ = "monitoring_alarm"
    __table_args__ = (Index(None, "model_version_id", "raised_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_version.id"))
    settings_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("monitoring_settings.id"))
    rule: Mapped[MonitoringRule] = mapped_column(_enum(MonitoringRule, "monitoring_rule"))
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    window_start: Mapped[datetime | None]
    statistic: Mapped[float] = mapped_column(Float)
    limit: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]]
    reference_ids: Mapped[list[Any]]
    trigger_reference_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("reference_result.id")
    )
    lifecycle_event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lifecycle_event.id"))
