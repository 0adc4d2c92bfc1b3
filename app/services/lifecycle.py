"""The ICH Q14 lifecycle of a version: one function makes every status transition.

Trained versions: ``draft -> approved | rejected``, ``approved -> requalification_due ->
approved`` (the periodic review of a trained version; without it an approved version past its
review date could never be qualified again). Transferred versions: ``pending_requalification
-> requalified | rejected``, ``requalified -> requalification_due -> requalified``. Any status
but ``retired`` -> ``retired``.

:func:`transition` checks the table, locks the version row, writes the
:class:`~app.db.models.LifecycleEvent` and its ``model_version.transition`` audit event, and
changes the version's status (and, on approval or requalification, its review date), all in
the caller's transaction; an approval or requalification also records the version's
monitoring settings, which opens a new monitoring window (:mod:`app.services.monitoring_settings`).
Approvals and rejections come from signatures (:mod:`app.services.signatures`); a breached
monitoring rule from :mod:`app.services.monitoring`; the other triggers are here: QA's
explicit trigger, an event on the version's domain, a passed review date (``ssreg lifecycle
run``), retirement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    Domain,
    DomainEvent,
    LifecycleEvent,
    ModelVersion,
    Signature,
    SoftSensorModel,
    User,
)
from app.db.repositories import models as model_rows
from app.db.repositories import signatures as signature_rows
from app.db.repositories import users as user_rows
from app.enums import (
    QUALIFIED_STATUSES,
    AuditAction,
    AuditEntityType,
    DomainEventKind,
    LifecycleTrigger,
    VersionStatus,
)
from app.errors import InvalidInput, InvalidTransition
from app.schemas.common import read_from
from app.schemas.signatures import DomainEventRead, VersionMadeDue
from app.services import audit, monitoring_settings
from app.settings import get_settings

S = VersionStatus
TRAINED: dict[VersionStatus, frozenset[VersionStatus]] = {
    S.draft: frozenset({S.approved, S.rejected, S.retired}),
    S.approved: frozenset({S.requalification_due, S.retired}),
    S.requalification_due: frozenset({S.approved, S.retired}),
    S.rejected: frozenset({S.retired}),
    S.retired: frozenset(),
}
TRANSFERRED: dict[VersionStatus, frozenset[VersionStatus]] = {
    S.pending_requalification: frozenset({S.requalified, S.rejected, S.retired}),
    S.requalified: frozenset({S.requalification_due, S.retired}),
    S.requalification_due: frozenset({S.requalified, S.retired}),
    S.rejected: frozenset({S.retired}),
    S.retired: frozenset(),
}
# What may cause a move into each status.
TRIGGERS: dict[VersionStatus, frozenset[LifecycleTrigger]] = {
    S.approved: frozenset({LifecycleTrigger.signature}),
    S.requalified: frozenset({LifecycleTrigger.signature}),
    S.rejected: frozenset({LifecycleTrigger.signature}),
    S.requalification_due: frozenset(
        {
            LifecycleTrigger.review_date,
            LifecycleTrigger.domain_event,
            LifecycleTrigger.qa_trigger,
            LifecycleTrigger.monitoring,
        }
    ),
    S.retired: frozenset({LifecycleTrigger.retirement}),
}
_ORDER = list(VersionStatus)


def is_transferred(version: ModelVersion) -> bool:
    return version.transfer_id is not None


def allowed(version: ModelVersion) -> frozenset[VersionStatus]:
    """The statuses ``version`` may move to from its current one."""
    table = TRANSFERRED if is_transferred(version) else TRAINED
    return table.get(version.status, frozenset())


def approved_status(version: ModelVersion) -> VersionStatus:
    """What an approving signature makes of the version: approved (trained) or requalified."""
    return S.requalified if is_transferred(version) else S.approved


def label(session: Session, version: ModelVersion) -> str:
    model = session.get(SoftSensorModel, version.model_id)
    assert model is not None  # foreign key
    return f"{model.name} v{version.version}"


def refusal(name: str, version: ModelVersion, to: VersionStatus) -> InvalidTransition:
    """The 409 of an illegal transition: the current state and the allowed ones."""
    options = sorted(allowed(version), key=_ORDER.index)
    kind = "transferred" if is_transferred(version) else "trained"
    return InvalidTransition(
        f"{name} is {version.status.value}: a {kind} version cannot become {to.value} from "
        f"there (allowed from {version.status.value}: "
        f"{', '.join(s.value for s in options) or 'none, it is final'})"
    )


def check(name: str, version: ModelVersion, to: VersionStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``version`` may move to ``to`` now."""
    if to not in allowed(version):
        raise refusal(name, version, to)


def transition(
    session: Session,
    version: ModelVersion,
    *,
    to: VersionStatus,
    trigger: LifecycleTrigger,
    actor: User | str,
    reason: str,
    signature: Signature | None = None,
    domain_event: DomainEvent | None = None,
    change_control: str | None = None,
    review_interval_days: int | None = None,
    now: datetime | None = None,
) -> LifecycleEvent:
    """Move ``version`` to ``to``, recorded and audited in the caller's transaction.

    The version row is locked (and re-read) first, so two transitions of one version
    serialize and the second sees the first's status. Approval and requalification set the
    review date ``now + review_interval_days`` (default the setting).

    Raises
    ------
    InvalidTransition
        ``to`` is not allowed from the version's current status.
    """
    if trigger not in TRIGGERS[to]:
        raise ValueError(f"trigger {trigger.value} cannot move a version to {to.value}")
    signature_rows.lock_version(session, version.id)  # refreshes ``version`` in place
    name = label(session, version)
    check(name, version, to)
    now = now or utcnow()
    before = {"status": version.status, "review_due_at": version.review_due_at}
    if to in QUALIFIED_STATUSES:
        days = review_interval_days or get_settings().review_interval_days
        version.review_due_at = now + timedelta(days=days)
    from_status = version.status
    version.status = to
    event = LifecycleEvent(
        model_version_id=version.id,
        occurred_at=now,
        from_status=from_status,
        to_status=to,
        trigger=trigger,
        signature_id=signature.id if signature is not None else None,
        domain_event_id=domain_event.id if domain_event is not None else None,
        actor_id=actor.id if isinstance(actor, User) else None,
        actor=actor.username if isinstance(actor, User) else actor,
        reason=reason,
        change_control=change_control,
        review_due_at=version.review_due_at if to in QUALIFIED_STATUSES else None,
    )
    signature_rows.add(session, event)  # flushes the version's new status with it
    audit.record(
        session,
        actor=actor,
        action=AuditAction.model_version_transition,
        entity_type=AuditEntityType.model_version,
        entity_id=version.id,
        reason=reason,
        before=before,
        after={
            "version": name,
            "status": to,
            "review_due_at": version.review_due_at,
            "trigger": trigger,
            "lifecycle_event_id": event.id,
            "signature_id": event.signature_id,
            "domain_event_id": event.domain_event_id,
            "change_control": change_control,
        },
    )
    if to in QUALIFIED_STATUSES:  # a new monitoring window opens with this qualification
        monitoring_settings.record_at_qualification(
            session, version, event, actor=actor, label=name
        )
    return event


# --------------------------------------------------------------------------------------------
# Triggers other than signatures
# --------------------------------------------------------------------------------------------


def mark_due(
    session: Session, version: ModelVersion, *, actor: User, reason: str
) -> LifecycleEvent:
    """QA's explicit trigger: an approved or requalified version becomes requalification_due."""
    return transition(
        session,
        version,
        to=S.requalification_due,
        trigger=LifecycleTrigger.qa_trigger,
        actor=actor,
        reason=reason,
    )


def retire(session: Session, version: ModelVersion, *, actor: User, reason: str) -> LifecycleEvent:
    """Retire a version for good (it answers 409 to predictions from then on)."""
    return transition(
        session,
        version,
        to=S.retired,
        trigger=LifecycleTrigger.retirement,
        actor=actor,
        reason=reason,
    )


@dataclass(frozen=True)
class RecordedDomainEvent:
    event: DomainEvent
    transitions: list[LifecycleEvent]


def record_domain_event(
    session: Session,
    domain: Domain,
    *,
    kind: DomainEventKind,
    occurred_at: datetime | None,
    description: str,
    change_control: str | None,
    actor: User,
) -> RecordedDomainEvent:
    """Record something that happened to a domain; every approved or requalified version
    reading it becomes requalification_due (trigger ``domain_event``), in one transaction."""
    now = utcnow()
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise InvalidInput("occurred_at needs a time zone, e.g. 2026-12-01T08:00:00Z")
    if occurred_at is not None and occurred_at > now:
        raise InvalidInput(
            f"occurred_at {occurred_at.isoformat()} is in the future (server time "
            f"{now.isoformat(timespec='seconds')}): record an event once it has happened"
        )
    event = DomainEvent(
        domain_id=domain.id,
        kind=kind,
        occurred_at=occurred_at or now,
        description=description,
        change_control=change_control,
        recorded_at=now,
        recorded_by_id=actor.id,
    )
    signature_rows.add(session, event)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.domain_event,
        entity_type=AuditEntityType.domain_event,
        entity_id=event.id,
        reason=description,
        after={
            "domain": domain.name,
            "domain_id": domain.id,
            "kind": kind,
            "occurred_at": event.occurred_at,
            "change_control": change_control,
        },
    )
    reason = f"{kind.value} on domain {domain.name}: {description}"
    transitions = [
        transition(
            session,
            version,
            to=S.requalification_due,
            trigger=LifecycleTrigger.domain_event,
            actor=actor,
            reason=reason,
            domain_event=event,
            change_control=change_control,
            now=now,
        )
        for version in signature_rows.lock_versions_in_domain(
            session, domain.id, QUALIFIED_STATUSES
        )
    ]
    return RecordedDomainEvent(event, transitions)


def record_due_reviews(
    session: Session, *, actor: str, now: datetime | None = None
) -> list[tuple[str, LifecycleEvent]]:
    """Every approved or requalified version past its review date becomes
    requalification_due (trigger ``review_date``). Idempotent: a version already due is not
    selected again. Returns (version label, transition) pairs."""
    now = now or utcnow()
    done = []
    for version in signature_rows.lock_versions_past_review(session, QUALIFIED_STATUSES, now):
        assert version.review_due_at is not None
        due = version.review_due_at.isoformat(timespec="seconds")
        event = transition(
            session,
            version,
            to=S.requalification_due,
            trigger=LifecycleTrigger.review_date,
            actor=actor,
            reason=f"periodic review date {due} passed",
            now=now,
        )
        done.append((label(session, version), event))
    return done


def describe_domain_events(
    session: Session, domain: Domain, events: Sequence[DomainEvent]
) -> list[DomainEventRead]:
    """Read models of a domain's events with the versions each made due (fixed statements)."""
    transitions = signature_rows.lifecycle_by_domain_events(session, (e.id for e in events))
    versions = model_rows.versions_by_ids(session, (t.model_version_id for t in transitions))
    names = {
        m.id: m.name
        for m in model_rows.models_by_ids(session, (v.model_id for v in versions.values())).values()
    }
    users = user_rows.usernames(session, (e.recorded_by_id for e in events))
    made_due: dict[uuid.UUID, list[VersionMadeDue]] = {}
    for t in transitions:
        v = versions[t.model_version_id]
        assert t.domain_event_id is not None
        made_due.setdefault(t.domain_event_id, []).append(
            VersionMadeDue(
                model=names[v.model_id], version=v.version, id=v.id, from_status=t.from_status
            )
        )
    return [
        read_from(
            DomainEventRead,
            e,
            domain=domain.name,
            recorded_by=users.get(e.recorded_by_id, "?"),
            versions_made_due=made_due.get(e.id, []),
        )
        for e in events
    ]


def domain_events(session: Session, domain: Domain) -> list[DomainEventRead]:
    return describe_domain_events(
        session, domain, signature_rows.domain_events_of(session, domain.id)
    )
