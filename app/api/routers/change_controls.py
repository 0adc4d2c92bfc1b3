"""Change-control references: the list, everything under one, and the offline-verifiable
export bundle. Roles: qa, auditor, admin. Reading changes nothing (no audit event)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.api.deps import AuditReader, SessionDep, StoreDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import Cursor, Limit
from app.schemas.change_controls import ChangeControlRead, ChangeControlSummary
from app.schemas.common import ERRORS, NOT_FOUND, ErrorBody, NoNul
from app.services import change_controls as cc_service

router = APIRouter(prefix="/change-controls", tags=["change control"], route_class=StrictJSONRoute)

# ``path``: a reference may contain '/' (sent as %2F); the export route is matched first.
Ref = Annotated[
    str,
    Path(max_length=100, description="the change-control reference", examples=["CC-2026-0042"]),
    NoNul,
]


@router.get("", response_model=list[ChangeControlSummary], responses=ERRORS)
def list_change_controls(
    request: Request,
    response: Response,
    session: SessionDep,
    _: AuditReader,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> list[ChangeControlSummary]:
    """Every change-control reference in use (on transfers, signatures, lifecycle events,
    alias moves, domain events) with its rows per kind and first and last time, most recent
    activity first, ``limit`` at a time. When more follow, the ``Link`` header (RFC 8288)
    holds the next page's URL, ``rel="next"``."""
    page, next_cursor = cc_service.list_references(session, cursor=cursor, limit=limit)
    if next_cursor is not None:
        set_next_link(request, response, cursor=next_cursor)
    return page


@router.get(
    "/{ref:path}/export",
    response_class=Response,
    responses={
        **ERRORS,
        **NOT_FOUND,
        500: {"model": ErrorBody, "description": "a referenced dataset or artifact is corrupt"},
        200: {"content": {"application/zip": {}}, "description": "the bundle"},
    },
)
def export_change_control(
    ref: Ref, session: SessionDep, store: StoreDep, _: AuditReader
) -> Response:
    """A zip of everything under the reference — records and signatures as canonical JSON,
    the audit events with their chain segment, the sha256 of every dataset and artifact
    (re-checked against the store), an HTML report, ``manifest.json`` and the stand-alone
    ``verify.py`` — deterministic: the same state gives the same bytes. The manifest's sha256
    is in ``X-Manifest-SHA256``."""
    bundle = cc_service.export(session, store, ref)
    return Response(
        content=bundle.blob,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{bundle.filename}"',
            "X-Manifest-SHA256": bundle.manifest_sha256,
        },
    )


@router.get("/{ref:path}", response_model=ChangeControlRead, responses={**ERRORS, **NOT_FOUND})
def get_change_control(ref: Ref, session: SessionDep, _: AuditReader) -> ChangeControlRead:
    """Everything under the reference: transfers, versions, signatures (with validity),
    lifecycle events, alias moves, domain events and audit events (in sequence order)."""
    return cc_service.get(session, ref)
