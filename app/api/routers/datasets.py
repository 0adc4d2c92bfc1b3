from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Request, Response, UploadFile, status

from app.api.deps import Developer, Reader, SessionDep, StoreDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import Cursor, DomainFilter, Limit
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND, ErrorBody, Name
from app.schemas.datasets import (
    AxisUnit,
    ColumnName,
    DatasetCreate,
    DatasetName,
    DatasetRead,
    OptionalReason,
    SpectralPrefix,
    Units,
)
from app.services import datasets as datasets_service

router = APIRouter(prefix="/datasets", tags=["datasets"], route_class=StrictJSONRoute)

Sha256Path = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the dataset's stored bytes")
]
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **NOT_FOUND,
    **CONFLICT,
    413: {"model": ErrorBody, "description": "file larger than the upload limit"},
    415: {"model": ErrorBody, "description": "not a .parquet or .csv file"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses={
        200: {"model": DatasetRead, "description": "these exact bytes were already registered"},
        **UPLOAD_ERRORS,
    },
)
def register_dataset(
    response: Response,
    session: SessionDep,
    store: StoreDep,
    actor: Developer,
    file: Annotated[UploadFile, File(description="spectra: .parquet or .csv")],
    name: Annotated[DatasetName, Form()],
    domain: Annotated[Name, Form(description="name of the measurement domain")],
    reference_column: Annotated[ColumnName, Form(examples=["titer_g_L"])],
    units: Annotated[Units, Form(description="units of the reference values")],
    sample_id_column: Annotated[ColumnName | None, Form()] = None,
    spectral_prefix: Annotated[SpectralPrefix, Form()] = "wn_",
    axis_unit: Annotated[
        AxisUnit | None, Form(description="default: cm-1 for prefix wn_, nm for nm_")
    ] = None,
    reason: Annotated[OptionalReason, Form()] = None,
) -> DatasetRead:
    """Validate a spectral table, store its exact bytes and pin the record by their sha256.

    201 for a new dataset; 200 with the existing record when these bytes were already
    registered with the same interpretation.
    """
    data = DatasetCreate(
        name=name,
        domain=domain,
        reference_column=reference_column,
        units=units,
        sample_id_column=sample_id_column,
        spectral_prefix=spectral_prefix,
        axis_unit=axis_unit,
        reason=reason or None,
    )
    dataset, created = datasets_service.register_dataset(
        session, store, blob=file.file.read(), filename=file.filename, data=data, actor=actor
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return datasets_service.describe_dataset(session, dataset)


@router.get(
    "",
    status_code=status.HTTP_200_OK,
    response_model=list[DatasetRead],
    responses={**ERRORS, **NOT_FOUND},
)
def list_datasets(
    request: Request,
    response: Response,
    session: SessionDep,
    _: Reader,
    domain: DomainFilter = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> list[DatasetRead]:
    """Datasets in registration order, ``limit`` at a time. When more follow, the ``Link``
    header (RFC 8288) holds the next page's URL, ``rel="next"``."""
    datasets, next_cursor = datasets_service.list_datasets(
        session, domain=domain, cursor=cursor, limit=limit
    )
    if next_cursor is not None:
        set_next_link(request, response, cursor=next_cursor)
    return datasets_service.describe_datasets(session, datasets)


@router.get(
    "/{sha256}",
    status_code=status.HTTP_200_OK,
    response_model=DatasetRead,
    responses={**ERRORS, **NOT_FOUND},
)
def get_dataset(sha256: Sha256Path, session: SessionDep, _: Reader) -> DatasetRead:
    return datasets_service.describe_dataset(session, datasets_service.get_dataset(session, sha256))


@router.get(
    "/{sha256}/content",
    status_code=status.HTTP_200_OK,
    response_model=None,
    response_class=Response,
    responses={
        200: {
            "description": "the exact stored bytes; their sha256 is in X-Content-SHA256",
            "content": {media: {} for media in datasets_service.MEDIA_TYPES.values()},
        },
        **ERRORS,
        **NOT_FOUND,
    },
)
def get_dataset_content(
    sha256: Sha256Path, session: SessionDep, store: StoreDep, _: Reader
) -> Response:
    dataset, blob = datasets_service.read_content(session, store, sha256)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name).strip("._") or dataset.sha256[:12]
    extension = datasets_service.EXTENSIONS[dataset.file_format]
    return Response(
        content=blob,
        media_type=datasets_service.MEDIA_TYPES[dataset.file_format],
        headers={
            "X-Content-SHA256": dataset.sha256,
            "ETag": f'"{dataset.sha256}"',
            "Content-Disposition": f'attachment; filename="{stem}.{extension}"',
        },
    )
