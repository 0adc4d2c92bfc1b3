"""Measurement domains: one probe on one instrument at one scale and site."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Domain, User
from app.db.repositories import domains as domain_rows
from app.db.repositories import users as user_rows
from app.errors import Conflict, NotFound
from app.schemas.common import read_from
from app.schemas.datasets import DomainCreate, DomainRead
from app.services import audit
from app.services.paging import decode_name_cursor, encode_name_cursor, next_page


def domain_snapshot(domain: Domain) -> dict[str, Any]:
    return {
        "id": domain.id,
        "name": domain.name,
        "instrument": domain.instrument,
        "probe_serial": domain.probe_serial,
        "scale": domain.scale,
        "site": domain.site,
        "description": domain.description,
    }


def create_domain(session: Session, *, data: DomainCreate, actor: User) -> Domain:
    """Register a domain and its audit event in the caller's transaction."""
    if domain_rows.name_taken(session, data.name):
        raise Conflict(f"domain {data.name!r} already exists")
    domain = Domain(**data.model_dump(exclude={"reason"}), created_by_id=actor.id)
    try:
        # A concurrent request may insert the same name between the check and the flush.
        with session.begin_nested():
            session.add(domain)
            session.flush()  # ids now; the caller commits
    except IntegrityError:
        raise Conflict(f"domain {data.name!r} already exists") from None
    audit.record(
        session,
        actor=actor,
        action="domain.create",
        entity_type="domain",
        entity_id=domain.id,
        reason=data.reason,
        after=domain_snapshot(domain),
    )
    return domain


def get_domain(session: Session, name: str) -> Domain:
    domain = domain_rows.by_name(session, name)
    if domain is None:
        raise NotFound(f"domain {name!r} does not exist")
    return domain


def list_domains(
    session: Session, *, cursor: str | None = None, limit: int | None = None
) -> tuple[list[Domain], str | None]:
    """Domains in name order, ``limit`` at a time (None: all), and the next page's cursor."""
    after = decode_name_cursor(cursor) if cursor is not None else None
    rows = domain_rows.by_name_page(
        session, after=after, limit=None if limit is None else limit + 1
    )
    page, last = next_page(rows, limit)
    return page, None if last is None else encode_name_cursor(last.name)


def describe_domains(session: Session, domains: list[Domain]) -> list[DomainRead]:
    """API views of ``domains``, with the creators' user names (one query)."""
    names = user_rows.usernames(session, (d.created_by_id for d in domains))
    return [read_from(DomainRead, d, created_by=names.get(d.created_by_id, "?")) for d in domains]


def describe_domain(session: Session, domain: Domain) -> DomainRead:
    return describe_domains(session, [domain])[0]
