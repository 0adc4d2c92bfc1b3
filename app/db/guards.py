"""What may change in a record table once written: the single source for the grants of the
runtime role (``ssreg db grant``) and for the tests of the database triggers.

The triggers themselves are created by the migrations (a migration is frozen when it is
written, so each one carries its own copy of the lists it enforces); a test checks that, at
the head revision, the database refuses exactly what this module says.

Every table is listed: DELETE and TRUNCATE are refused on all of them; UPDATE only of the
columns named here, which change by audited transitions (a version's lifecycle, a transfer's
completion or cancellation, an account's administration and login counters, a logout, the
chain head). A table added later must be added here too (``tests/db/test_guards.py`` fails
until it is).
"""

from __future__ import annotations

from types import MappingProxyType

_TRANSFER_COMPLETION = (
    "status",
    "completed_at",
    "completed_by_id",
    "target_standards_dataset_id",
    "source_standards_dataset_id",
    "validation_dataset_id",
    "method_chosen",
    "artifact_sha256",
    "verdict",
    "result",
)
_TRANSFER_CANCELLATION = ("cancelled_at", "cancelled_by_id", "cancel_reason")

UPDATABLE: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "app_user": (
            "role",
            "password_hash",
            "api_key_hash",
            "api_key_prefix",
            "is_active",
            "failed_login_count",
            "locked_until",
            "failures_reset_at",
        ),
        "access_token": ("expires_at",),
        "audit_event": (),
        "audit_head": ("seq", "hash"),
        "audit_checkpoint": (),
        "domain": (),
        "dataset": (),
        "soft_sensor_model": (),
        "model_version": ("status", "review_due_at"),
        "transfer": _TRANSFER_COMPLETION + _TRANSFER_CANCELLATION,
        "prediction_log": (),
        "signature": (),
        "domain_event": (),
        "lifecycle_event": (),
        "alias_assignment": (),
        "account_scope": (),
        "login_failure": (),
        "monitoring_settings": (),
        "reference_result": (),
        "monitoring_alarm": (),
    }
)

# Rows the service locks with SELECT ... FOR UPDATE although none of their columns may change
# (the model row serializes the numbering of its versions). PostgreSQL grants that lock only
# with the UPDATE privilege on one column: the runtime role gets it on ``id``, whose change
# the trigger refuses like any other.
LOCKED_ONLY: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {"soft_sensor_model": ("id",)}
)

# Tables outside the records: the runtime role may only read them.
READ_ONLY = ("alembic_version",)
