from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AuditReader, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.params import Limit, Since, Until, UserFilter
from app.db.repositories.audit import EventFilter
from app.enums import AuditAction, AuditEntityType, ReconcileMode
from app.schemas.audit import AuditEventRead, AuditPage, ChainVerification
from app.schemas.common import ERRORS, INT32_MAX, NOT_FOUND, NoNul
from app.services import audit as audit_service
from app.services import audit_verify
from app.services import transfers as transfers_service
from app.telemetry import metrics

router = APIRouter(prefix="/audit", tags=["audit"], route_class=StrictJSONRoute)


@router.get("", response_model=AuditPage, responses={**ERRORS, **NOT_FOUND})
def list_audit(
    session: SessionDep,
    _: AuditReader,
    entity_type: AuditEntityType | None = None,
    entity_id: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the entity's UUID (a user's events: also the user name tried at a "
            "failed login); with entity_type=transfer also the transfer's number",
        ),
        NoNul,
    ] = None,
    actor: UserFilter = None,
    action: AuditAction | None = None,
    since: Since = None,
    until: Until = None,
    cursor: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="seq of the last event seen")
    ] = None,
    limit: Limit = 100,
) -> AuditPage:
    """Audit events in sequence order, ``limit`` at a time. Roles: qa, auditor, admin."""
    entity_ids = None
    if entity_id is not None:
        if entity_type is AuditEntityType.transfer:
            entity_id = str(transfers_service.get_transfer(session, entity_id).id)
        entity_ids = (entity_id,)
    where = EventFilter(
        entity_type=entity_type,
        entity_ids=entity_ids,
        actor=actor,
        action=action,
        since=since,
        until=until,
    )
    events, next_cursor = audit_service.list_events(
        session, where=where, after_seq=cursor, limit=limit
    )
    return AuditPage(
        events=[AuditEventRead.model_validate(e) for e in events], next_cursor=next_cursor
    )


@router.get("/verify", response_model=ChainVerification, responses=ERRORS)
def verify(
    session: SessionDep,
    _: AuditReader,
    reconcile: Annotated[
        ReconcileMode,
        Query(
            description="``incremental``: compare the rows written since the last recorded "
            "full reconciliation (``ssreg audit verify --full --record``) with their audited "
            "state, its cost grows with the events since that run (everything when none is "
            "recorded); ``full``: every record row and every audited state, its cost grows "
            "with the history; ``none``: the chain only"
        ),
    ] = ReconcileMode.incremental,
) -> ChainVerification:
    """The chain from its last signed checkpoint to the head (the checkpoints' signatures,
    the head not behind the newest checkpoint of the file kept outside the database) and the
    reconciliation of the records with their audited states; ``reconciliation.scope`` and
    ``not_checked`` say what was compared, ``last_full_reconciliation`` when everything last
    was. ``ssreg audit verify --full`` re-checks the whole chain, every checkpoint and every
    record. Roles: qa, auditor, admin."""
    report = audit_verify.verify(session, reconciliation=reconcile)
    metrics.record_chain_verification(valid=report.valid, events=report.head_seq, at=time.time())
    return audit_verify.describe(report)
