from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status

from app.api.deps import Developer, Reader, SessionDep, StoreDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import DomainFilter, Limit, ModelFilter, TransferRef
from app.enums import TransferStatus
from app.schemas.common import CONFLICT, ERRORS, INT32_MAX, NOT_FOUND, ErrorBody, NoNul, Reason
from app.schemas.datasets import AxisUnit, ColumnName, SpectralPrefix
from app.schemas.transfers import StandardsForm, TransferCancel, TransferCreate, TransferRead
from app.services import transfers as transfers_service

router = APIRouter(prefix="/transfers", tags=["transfers"], route_class=StrictJSONRoute)

UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **NOT_FOUND,
    **CONFLICT,
    413: {"model": ErrorBody, "description": "file larger than the upload limit"},
    415: {"model": ErrorBody, "description": "not a .parquet or .csv file"},
}


def _upload(file: UploadFile | None) -> transfers_service.Upload | None:
    if file is None:
        return None
    return transfers_service.Upload(blob=file.file.read(), filename=file.filename)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferRead,
    responses={**ERRORS, **NOT_FOUND},
)
def open_transfer(body: TransferCreate, session: SessionDep, actor: Developer) -> TransferRead:
    """Open a transfer with its plan; it then awaits the target probe's standards."""
    transfer = transfers_service.open_transfer(session, data=body, actor=actor)
    return transfers_service.describe_transfer(session, transfer)


@router.post(
    "/{id}/cancel",
    response_model=TransferRead,
    responses={**ERRORS, **NOT_FOUND, **CONFLICT},
)
def cancel_transfer(
    ref: TransferRef, body: TransferCancel, session: SessionDep, actor: Developer
) -> TransferRead:
    """Cancel a transfer still awaiting its standards, with a reason; the record is kept
    (status ``cancelled``, immutable) and the cancellation audited. 409 once it is completed
    or cancelled."""
    transfer = transfers_service.cancel_transfer(session, str(ref), reason=body.reason, actor=actor)
    return transfers_service.describe_transfer(session, transfer)


@router.post(
    "/{id}/standards",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferRead,
    responses=UPLOAD_ERRORS,
)
def upload_standards(
    ref: TransferRef,
    session: SessionDep,
    store: StoreDep,
    actor: Developer,
    target_standards: Annotated[
        UploadFile,
        File(description="target-probe spectra of the standards, with sample ids (and references)"),
    ],
    reason: Annotated[Reason, Form()],
    source_standards: Annotated[
        UploadFile | None,
        File(
            description="source-probe spectra of the same samples; default: rows of the source "
            "version's training dataset with the same sample ids"
        ),
    ] = None,
    validation: Annotated[
        UploadFile | None,
        File(description="target-probe spectra with reference values, none of them a standard"),
    ] = None,
    reference_column: Annotated[ColumnName | None, Form()] = None,
    sample_id_column: Annotated[ColumnName, Form()] = "sample_id",
    spectral_prefix: Annotated[SpectralPrefix | None, Form()] = None,
    axis_unit: Annotated[AxisUnit | None, Form()] = None,
) -> TransferRead:
    """Run the transfer on the uploaded standards: pin the files, select and pair standards,
    fit, compute naive and post-transfer metrics and the verdict, store the artifact and create
    the target version (``pending_requalification``) — in one transaction, or nothing at all."""
    form = StandardsForm(
        reference_column=reference_column,
        sample_id_column=sample_id_column,
        spectral_prefix=spectral_prefix,
        axis_unit=axis_unit,
        reason=reason,
    )
    target = _upload(target_standards)
    assert target is not None
    files = transfers_service.StandardsFiles(
        target_standards=target,
        source_standards=_upload(source_standards),
        validation=_upload(validation),
    )
    transfer = transfers_service.upload_standards(
        session, store, ref=ref, files=files, form=form, actor=actor
    )
    return transfers_service.describe_transfer(session, transfer)


@router.get("", response_model=list[TransferRead], responses={**ERRORS, **NOT_FOUND})
def list_transfers(
    request: Request,
    response: Response,
    session: SessionDep,
    _: Reader,
    status: Annotated[TransferStatus | None, Query()] = None,
    model: ModelFilter = None,
    domain: DomainFilter = None,
    change_control: Annotated[str | None, Query(max_length=100), NoNul] = None,
    verdict: Annotated[
        transfers_service.Verdict | None,
        Query(description="completed transfers whose acceptance verdict is this"),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="list transfers numbered above")
    ] = None,
    limit: Limit = 100,
) -> list[TransferRead]:
    """Transfer records in number order, ``limit`` at a time. When more follow, the
    ``Link`` header (RFC 8288) holds the next page's URL, ``rel="next"``."""
    rows = transfers_service.list_transfers(
        session,
        status=status,
        model=model,
        domain=domain,
        change_control=change_control,
        verdict=verdict,
        after=after,
        limit=limit + 1,
    )
    if len(rows) > limit:
        rows = rows[:limit]
        set_next_link(request, response, after=rows[-1].number)
    return transfers_service.describe_transfers(session, rows)


@router.get("/{id}", response_model=TransferRead, responses={**ERRORS, **NOT_FOUND})
def get_transfer(ref: TransferRef, session: SessionDep, _: Reader) -> TransferRead:
    return transfers_service.describe_transfer(
        session, transfers_service.get_transfer(session, ref)
    )
