from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.api.deps import Developer, Reader, SessionDep
from app.api.json_body import StrictJSONRoute
from app.api.links import set_next_link
from app.api.params import Cursor, DomainName, Limit
from app.schemas.common import CONFLICT, ERRORS, NOT_FOUND
from app.schemas.datasets import DomainCreate, DomainRead
from app.services import domains as domains_service

router = APIRouter(prefix="/domains", tags=["domains"], route_class=StrictJSONRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DomainRead,
    responses={**ERRORS, **CONFLICT},
)
def create_domain(body: DomainCreate, session: SessionDep, actor: Developer) -> DomainRead:
    """Register a measurement domain: one probe on one instrument at one scale and site."""
    domain = domains_service.create_domain(session, data=body, actor=actor)
    return domains_service.describe_domain(session, domain)


@router.get("", status_code=status.HTTP_200_OK, response_model=list[DomainRead], responses=ERRORS)
def list_domains(
    request: Request,
    response: Response,
    session: SessionDep,
    _: Reader,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> list[DomainRead]:
    """Domains in name order, ``limit`` at a time. When more follow, the ``Link`` header
    (RFC 8288) holds the next page's URL, ``rel="next"``."""
    domains, next_cursor = domains_service.list_domains(session, cursor=cursor, limit=limit)
    if next_cursor is not None:
        set_next_link(request, response, cursor=next_cursor)
    return domains_service.describe_domains(session, domains)


@router.get(
    "/{name}",
    status_code=status.HTTP_200_OK,
    response_model=DomainRead,
    responses={**ERRORS, **NOT_FOUND},
)
def get_domain(name: DomainName, session: SessionDep, _: Reader) -> DomainRead:
    return domains_service.describe_domain(session, domains_service.get_domain(session, name))
