from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AuditReader, SessionDep
from app.schemas.audit import AuditEventRead, AuditPage, ChainVerification
from app.schemas.common import ERRORS
from app.services import audit as audit_service

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage, responses=ERRORS)
def list_audit(
    session: SessionDep,
    _: AuditReader,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[int | None, Query(ge=0, description="seq of the last event seen")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    events, next_cursor = audit_service.list_events(
        session,
        entity_type=entity_type,
        entity_id=entity_id,
        actor=actor,
        action=action,
        since=since,
        until=until,
        after_seq=cursor,
        limit=limit,
    )
    return AuditPage(
        events=[AuditEventRead.model_validate(e) for e in events], next_cursor=next_cursor
    )


@router.get("/verify", response_model=ChainVerification, responses=ERRORS)
def verify(session: SessionDep, _: AuditReader) -> ChainVerification:
    report = audit_service.verify_chain(session)
    return ChainVerification(
        valid=report.valid,
        events=report.events,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
    )
