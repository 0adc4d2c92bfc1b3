"""``GET /prediction-log``: the ALCOA+ record of prediction calls, for QA and auditors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AuditReader, SessionDep
from app.schemas.common import ERRORS, NOT_FOUND
from app.schemas.predict import PredictionLogEntry, PredictionLogPage
from app.services import prediction_log

router = APIRouter(prefix="/prediction-log", tags=["predictions"])


@router.get("", response_model=PredictionLogPage, responses={**ERRORS, **NOT_FOUND})
def list_prediction_log(
    session: SessionDep,
    _: AuditReader,
    model: str | None = None,
    version: Annotated[int | None, Query(ge=1, description="needs model")] = None,
    caller: Annotated[str | None, Query(description="user name of the caller")] = None,
    flagged: Annotated[
        bool | None,
        Query(description="true: calls with a flagged spectrum; false: calls without"),
    ] = None,
    since: Annotated[datetime | None, Query(description="inclusive; with a time zone")] = None,
    until: Annotated[datetime | None, Query(description="exclusive; with a time zone")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PredictionLogPage:
    """Prediction calls in time order: caller, version, artifact, transfer record, the sha256
    of the input, flag counts and purpose. Roles: qa, auditor, admin."""
    entries, next_cursor = prediction_log.list_entries(
        session,
        model=model,
        version=version,
        caller=caller,
        flagged=flagged,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return PredictionLogPage(
        entries=[
            PredictionLogEntry.model_validate(prediction_log.entry_payload(e)) for e in entries
        ],
        next_cursor=next_cursor,
    )
