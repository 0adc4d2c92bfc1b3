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
    """ICH Q14 lifecycle of a version.

    Trained: ``draft -> approved | rejected``. Transferred: ``pending_requalification ->
    requalified | rejected``, ``requalified -> requalification_due -> requalified``. Any ->
    ``retired``. Only :data:`QUALIFIED_STATUSES` may serve GMP purposes.
    """

    draft = "draft"
    pending_requalification = "pending_requalification"
    approved = "approved"
    requalified = "requalified"
    requalification_due = "requalification_due"
    rejected = "rejected"
    retired = "retired"


# The statuses under which a version is qualified (as long as its review date has not passed).
QUALIFIED_STATUSES = frozenset({VersionStatus.approved, VersionStatus.requalified})


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
    """What a version is qualified for, ordered: each use covers the ones before it
    (advisory < monitoring < control < release)."""

    advisory = "advisory"
    monitoring = "monitoring"
    control = "control"
    release = "release"

    @property
    def rank(self) -> int:
        return _USE_ORDER.index(self)

    def covers(self, other: IntendedUse) -> bool:
        return self.rank >= other.rank


_USE_ORDER = list(IntendedUse)


class PredictionPurpose(StrEnum):
    """Why a prediction is asked for. ``evaluation`` (the default) is served by any version
    that is not retired and is marked not-for-GMP; the others need a qualified version whose
    intended use covers them."""

    evaluation = "evaluation"
    advisory = "advisory"
    monitoring = "monitoring"
    control = "control"
    release = "release"

    @property
    def intended_use(self) -> IntendedUse | None:
        """The intended use this purpose needs (None for evaluation)."""
        return None if self is PredictionPurpose.evaluation else IntendedUse(self.value)


class SignatureMeaning(StrEnum):
    """21 CFR 11.50: what a signature means."""

    authored = "authored"
    reviewed = "reviewed"
    approved = "approved"
    rejected = "rejected"


class PasswordCheck(StrEnum):
    """Where a password was entered (a failed one is counted towards the lockout)."""

    login = "login"  # POST /auth/token or the login page: the only one a stranger can reach
    reauthentication = "reauthentication"  # a signature or another signed action
    password_change = "password_change"  # the current password, to change it


class SignedEntity(StrEnum):
    """What a signature is bound to."""

    transfer = "transfer"
    model_version = "model_version"


class LifecycleTrigger(StrEnum):
    """Why a version changed status."""

    signature = "signature"  # an approving or rejecting signature
    review_date = "review_date"  # its periodic-review date passed
    domain_event = "domain_event"  # an event on its domain (probe replaced, ...)
    qa_trigger = "qa_trigger"  # QA's explicit trigger, with a reason
    retirement = "retirement"  # retired, with a reason
    monitoring = "monitoring"  # a monitoring rule breached on reference results


class DomainEventKind(StrEnum):
    """Something that happened to a measurement domain and may invalidate its models."""

    probe_replaced = "probe_replaced"
    instrument_serviced = "instrument_serviced"
    recalibrated = "recalibrated"
    software_updated = "software_updated"
    relocated = "relocated"
    other = "other"


class AuditAction(StrEnum):
    """Every action the audit trail records."""

    auth_login = "auth.login"
    auth_login_failed = "auth.login_failed"
    auth_lockout = "auth.lockout"
    auth_login_throttled = "auth.login_throttled"
    auth_logout = "auth.logout"
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
    signature_sign = "signature.sign"
    signature_refused = "signature.refused"
    model_version_transition = "model_version.transition"
    domain_event = "domain.event"
    alias_move = "alias.move"
    user_scope = "user.scope"
    reference_record = "reference.record"
    monitoring_settings = "monitoring.settings"
    monitoring_alarm = "monitoring.alarm"
    store_collect = "store.collect"
    backup_restore = "backup.restore"
    # The state of a row that existed before events carried states, recorded once by the
    # migration that introduced them: it attests the row as it was then, not before.
    audit_baseline = "audit.baseline"
    # A full reconciliation's result, recorded by ``ssreg audit verify --full --record`` and
    # signed by the seal of its own event: what ``GET /audit/verify`` reports and starts from.
    audit_reconcile = "audit.reconcile"


class AuditEntityType(StrEnum):
    """What an audit event is about."""

    user = "user"
    client_address = "client_address"  # where failed logins came from (the login throttle)
    domain = "domain"
    dataset = "dataset"
    model = "model"
    model_version = "model_version"
    transfer = "transfer"
    signature = "signature"
    alias = "alias"
    domain_event = "domain_event"
    store = "store"
    backup = "backup"
    reference = "reference"
    # A row of a table with no entity type of its own (baseline events: ``<table>:<id>``).
    record = "record"
    audit_chain = "audit_chain"  # the trail itself (a recorded reconciliation)


class MonitoringRule(StrEnum):
    """The rules that watch a deployed version (:mod:`app.core.monitoring`)."""

    ewma = "ewma"  # EWMA of the standardized residuals beyond its limits
    cusum = "cusum"  # two-sided CUSUM of the standardized residuals beyond h
    t2_exceedance = "t2_exceedance"  # T² beyond its 99 % limit more often than 1 %
    q_exceedance = "q_exceedance"  # Q beyond its 99 % limit more often than 1 %


class ResidualCentre(StrEnum):
    """What a standardized residual is centred on."""

    validation = "validation"  # the version's validation mean residual (reference − prediction)
    zero = "zero"  # no bias at all


class SettingsOrigin(StrEnum):
    """Why a version's monitoring settings were recorded."""

    qualification = "qualification"  # set when the version was approved or requalified
    qa = "qa"  # changed by QA, with a reason


class ReconcileMode(StrEnum):
    """How much of the records ``GET /audit/verify`` compares with their audited states."""

    # The rows written since the last recorded full reconciliation (all rows when none is
    # recorded or there is no signing key): its cost grows with the events since that run.
    incremental = "incremental"
    full = "full"  # every row and every audited state: its cost grows with the history
    none = "none"
