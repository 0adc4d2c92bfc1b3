"""Named aliases of a model's versions (e.g. ``plant-2000L``), moved by QA, never overwritten.

Every move appends an :class:`~app.db.models.AliasAssignment` row: sequence 1, 2, ... per
(model, alias), numbered under the model's row lock (the unique constraint on (model, alias,
sequence) refuses a race that got past it), with the signer's names, the reason and the
change-control reference, and an ``alias.move`` audit event (before/after version) in the
same transaction. The newest row is the alias now; ``version_id`` None is a withdrawal. The
table is append-only at the database, so "which version did the alias name at time t" always
has an answer (:func:`alias_at`).

Rules: only a qualified version (approved or requalified, review date not passed) can be the
target of a move (409 otherwise); the mover re-enters user name and password (21 CFR 11.200,
checked by the route through :func:`app.services.auth.reauthenticate`); alias names match
:data:`ALIAS_PATTERN`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AliasAssignment, ModelVersion, SoftSensorModel, User
from app.db.repositories import aliases as alias_rows
from app.db.repositories import models as model_rows
from app.enums import AuditAction, AuditEntityType
from app.errors import Conflict, InvalidInput, NotFound
from app.services import audit
from app.services import models as models_service
from app.services.qualification import is_qualified

# The brief's ^[a-z0-9][a-z0-9._-]{0,63}$ plus upper case: the issue's own alias (and the
# demo's) is ``plant-2000L``. Names are case-sensitive.
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ALIAS_RULE = (
    "1 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or a digit"
)


def check_alias_name(alias: str) -> str:
    if not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidInput(f"alias {alias[:80]!r} is not a valid alias name: {ALIAS_RULE}")
    return alias


@dataclass(frozen=True)
class AliasMove:
    """One assignment as the API shows it (``version`` None: withdrawn)."""

    sequence: int
    version: int | None
    assigned_at: datetime
    assigned_by: str
    signer_full_name: str
    reason: str
    change_control: str


@dataclass(frozen=True)
class AliasNow:
    """An alias's current target (``version`` None: withdrawn) with its status now."""

    alias: str
    version: int | None
    status: str | None
    qualified: bool
    assigned_at: datetime
    assigned_by: str
    change_control: str


@dataclass(frozen=True)
class AliasHistory:
    model: str
    alias: str
    at: datetime | None
    version: int | None  # the version named at ``at`` (or now); None: none then
    history: list[AliasMove]


def _move_view(row: AliasAssignment, numbers: dict[uuid.UUID, ModelVersion]) -> AliasMove:
    return AliasMove(
        sequence=row.sequence,
        version=numbers[row.version_id].version if row.version_id is not None else None,
        assigned_at=row.assigned_at,
        assigned_by=row.signer_username,
        signer_full_name=row.signer_full_name,
        reason=row.reason,
        change_control=row.change_control,
    )


def _append(
    session: Session,
    model: SoftSensorModel,
    alias: str,
    target: ModelVersion | None,
    *,
    actor: User,
    reason: str,
    change_control: str,
) -> AliasAssignment:
    """Append the move under the model row lock (held by the caller) and audit it."""
    previous = alias_rows.newest(session, model.id, alias)
    before_version: int | None = None
    if previous is not None and previous.version_id is not None:
        old = model_rows.version_by_id(session, previous.version_id)
        before_version = old.version if old is not None else None
    target_id = target.id if target is not None else None
    if previous is not None and previous.version_id == target_id:
        named = f"names v{before_version}" if target is not None else "is withdrawn"
        raise Conflict(f"alias {alias!r} of {model.name} already {named}: nothing to move")
    if previous is None and target is None:
        raise NotFound(f"model {model.name!r} has no alias {alias!r} to withdraw")
    row = AliasAssignment(
        model_id=model.id,
        alias=alias,
        sequence=(previous.sequence if previous is not None else 0) + 1,
        version_id=target_id,
        assigned_at=utcnow(),
        assigned_by_id=actor.id,
        signer_username=actor.username,
        signer_full_name=actor.full_name,
        reason=reason,
        change_control=change_control,
    )
    alias_rows.add(session, row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.alias_move,
        entity_type=AuditEntityType.alias,
        entity_id=f"{model.name}/{alias}",
        reason=reason,
        before={"version": before_version, "sequence": previous.sequence if previous else None},
        after={
            "assignment_id": row.id,
            "model": model.name,
            "alias": alias,
            "sequence": row.sequence,
            "version": target.version if target is not None else None,
            "version_id": target_id,
            "change_control": change_control,
            "signer_full_name": actor.full_name,
        },
    )
    return row


@dataclass(frozen=True)
class PreparedMove:
    """A move checked and ready: the model (row locked) and its target version."""

    model: SoftSensorModel
    alias: str
    target: ModelVersion | None


def prepare_move(
    session: Session, model_name: str, alias: str, version: int | None
) -> PreparedMove:
    """Check a move before the password is asked: the alias name (422), the model and
    version (404, taking the model row lock), the target qualified (409)."""
    check_alias_name(alias)
    model = models_service.get_model(session, model_name, for_update=True)
    target: ModelVersion | None = None
    if version is not None:
        target = model_rows.version(session, model.id, version)
        if target is None:
            raise NotFound(f"model {model_name!r} has no version {version}")
        if not is_qualified(target.status, target.review_due_at):
            state = target.status.value
            if target.review_due_at is not None and target.review_due_at <= utcnow():
                state += f", periodic review due since {target.review_due_at:%Y-%m-%d}"
            raise Conflict(
                f"{model_name} v{version} is {state} (not qualified): an alias names only an "
                "approved or requalified version whose review date has not passed"
            )
    return PreparedMove(model, alias, target)


def move(
    session: Session,
    prepared: PreparedMove,
    *,
    actor: User,
    reason: str,
    change_control: str,
) -> AliasAssignment:
    """Append the checked move (the caller re-authenticated ``actor``)."""
    return _append(
        session,
        prepared.model,
        prepared.alias,
        prepared.target,
        actor=actor,
        reason=reason,
        change_control=change_control,
    )


def assign_for_seed(
    session: Session,
    *,
    model_name: str,
    alias: str,
    version: int,
    actor: User,
    reason: str,
    change_control: str,
) -> AliasAssignment:
    """The demo seed's move (``ssreg demo``): the same checks and rows as a QA move, without
    the password prompt (the seed acts as the demo QA account, created in the same unit)."""
    prepared = prepare_move(session, model_name, alias, version)
    return move(session, prepared, actor=actor, reason=reason, change_control=change_control)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def current_aliases(session: Session, model: SoftSensorModel) -> list[AliasNow]:
    """Every alias of the model with what it names now, by name (withdrawn ones included,
    with ``version`` None)."""
    rows = alias_rows.newest_of_model(session, model.id)
    versions = model_rows.versions_by_ids(session, (r.version_id for r in rows))
    out = []
    for r in rows:
        v = versions.get(r.version_id) if r.version_id is not None else None
        out.append(
            AliasNow(
                alias=r.alias,
                version=v.version if v is not None else None,
                status=v.status.value if v is not None else None,
                qualified=v is not None and is_qualified(v.status, v.review_due_at),
                assigned_at=r.assigned_at,
                assigned_by=r.signer_username,
                change_control=r.change_control,
            )
        )
    return out


def history(
    session: Session, model: SoftSensorModel, alias: str, *, at: datetime | None = None
) -> AliasHistory:
    """Every move of the alias (oldest first) and the version it named at ``at`` (now when
    ``at`` is None): None before its first move or while withdrawn. 404 for an alias never
    assigned."""
    check_alias_name(alias)
    if at is not None and at.tzinfo is None:
        raise InvalidInput("at needs a time zone, e.g. 2026-03-03T12:00:00Z")
    rows = alias_rows.moves(session, model.id, alias)
    if not rows:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}")
    numbers = model_rows.versions_by_ids(session, (r.version_id for r in rows))
    moves = [_move_view(r, numbers) for r in rows]
    named: int | None = None
    for m in moves:
        if at is None or m.assigned_at <= at:
            named = m.version
    return AliasHistory(model.name, alias, at, named, moves)


def aliases_of_versions(
    session: Session, versions: Sequence[ModelVersion]
) -> dict[uuid.UUID, list[str]]:
    """The aliases naming each version now, by version id (one query for any number)."""
    return alias_rows.current_by_version(session, [v.id for v in versions])
