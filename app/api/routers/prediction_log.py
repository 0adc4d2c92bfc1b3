"""``GET /prediction-log``: the ALCOA+ record of prediction calls, for QA and auditors (JSON,
or CSV for a spreadsheet)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from app.api.deps import AuditReader, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import Cursor, Limit, ModelFilter, Since, Until, UserFilter
from app.schemas.common import ERRORS, INT32_MAX, NOT_FOUND, NoNul
from app.schemas.predict import PredictionLogPage, PredictionLogRead
from app.services import prediction_log

router = APIRouter(prefix="/prediction-log", tags=["predictions"], route_class=StrictJSONRoute)


class LogFilters:
    """The filters both forms take (a dependency, so they are declared once)."""

    def __init__(
        self,
        model: ModelFilter = None,
        version: Annotated[int | None, Query(ge=1, le=INT32_MAX, description="needs model")] = None,
        transfer: Annotated[
            str | None,
            Query(
                max_length=64,
                description="calls of the version a transfer made: its number or UUID",
            ),
            NoNul,
        ] = None,
        caller: UserFilter = None,
        flagged: Annotated[
            bool | None,
            Query(description="true: calls with a flagged spectrum; false: calls without"),
        ] = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
    ) -> None:
        self.model, self.version, self.transfer = model, version, transfer
        self.caller, self.flagged = caller, flagged
        self.since, self.until, self.cursor = since, until, cursor

    def entries(
        self, session: Session, limit: int
    ) -> tuple[list[prediction_log.LogEntry], str | None]:
        return prediction_log.list_entries(
            session,
            model=self.model,
            version=self.version,
            transfer=self.transfer,
            caller=self.caller,
            flagged=self.flagged,
            since=self.since,
            until=self.until,
            cursor=self.cursor,
            limit=limit,
        )


Filters = Annotated[LogFilters, Depends()]


@router.get("", response_model=PredictionLogPage, responses={**ERRORS, **NOT_FOUND})
def list_prediction_log(
    session: SessionDep,
    _: AuditReader,
    filters: Filters,
    limit: Limit = 100,
) -> PredictionLogPage:
    """Prediction calls in time order: caller, version, alias, artifact, transfer record, the
    sha256 of the input, flag counts, purpose and for_gmp (per call; a call's per-spectrum
    results: ``GET /prediction-log/{id}``). Roles: qa, auditor, admin."""
    entries, next_cursor = filters.entries(session, limit)
    return PredictionLogPage(
        entries=[prediction_log.entry_read(e) for e in entries],
        next_cursor=next_cursor,
    )


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {"description": "CSV, one row per call", "content": {"text/csv": {}}},
        **ERRORS,
        **NOT_FOUND,
    },
)
def export_prediction_log(
    request: Request,
    session: SessionDep,
    _: AuditReader,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> Response:
    """The same rows as CSV, ``limit`` at a time; when more follow, the ``Link`` header
    (RFC 8288) holds the next part's URL, ``rel="next"``. Text cells that a spreadsheet would
    read as a formula are prefixed with ``'``. Roles: qa, auditor, admin."""
    entries, next_cursor = filters.entries(session, limit)
    response = Response(
        content=prediction_log.to_csv(entries),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="prediction-log.csv"'},
    )
    if next_cursor is not None:
        set_next_link(request, response, cursor=next_cursor)
    return response


@router.get("/{log_id}", response_model=PredictionLogRead, responses={**ERRORS, **NOT_FOUND})
def get_prediction_log_entry(
    log_id: uuid.UUID, session: SessionDep, _: AuditReader
) -> PredictionLogRead:
    """One call as the log keeps it, with what it reported: ``results`` (predictions, T²,
    Q, flags and the client's sample ids, per spectrum in request order), their
    ``results_sha256`` (canonical JSON, see the README) and ``results_valid`` (the stored
    results recomputed to that sha256). Roles: qa, auditor, admin."""
    return prediction_log.get_entry(session, log_id)
