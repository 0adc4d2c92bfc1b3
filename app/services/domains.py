"""Measurement domains: one probe on one instrument at one scale and site."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Domain, User
from app.errors import Conflict, NotFound
from app.schemas.datasets import DomainCreate
from app.services import audit


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
    if session.scalar(select(Domain.id).where(Domain.name == data.name)) is not None:
        raise Conflict(f"domain {data.name!r} already exists")
    domain = Domain(
        name=data.name,
        instrument=data.instrument,
        probe_serial=data.probe_serial,
        scale=data.scale,
        site=data.site,
        description=data.description,
        created_by_id=actor.id,
    )
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
    domain = session.scalars(select(Domain).where(Domain.name == name)).one_or_none()
    if domain is None:
        raise NotFound(f"domain {name!r} does not exist")
    return domain


def list_domains(session: Session) -> list[Domain]:
    return list(session.scalars(select(Domain).order_by(Domain.name)))


def describe_domains(session: Session, domains: list[Domain]) -> list[dict[str, Any]]:
    """API views of ``domains``, with the creators' user names (one query)."""
    ids = {d.created_by_id for d in domains}
    if not ids:
        return []
    names = {
        row.id: row.username
        for row in session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    }
    return [
        domain_snapshot(d) | {"created_at": d.created_at, "created_by": names.get(d.created_by_id)}
        for d in domains
    ]


def describe_domain(session: Session, domain: Domain) -> dict[str, Any]:
    return describe_domains(session, [domain])[0]
