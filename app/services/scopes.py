"""Scoped service accounts: what a plant key may call and read.

A service account (role ``plant``) is bound to one or more measurement domains and,
optionally, to a list of models. Each grant appends an :class:`~app.db.models.AccountScope`
row (sequence 1, 2, ... per account, audited ``user.scope``); the newest row is in force and
the older ones are its history (the table is append-only). An account with no row is bound
to no domain: it may call nothing.

Rules for a plant caller:

- predicting (either route) on a version whose domain is not in its scope, or whose model is
  not in its model list (when set), is a 403 naming the domain or the model;
- reading: only the models, versions and aliases within its scope (a model is within it when
  it is in the model list, if there is one, and has a version in one of its domains).
  Everything else (datasets, artifacts, lineage, transfers, domains, audit, prediction log)
  is refused by the routes' role checks.

The prediction path reads the scope in the caller's own query (no cache): a new scope row
bites at the next call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.db.models import AccountScope, ModelVersion, SoftSensorModel, User
from app.db.repositories import domains as domain_rows
from app.db.repositories import models as model_rows
from app.db.repositories import users as user_rows
from app.enums import AuditAction, AuditEntityType, Role
from app.errors import Forbidden, InvalidInput, NotFound
from app.services import audit
from app.services import domains as domains_service
from app.services import models as models_service
from app.services.auth import Caller, CallerScope


@dataclass(frozen=True)
class ScopeView:
    """A scope in force, by names, as the API shows it."""

    sequence: int
    domains: list[str]
    models: list[str] | None
    granted_at: datetime
    granted_by: str | None
    reason: str


def _unbound(username: str) -> Forbidden:
    return Forbidden(
        f"service account {username!r} is bound to no domain: an administrator grants its "
        f"scope (POST /api/v1/users/{username}/scopes)"
    )


# --------------------------------------------------------------------------------------------
# granting
# --------------------------------------------------------------------------------------------


def _scope_rows(
    session: Session, domains: Sequence[str], models: Sequence[str] | None
) -> tuple[list[str], list[str] | None, list[str], list[str] | None]:
    """Domain and model names -> (domain ids, model ids, domain names, model names), sorted
    and without repeats; 404 naming an unknown domain or model, 422 for no domain."""
    names = sorted(set(domains))
    if not names:
        raise InvalidInput("a scope needs at least one domain")
    domain_ids = [str(domains_service.get_domain(session, name).id) for name in names]
    model_names: list[str] | None = None
    model_ids: list[str] | None = None
    if models is not None:
        model_names = sorted(set(models))
        if not model_names:
            raise InvalidInput("models, when given, lists at least one model (omit it for all)")
        model_ids = [str(models_service.get_model(session, name).id) for name in model_names]
    return domain_ids, model_ids, names, model_names


def add_scope(
    session: Session,
    user: User,
    *,
    domains: Sequence[str],
    models: Sequence[str] | None,
    actor: User | str,
    reason: str,
) -> AccountScope:
    """Append ``user``'s next scope row (in force from now), audited ``user.scope`` with the
    previous scope as *before*. The caller holds ``user``'s row lock (or created it)."""
    if user.role is not Role.plant:
        raise InvalidInput(
            f"user {user.username!r} has role {user.role.value}: scopes bind service accounts "
            "(role plant)"
        )
    domain_ids, model_ids, domain_names, model_names = _scope_rows(session, domains, models)
    previous = user_rows.newest_scopes(session, [user.id]).get(user.id)
    session.flush()  # a new user's id and row exist before its scope refers to it
    row = AccountScope(
        user_id=user.id,
        sequence=user_rows.next_scope_sequence(session, user.id),
        domain_ids=domain_ids,
        model_ids=model_ids,
        granted_by_id=actor.id if isinstance(actor, User) else None,
        reason=reason,
    )
    user_rows.add_scope(session, row)
    session.flush()
    before = None
    if previous is not None:
        view = describe_scopes(session, {user.id: previous})[user.id]
        before = {"sequence": view.sequence, "domains": view.domains, "models": view.models}
    audit.record(
        session,
        actor=actor,
        action=AuditAction.user_scope,
        entity_type=AuditEntityType.user,
        entity_id=user.id,
        reason=reason,
        before=before,
        after={
            "username": user.username,
            "sequence": row.sequence,
            "domains": domain_names,
            "models": model_names,
        },
    )
    return row


def grant_scope(
    session: Session,
    username: str,
    *,
    domains: Sequence[str],
    models: Sequence[str] | None,
    actor: User | str,
    reason: str,
) -> User:
    """``POST /users/{username}/scopes``: a new scope row for the service account."""
    user = user_rows.by_username(session, username, for_update=True)
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    add_scope(session, user, domains=domains, models=models, actor=actor, reason=reason)
    return user


# --------------------------------------------------------------------------------------------
# showing
# --------------------------------------------------------------------------------------------


def describe_scopes(
    session: Session, scopes: dict[uuid.UUID, AccountScope]
) -> dict[uuid.UUID, ScopeView]:
    """The scopes by user id with names instead of ids (three queries for any number)."""
    rows = list(scopes.values())
    domain_ids = {uuid.UUID(d) for s in rows for d in s.domain_ids}
    model_ids = {uuid.UUID(m) for s in rows for m in (s.model_ids or ())}
    domain_names = {i: d.name for i, d in domain_rows.by_ids(session, domain_ids).items()}
    model_names = {i: m.name for i, m in model_rows.models_by_ids(session, model_ids).items()}
    granters = user_rows.usernames(session, (s.granted_by_id for s in rows))
    return {
        user_id: ScopeView(
            sequence=s.sequence,
            domains=sorted(domain_names.get(uuid.UUID(d), d) for d in s.domain_ids),
            models=None
            if s.model_ids is None
            else sorted(model_names.get(uuid.UUID(m), m) for m in s.model_ids),
            granted_at=s.granted_at,
            granted_by=granters.get(s.granted_by_id) if s.granted_by_id else None,
            reason=s.reason,
        )
        for user_id, s in scopes.items()
    }


def current_scopes(session: Session, users: Iterable[User]) -> dict[uuid.UUID, ScopeView]:
    """The scope in force of each account that has one."""
    return describe_scopes(session, user_rows.newest_scopes(session, (u.id for u in users)))


# --------------------------------------------------------------------------------------------
# enforcing
# --------------------------------------------------------------------------------------------


def check_call(
    caller: Caller, *, model_id: uuid.UUID, model: str, domain_id: uuid.UUID, domain: str
) -> None:
    """403 unless a plant caller's scope covers the version's domain and model (other roles
    pass). Pure: the scope came with the caller's query."""
    if caller.role is not Role.plant:
        return
    _check(
        caller.username,
        caller.scope,
        model_id=model_id,
        model=model,
        domain_id=domain_id,
        domain=domain,
    )


def _check(
    username: str,
    scope: CallerScope | None,
    *,
    model_id: uuid.UUID,
    model: str,
    domain_id: uuid.UUID,
    domain: str,
) -> None:
    if scope is None:
        raise _unbound(username)
    if str(domain_id) not in scope.domain_ids:
        raise Forbidden(
            f"service account {username!r} is not scoped to domain {domain!r}: {model} "
            f"versions reading {domain} spectra are outside its scope"
        )
    if scope.model_ids is not None and str(model_id) not in scope.model_ids:
        raise Forbidden(f"service account {username!r} is not scoped to model {model!r}")


@dataclass(frozen=True)
class ReadScope:
    """What a reader may see: None fields mean no restriction (every role but plant)."""

    username: str
    scope: CallerScope | None
    restricted: bool

    def allows_version(self, version: ModelVersion) -> bool:
        if not self.restricted:
            return True
        s = self.scope
        return (
            s is not None
            and str(version.domain_id) in s.domain_ids
            and (s.model_ids is None or str(version.model_id) in s.model_ids)
        )


def read_scope(session: Session, user: User) -> ReadScope:
    """The reader's scope: unrestricted for people; a plant account's scope in force."""
    if user.role is not Role.plant:
        return ReadScope(user.username, None, restricted=False)
    row = user_rows.newest_scopes(session, [user.id]).get(user.id)
    scope = (
        None
        if row is None
        else CallerScope(
            frozenset(row.domain_ids),
            None if row.model_ids is None else frozenset(row.model_ids),
        )
    )
    return ReadScope(user.username, scope, restricted=True)


def visible_models(
    session: Session, reader: ReadScope, models: Sequence[SoftSensorModel]
) -> list[SoftSensorModel]:
    """``models`` the reader may see: for a plant account, those in its model list (if any)
    with a version in one of its domains (one query)."""
    if not reader.restricted:
        return list(models)
    s = reader.scope
    if s is None:
        return []
    with_versions = model_rows.models_with_versions_in(
        session, [m.id for m in models], [uuid.UUID(d) for d in s.domain_ids]
    )
    return [
        m
        for m in models
        if m.id in with_versions and (s.model_ids is None or str(m.id) in s.model_ids)
    ]


def list_visible_models(
    session: Session, reader: ReadScope, *, cursor: str | None, limit: int
) -> tuple[list[SoftSensorModel], str | None]:
    """A page of the models ``reader`` may see, in name order, and the next page's cursor.
    The scope narrows the query itself, so a plant account's pages are full pages."""
    if not reader.restricted:
        return models_service.list_models(session, cursor=cursor, limit=limit)
    s = reader.scope
    if s is None:
        return [], None
    return models_service.list_models(
        session,
        cursor=cursor,
        limit=limit,
        model_ids=None if s.model_ids is None else [uuid.UUID(m) for m in s.model_ids],
        version_domain_ids=[uuid.UUID(d) for d in s.domain_ids],
    )


def list_visible_versions(
    session: Session, reader: ReadScope, name: str, *, after: int | None, limit: int
) -> list[ModelVersion]:
    """Up to ``limit`` of model ``name``'s versions numbered above ``after`` that ``reader``
    may see (403 outside the reader's scope), in number order, the scope in the query."""
    model = models_service.get_model(session, name)
    check_model(session, reader, model)
    domain_ids = None
    if reader.restricted:
        assert reader.scope is not None  # check_model refuses an unbound account
        domain_ids = [uuid.UUID(d) for d in reader.scope.domain_ids]
    return models_service.list_versions(
        session, name, after=after, limit=limit, domain_ids=domain_ids
    )


def check_model(session: Session, reader: ReadScope, model: SoftSensorModel) -> None:
    """403 unless the reader may see ``model``."""
    if not reader.restricted:
        return
    if reader.scope is None:
        raise _unbound(reader.username)
    if not visible_models(session, reader, [model]):
        raise Forbidden(
            f"service account {reader.username!r} is not scoped to model {model.name!r}"
        )


def check_version(session: Session, reader: ReadScope, version: ModelVersion) -> None:
    """403 unless the reader may see ``version`` (naming its domain)."""
    if not reader.restricted or reader.allows_version(version):
        return
    model = model_rows.model_by_id(session, version.model_id)
    domain = domain_rows.by_ids(session, [version.domain_id]).get(version.domain_id)
    _check(
        reader.username,
        reader.scope,
        model_id=version.model_id,
        model=model.name if model else str(version.model_id),
        domain_id=version.domain_id,
        domain=domain.name if domain else str(version.domain_id),
    )
