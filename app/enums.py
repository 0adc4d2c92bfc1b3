"""Closed vocabularies shared by the database, the services and the API."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    developer = "developer"
    qa = "qa"
    plant = "plant"
    auditor = "auditor"


class VersionStatus(StrEnum):
    draft = "draft"
    pending_requalification = "pending_requalification"
    approved = "approved"
    retired = "retired"


class CvScheme(StrEnum):
    kfold = "kfold"
    blocks = "blocks"


class HoldoutScheme(StrEnum):
    random = "random"
    last_block = "last_block"
    none = "none"


class TransferStatus(StrEnum):
    awaiting_standards = "awaiting_standards"
    completed = "completed"
    cancelled = "cancelled"


class TransferMethod(StrEnum):
    auto = "auto"
    pds = "pds"
    ds = "ds"
    sbc = "sbc"
    bias = "bias"


class IntendedUse(StrEnum):
    advisory = "advisory"
    monitoring = "monitoring"
    control = "control"
    release = "release"


class AuditAction(StrEnum):
    """Every action the audit trail records."""

    auth_login = "auth.login"
    auth_login_failed = "auth.login_failed"
    auth_lockout = "auth.lockout"
    user_create = "user.create"
    user_deactivate = "user.deactivate"
    user_reactivate = "user.reactivate"
    user_unlock = "user.unlock"
    user_role = "user.role"
    user_api_key_rotate = "user.api_key_rotate"
    user_api_key_revoke = "user.api_key_revoke"
    user_password_change = "user.password_change"
    domain_create = "domain.create"
    dataset_register = "dataset.register"
    model_create = "model.create"
    model_version_create = "model_version.create"
    transfer_open = "transfer.open"
    transfer_complete = "transfer.complete"
    transfer_cancel = "transfer.cancel"


class AuditEntityType(StrEnum):
    """What an audit event is about."""

    user = "user"
    domain = "domain"
    dataset = "dataset"
    model = "model"
    model_version = "model_version"
    transfer = "transfer"
