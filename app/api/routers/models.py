from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.api.deps import CatalogReader, Developer, Reader, SessionDep, StoreDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import Cursor, Limit, ModelName, VersionNumber
from app.schemas.common import CONFLICT, ERRORS, INT32_MAX, NOT_FOUND
from app.schemas.models import (
    LineageRead,
    ModelVersionCreate,
    ModelVersionRead,
    SoftSensorModelCreate,
    SoftSensorModelRead,
)
from app.services import models as models_service
from app.services import scopes

router = APIRouter(prefix="/models", tags=["models"], route_class=StrictJSONRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SoftSensorModelRead,
    responses={**ERRORS, **CONFLICT},
)
def create_model(
    body: SoftSensorModelCreate, session: SessionDep, actor: Developer
) -> SoftSensorModelRead:
    """Register a named soft sensor (analyte and units); versions are trained separately."""
    model = models_service.create_model(session, data=body, actor=actor)
    return models_service.describe_model(session, model)


@router.get("", response_model=list[SoftSensorModelRead], responses=ERRORS)
def list_models(
    request: Request,
    response: Response,
    session: SessionDep,
    reader: CatalogReader,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> list[SoftSensorModelRead]:
    """Models in name order (plant: those within its scope), ``limit`` at a time. When more
    follow, the ``Link`` header (RFC 8288) holds the next page's URL, ``rel="next"``."""
    shown, next_cursor = scopes.list_visible_models(
        session, scopes.read_scope(session, reader), cursor=cursor, limit=limit
    )
    if next_cursor is not None:
        set_next_link(request, response, cursor=next_cursor)
    return models_service.describe_models(session, shown)


@router.get("/{name}", response_model=SoftSensorModelRead, responses={**ERRORS, **NOT_FOUND})
def get_model(name: ModelName, session: SessionDep, reader: CatalogReader) -> SoftSensorModelRead:
    """The model (plant: 403 outside its scope)."""
    model = models_service.get_model(session, name)
    scopes.check_model(session, scopes.read_scope(session, reader), model)
    return models_service.describe_model(session, model)


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelVersionRead,
    responses={**ERRORS, **NOT_FOUND},
)
def train_version(
    name: ModelName,
    body: ModelVersionCreate,
    session: SessionDep,
    store: StoreDep,
    actor: Developer,
) -> ModelVersionRead:
    """Train a new version server-side from a pinned dataset; metrics are computed here."""
    version = models_service.train_version(session, store, model_name=name, data=body, actor=actor)
    return models_service.describe_version(session, version)


@router.get(
    "/{name}/versions", response_model=list[ModelVersionRead], responses={**ERRORS, **NOT_FOUND}
)
def list_versions(
    request: Request,
    response: Response,
    name: ModelName,
    session: SessionDep,
    reader: CatalogReader,
    after: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="list versions numbered above")
    ] = None,
    limit: Limit = 100,
) -> list[ModelVersionRead]:
    """The model's versions in number order (plant: those within its scope), ``limit`` at a
    time. When more follow, the ``Link`` header (RFC 8288) holds the next page's URL,
    ``rel="next"``."""
    scope = scopes.read_scope(session, reader)
    rows = scopes.list_visible_versions(session, scope, name, after=after, limit=limit + 1)
    if len(rows) > limit:
        rows = rows[:limit]
        set_next_link(request, response, after=rows[-1].version)
    return models_service.describe_versions(session, rows)


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelVersionRead,
    responses={**ERRORS, **NOT_FOUND},
)
def get_version(
    name: ModelName, version: VersionNumber, session: SessionDep, reader: CatalogReader
) -> ModelVersionRead:
    """The version card, with the aliases naming it now (plant: 403 outside its scope)."""
    row = models_service.get_version(session, name, version)
    scopes.check_version(session, scopes.read_scope(session, reader), row)
    return models_service.describe_version(session, row)


@router.get(
    "/{name}/versions/{version}/lineage",
    response_model=LineageRead,
    responses={**ERRORS, **NOT_FOUND},
)
def get_lineage(
    name: ModelName, version: VersionNumber, session: SessionDep, _: Reader
) -> LineageRead:
    """The version's lineage as a graph: datasets, versions and transfers, with what it was
    made from (ancestors) and what was made from it (descendants)."""
    return models_service.lineage(session, name, version)


@router.get(
    "/{name}/versions/{version}/artifact",
    response_class=Response,
    responses={**ERRORS, **NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}},
)
def get_artifact(
    name: ModelName, version: VersionNumber, session: SessionDep, store: StoreDep, _: Reader
) -> Response:
    """The artifact bytes (.npz, numeric only), re-hashed on read; sha256 in a header."""
    row = models_service.get_version(session, name, version)
    blob = store.get(row.artifact_sha256)
    return Response(
        content=blob,
        media_type="application/octet-stream",
        headers={
            "X-Content-SHA256": row.artifact_sha256,
            "Content-Disposition": f'attachment; filename="{name}-v{version}.npz"',
        },
    )
