"""Aliases of a model's versions: ``POST /models/{name}/aliases/{alias}`` (QA, signed), the
current aliases and the history. Predictions through an alias: :mod:`app.api.routers.predict`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from app.api.deps import QA, CatalogReader, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.params import AliasName, ModelName
from app.schemas.aliases import AliasHistoryRead, AliasMoveCreate, AliasMoveRead, AliasRead
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND, ErrorBody, UtcDateTime
from app.services import aliases, scopes
from app.services import auth as auth_service
from app.services import models as models_service

router = APIRouter(prefix="/models", tags=["models"], route_class=StrictJSONRoute)


@router.post(
    "/{name}/aliases/{alias}",
    status_code=status.HTTP_201_CREATED,
    response_model=AliasHistoryRead,
    responses={**ERRORS, **NOT_FOUND, **CONFLICT, 401: {"model": ErrorBody}},
)
def move_alias(
    name: ModelName, alias: AliasName, body: AliasMoveCreate, session: SessionDep, actor: QA
) -> AliasHistoryRead | JSONResponse:
    """Point the alias at a qualified version (approved or requalified, review date not
    passed; else 409), or withdraw it (``version`` null). A signed QA action: user name and
    password entered again; a wrong one is a 401 that counts towards the lockout and is
    audited (committed). Appends one move to the alias's history (nothing is overwritten),
    audited ``alias.move`` with the version before and after. Role: qa."""
    prepared = aliases.prepare_move(session, name, alias, body.version)
    if not auth_service.reauthenticate(
        session, actor, username=body.username, password=body.password
    ):
        return JSONResponse(
            status_code=status.HTTP_401_UNAUTHORIZED,
            content={
                "error": "invalid_credentials",
                "detail": "re-authentication failed: wrong user name or password, or the "
                "account is locked; the alias was not moved",
            },
        )
    aliases.move(
        session, prepared, actor=actor, reason=body.reason, change_control=body.change_control
    )
    return _history(aliases.history(session, prepared.model, alias))


def _history(found: aliases.AliasHistory) -> AliasHistoryRead:
    return AliasHistoryRead(
        model=found.model,
        alias=found.alias,
        at=found.at,
        version=found.version,
        history=[AliasMoveRead.model_validate(m, from_attributes=True) for m in found.history],
    )


@router.get("/{name}/aliases", response_model=list[AliasRead], responses={**ERRORS, **NOT_FOUND})
def list_aliases(name: ModelName, session: SessionDep, reader: CatalogReader) -> list[AliasRead]:
    """The model's aliases and the version each names now (withdrawn ones with ``version``
    null), with that version's status now. Roles: any (plant: models within its scope)."""
    model = models_service.get_model(session, name)
    scopes.check_model(session, scopes.read_scope(session, reader), model)
    return [
        AliasRead.model_validate(a, from_attributes=True)
        for a in aliases.current_aliases(session, model)
    ]


@router.get(
    "/{name}/aliases/{alias}", response_model=AliasHistoryRead, responses={**ERRORS, **NOT_FOUND}
)
def get_alias(
    name: ModelName,
    alias: AliasName,
    session: SessionDep,
    reader: CatalogReader,
    at: Annotated[
        UtcDateTime | None,
        Query(description="with a time zone: the version the alias named then (default: now)"),
    ] = None,
) -> AliasHistoryRead:
    """Which version the alias named at ``at`` (now if absent) and its full history: every
    move with version, time, signer, reason and change control. ``version`` is null when the
    alias named no version then (before its first move, or withdrawn); an alias never
    assigned is a 404. Roles: any (plant: models within its scope)."""
    model = models_service.get_model(session, name)
    scopes.check_model(session, scopes.read_scope(session, reader), model)
    return _history(aliases.history(session, model, alias, at=at))
