"""Pages of the registry's records: models and their versions (history, lineage drawn), the
audit trail of one record, the prediction log (filters, CSV), the signed-in person's account."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, StoreDep
from app.db.models import ModelVersion, User
from app.db.repositories.audit import EventFilter
from app.enums import AuditEntityType, Role, SignatureMeaning, VersionStatus
from app.errors import DomainError
from app.schemas.common import INT32_MAX, NoNul, as_utc
from app.services import accounts, prediction_log
from app.services import aliases as aliases_service
from app.services import audit as audit_service
from app.services import change_controls as change_controls_service
from app.services import models as models_service
from app.services import signatures as signatures_service
from app.services.models import VersionCard
from app.web import monitoring as web_monitoring
from app.web import monitoring_plots, pages
from app.web import session as web_session
from app.web.lineage import lineage_svg

router = APIRouter(include_in_schema=False)
AUDIT_ROLES = (Role.qa, Role.auditor, Role.admin)


@router.get("/models")
def models_page(request: Request, session: SessionDep) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    every, _ = models_service.list_models(session)
    models = models_service.describe_models(session, every)
    return pages.render(request, "models.html", {"user": user, "models": models})


@router.get("/models/{name}")
def model_page(request: Request, session: SessionDep, name: pages.ModelName) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    try:
        model = models_service.describe_model(session, models_service.get_model(session, name))
        versions = models_service.describe_versions(
            session, models_service.list_versions(session, name)
        )
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such model", exc.detail)
    versions.sort(key=lambda v: v.version, reverse=True)
    row = models_service.get_model(session, name)
    now = aliases_service.current_aliases(session, row)
    histories = {a.alias: aliases_service.history(session, row, a.alias).history for a in now}
    context = {
        "user": user,
        "model": model,
        "versions": versions,
        "aliases": now,
        "histories": histories,
    }
    return pages.render(request, "model.html", context)


@router.get("/models/{name}/versions/{version}")
def version_page(
    request: Request,
    session: SessionDep,
    name: pages.ModelName,
    version: pages.VersionNumber,
    signed: SignatureMeaning | None = None,
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    try:
        row = models_service.get_version(session, name, version)
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such version", exc.detail)
    if signed:
        notice = f"Signed: {signed}. The version and its status below are as they are now."
        return _version_page(request, session, user, row, sign_notice=notice)
    return _version_page(request, session, user, row)


def _version_page(
    request: Request,
    session: Session,
    user: User,
    row: ModelVersion,
    *,
    sign_notice: str | None = None,
    sign_error: str | None = None,
    status: int = 200,
) -> Response:
    card = models_service.describe_version(session, row)
    lineage = models_service.lineage(session, card.model_name, card.version)
    context = {
        "user": user,
        "v": card,
        "lineage": lineage,
        "can_audit": user.role in AUDIT_ROLES,
        "meanings": _version_meanings(card, user),
        "sign_notice": sign_notice,
        "sign_error": sign_error,
        "monitoring": web_monitoring.section(session, row),
        "monitoring_plots": monitoring_plots.CAPTIONS,
    }
    return pages.render(request, "version.html", context, status_code=status)


def _version_meanings(v: VersionCard, user: User) -> list[str]:
    """The signatures ``user`` may give this version from its page (the service checks
    again); a pending transferred version is signed through its transfer record."""
    if v.status is VersionStatus.draft and user.role is Role.developer:
        authored = pages.has_authored(v.signatures, user)
        return [] if authored or v.created_by != user.username else ["authored"]
    if user.role is not Role.qa or v.created_by == user.username:
        return []
    if v.status is VersionStatus.draft:
        return ["reviewed", *(["approved"] if v.approvable else []), "rejected"]
    if v.status is VersionStatus.requalification_due:
        return ["reviewed", *(["approved"] if v.approvable else [])]
    return []


@router.post("/models/{name}/versions/{version}/sign")
def sign_version_page(
    request: Request,
    session: SessionDep,
    name: pages.ModelName,
    version: pages.VersionNumber,
    form: Annotated[pages.SignForm, Form()],
) -> Response:
    """Sign a version from its page: the same service, rules and audit as the API."""
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    try:
        models_service.get_version(session, name, version)
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such version", exc.detail)

    def again(message: str, status: int) -> Response:
        row = models_service.get_version(session, name, version)  # as it is now
        return _version_page(request, session, user, row, sign_error=message, status=status)

    return pages.submit_signature(
        request,
        session,
        user,
        form,
        sign=lambda data: signatures_service.sign_version(
            session, name, version, data=data, actor=user
        ),
        again=again,
        done=f"/models/{name}/versions/{version}",
    )


@router.get("/models/{name}/versions/{version}/lineage.svg")
def version_lineage(
    request: Request, session: SessionDep, name: pages.ModelName, version: pages.VersionNumber
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    try:
        lineage = models_service.lineage(session, name, version)
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such version", exc.detail)
    return Response(lineage_svg(lineage), media_type="image/svg+xml")


@router.get("/audit-trail")
def audit_trail(
    request: Request,
    session: SessionDep,
    entity_type: AuditEntityType,
    entity_id: Annotated[str, Query(max_length=200), NoNul],
    label: Annotated[str | None, Query(max_length=200), NoNul] = None,
    cursor: Annotated[int | None, Query(ge=0, le=INT32_MAX)] = None,
) -> Response:
    user = pages.signed_in_as(request, session, AUDIT_ROLES)
    if isinstance(user, Response):
        return user
    where = EventFilter(
        entity_type=entity_type,
        entity_ids=(entity_id,),
        related=audit_service.related_entities(session, entity_type, entity_id),
    )
    events, next_cursor = audit_service.list_events(
        session, where=where, after_seq=cursor, limit=200
    )
    context = {
        "user": user,
        "events": events,
        "entity_type": entity_type.value,
        "entity_id": entity_id,
        "label": label or f"{entity_type.value} {entity_id}",
        "next_cursor": next_cursor,
    }
    return pages.render(request, "audit.html", context)


@router.get("/prediction-log")
def prediction_log_page(
    request: Request,
    session: SessionDep,
    model: Annotated[str | None, Query(max_length=100), NoNul] = None,
    version: Annotated[str | None, Query(max_length=10), NoNul] = None,
    caller: Annotated[str | None, Query(max_length=64), NoNul] = None,
    flagged: Annotated[str | None, Query(max_length=5), NoNul] = None,
    since: Annotated[str | None, Query(max_length=40), NoNul] = None,
    until: Annotated[str | None, Query(max_length=40), NoNul] = None,
    cursor: Annotated[str | None, Query(max_length=200), NoNul] = None,
) -> Response:
    user = pages.signed_in_as(request, session, AUDIT_ROLES)
    if isinstance(user, Response):
        return user
    form = {
        "model": model or "",
        "version": version or "",
        "caller": caller or "",
        "flagged": flagged or "",
        "since": since or "",
        "until": until or "",
    }
    entries, next_cursor, problem = [], None, None
    try:
        found, next_cursor = _log_entries(
            session,
            model,
            _version_number(version),
            caller,
            flagged,
            since,
            until,
            cursor=cursor,
            limit=100,
        )
        entries = [prediction_log.entry_read(e) for e in found]
    except (DomainError, ValueError) as exc:
        problem = getattr(exc, "detail", None) or str(exc)
    query = "&".join(f"{k}={v}" for k, v in form.items() if v)
    context = {
        "user": user,
        "form": form,
        "entries": entries,
        "next_cursor": next_cursor,
        "problem": problem,
        "export": "/api/v1/prediction-log/export" + (f"?{query}" if query else ""),
        "page_export": "/prediction-log/export.csv" + (f"?{query}" if query else ""),
        "query": query,
    }
    return pages.render(request, "prediction_log.html", context)


def _log_entries(
    session: Session,
    model: str | None,
    version: int | None,
    caller: str | None,
    flagged: str | None,
    since: str | None,
    until: str | None,
    *,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[prediction_log.LogEntry], str | None]:
    """The log page the form's fields ask for (blank fields filter nothing)."""
    return prediction_log.list_entries(
        session,
        model=model or None,
        version=version,
        caller=caller or None,
        flagged={"yes": True, "no": False}.get(flagged or ""),
        since=_when(since, "since"),
        until=_when(until, "until"),
        cursor=cursor or None,
        limit=limit,
    )


def _version_number(text: str | None) -> int | None:
    """The form's version field (blank: any), or ValueError for what no version can be."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= INT32_MAX:
        raise ValueError(f"version: {text!r} is not a version number (1, 2, ...)")
    return int(text)


def _when(text: str | None, label: str) -> datetime | None:
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        if "time zone" in str(exc) or "UTC" in str(exc):
            raise ValueError(f"{label}: {exc}") from None
        raise ValueError(f"{label}: not a date-time, e.g. 2026-12-01T00:00:00Z") from None


@router.get("/prediction-log/export.csv")
def prediction_log_csv(
    request: Request,
    session: SessionDep,
    model: Annotated[str | None, Query(max_length=100), NoNul] = None,
    version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    caller: Annotated[str | None, Query(max_length=64), NoNul] = None,
    flagged: Annotated[str | None, Query(max_length=5), NoNul] = None,
    since: Annotated[str | None, Query(max_length=40), NoNul] = None,
    until: Annotated[str | None, Query(max_length=40), NoNul] = None,
) -> Response:
    user = pages.signed_in_as(request, session, AUDIT_ROLES)
    if isinstance(user, Response):
        return user
    try:
        found, _ = _log_entries(
            session, model, version, caller, flagged, since, until, limit=10_000
        )
    except (DomainError, ValueError) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        return pages.error_page(request, user, 422, "Cannot export", detail)
    return Response(
        prediction_log.to_csv(found),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="prediction-log.csv"'},
    )


@router.get("/change-controls/{ref:path}/export.zip")
def change_control_export(
    request: Request, session: SessionDep, store: StoreDep, ref: pages.ChangeControlRef
) -> Response:
    user = pages.signed_in_as(request, session, AUDIT_ROLES)
    if isinstance(user, Response):
        return user
    try:
        bundle = change_controls_service.export(session, store, ref)
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "Cannot export", exc.detail)
    return Response(
        bundle.blob,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{bundle.filename}"',
            "X-Manifest-SHA256": bundle.manifest_sha256,
        },
    )


@router.get("/change-controls/{ref:path}")
def change_control_page(
    request: Request, session: SessionDep, ref: pages.ChangeControlRef
) -> Response:
    user = pages.signed_in_as(request, session, AUDIT_ROLES)
    if isinstance(user, Response):
        return user
    try:
        dossier = change_controls_service.get(session, ref)
    except DomainError as exc:
        return pages.error_page(
            request, user, exc.status_code, "No such change control", exc.detail
        )
    export = f"/change-controls/{quote(ref, safe='')}/export.zip"
    context = {"user": user, "cc": dossier, "export": export}
    return pages.render(request, "change_control.html", context)


@router.get("/account")
def account_page(
    request: Request, session: SessionDep, changed: Annotated[int | None, Query(ge=1, le=1)] = None
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    done = "Your password was changed." if changed else None
    return pages.render(request, "account.html", {"user": user, "message": None, "done": done})


@router.post("/account/password")
def account_password(
    request: Request,
    session: SessionDep,
    current_password: Annotated[str, Form(max_length=1000), NoNul],
    new_password: Annotated[str, Form(max_length=1000), NoNul],
    confirm_password: Annotated[str, Form(max_length=1000), NoNul],
    csrf_token: Annotated[str, Form(max_length=200), NoNul] = "",
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    if not web_session.csrf_ok(request, csrf_token):
        return pages.error_page(request, user, 403, "Refused", "The form did not come from here.")
    message, status = None, 200
    if new_password != confirm_password:
        message, status = "The new password and its confirmation differ.", 422
    else:
        try:
            changed = accounts.change_password(
                session, user, current_password=current_password, new_password=new_password
            )
        except DomainError as exc:
            message, status = exc.detail, exc.status_code
        else:
            if changed:
                return RedirectResponse("/account?changed=1", status_code=303)
            message, status = "The current password is wrong, or the account is locked.", 401
    context = {"user": user, "message": message, "done": None}
    return pages.render(request, "account.html", context, status_code=status)
