"""Electronic signatures, the version lifecycle (retire, requalification due, history) and
domain events. A wrong password at signing or retiring is committed (audited, counted
towards the lockout) and answered 401 in the envelope, like a failed login."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from app.api.deps import QA, DeveloperOrQA, Reader, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.params import DomainName, ModelName, TransferRef, VersionNumber
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND, ErrorBody
from app.schemas.models import ModelVersionRead
from app.schemas.signatures import (
    DomainEventCreate,
    DomainEventRead,
    LifecycleEventRead,
    RequalificationTrigger,
    SignatureCreate,
    SignatureCreated,
    VersionRetire,
)
from app.services import auth, domains, lifecycle, models, signatures

router = APIRouter(route_class=StrictJSONRoute)
_SIGN_ERRORS = {**ERRORS, **NOT_FOUND, **CONFLICT, 401: {"model": ErrorBody}}


def _invalid_credentials() -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_401_UNAUTHORIZED,
        content={
            "error": "invalid_credentials",
            "detail": "the user name or password entered is wrong, or the account is locked: "
            "nothing was signed",
        },
    )


@router.post(
    "/transfers/{id}/signatures",
    tags=["transfers"],
    status_code=status.HTTP_201_CREATED,
    response_model=SignatureCreated,
    responses=_SIGN_ERRORS,
)
def sign_transfer(
    ref: TransferRef, body: SignatureCreate, session: SessionDep, actor: DeveloperOrQA
) -> SignatureCreated | JSONResponse:
    """Sign a completed transfer record (password entered again): ``authored`` (its
    developer), ``reviewed``, ``approved`` (requalifies the target version) or ``rejected``
    (QA, not on a record they created or completed)."""
    signed = signatures.sign_transfer(session, ref, data=body, actor=actor)
    return _invalid_credentials() if signed is None else signed.read()


@router.post(
    "/models/{name}/versions/{version}/signatures",
    tags=["models"],
    status_code=status.HTTP_201_CREATED,
    response_model=SignatureCreated,
    responses=_SIGN_ERRORS,
)
def sign_version(
    name: ModelName,
    version: VersionNumber,
    body: SignatureCreate,
    session: SessionDep,
    actor: DeveloperOrQA,
) -> SignatureCreated | JSONResponse:
    """Sign a version (password entered again): ``approved`` approves a trained draft or
    requalifies a version that is due (the comment gives the evidence); ``rejected`` rejects
    a draft. A pending transferred version is signed through its transfer record."""
    signed = signatures.sign_version(session, name, version, data=body, actor=actor)
    return _invalid_credentials() if signed is None else signed.read()


@router.post(
    "/models/{name}/versions/{version}/retire",
    tags=["models"],
    response_model=ModelVersionRead,
    responses=_SIGN_ERRORS,
)
def retire_version(
    name: ModelName, version: VersionNumber, body: VersionRetire, session: SessionDep, actor: QA
) -> ModelVersionRead | JSONResponse:
    """Retire a version for good, with a reason and the password entered again (QA)."""
    row = models.get_version(session, name, version)
    if not auth.reauthenticate(session, actor, username=body.username, password=body.password):
        return _invalid_credentials()
    lifecycle.retire(session, row, actor=actor, reason=body.reason)
    return models.describe_version(session, row)


@router.post(
    "/models/{name}/versions/{version}/requalification-due",
    tags=["models"],
    response_model=ModelVersionRead,
    responses={**ERRORS, **NOT_FOUND, **CONFLICT},
)
def mark_requalification_due(
    name: ModelName,
    version: VersionNumber,
    body: RequalificationTrigger,
    session: SessionDep,
    actor: QA,
) -> ModelVersionRead:
    """QA's explicit trigger: an approved or requalified version must be requalified (by a new
    approved signature on it) before it is qualified again."""
    row = models.get_version(session, name, version)
    lifecycle.mark_due(session, row, actor=actor, reason=body.reason)
    return models.describe_version(session, row)


@router.get(
    "/models/{name}/versions/{version}/lifecycle",
    tags=["models"],
    response_model=list[LifecycleEventRead],
    responses={**ERRORS, **NOT_FOUND},
)
def get_lifecycle(
    name: ModelName, version: VersionNumber, session: SessionDep, _: Reader
) -> list[LifecycleEventRead]:
    """The version's status transitions, oldest first, with the signatures behind them."""
    return signatures.lifecycle_history(session, name, version)


@router.post(
    "/domains/{name}/events",
    tags=["domains"],
    status_code=status.HTTP_201_CREATED,
    response_model=DomainEventRead,
    responses={**ERRORS, **NOT_FOUND},
)
def record_domain_event(
    name: DomainName, body: DomainEventCreate, session: SessionDep, actor: DeveloperOrQA
) -> DomainEventRead:
    """Something happened to the domain (probe replaced, instrument serviced …): every
    approved or requalified version reading it becomes requalification_due."""
    domain = domains.get_domain(session, name)
    recorded = lifecycle.record_domain_event(
        session,
        domain,
        kind=body.kind,
        occurred_at=body.occurred_at,
        description=body.description,
        change_control=body.change_control,
        actor=actor,
    )
    (read,) = lifecycle.describe_domain_events(session, domain, [recorded.event])
    return read


@router.get(
    "/domains/{name}/events",
    tags=["domains"],
    response_model=list[DomainEventRead],
    responses={**ERRORS, **NOT_FOUND},
)
def list_domain_events(name: DomainName, session: SessionDep, _: Reader) -> list[DomainEventRead]:
    """The domain's events in the order they were recorded, with the versions each made due."""
    return lifecycle.domain_events(session, domains.get_domain(session, name))
