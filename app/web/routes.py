"""The pages: login and logout, the reviewer's home, the transfer record card.

Pages read through the same services as the API and sign in the same users (lockout and audit
included). Every form carries a CSRF token; a POST without the right one is refused (403)
before anything is read or written.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, StoreDep
from app.db.models import TransferRecord, User
from app.enums import Role, SignatureMeaning, TransferStatus, VersionStatus
from app.errors import DomainError, TooManyAttempts
from app.schemas.common import NoNul
from app.schemas.transfers import TransferRead
from app.services import auth as auth_service
from app.services import models as models_service
from app.services import signatures as signatures_service
from app.services import transfers as transfers_service
from app.services.canonical import record_sha256
from app.services.transfer_plots import PlotData, plot_data
from app.settings import get_settings
from app.web import monitoring as web_monitoring
from app.web import monitoring_plots, pages
from app.web import plots as web_plots
from app.web import session as web_session

router = APIRouter(include_in_schema=False)
HOME_PAGE = 50  # transfers per list on the reviewer's home; older ones are a link away


def _safe_next(value: str | None) -> str:
    """Only paths of this site (no scheme, no host, no protocol-relative //)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/home"
    return value


@router.get("/")
def index(request: Request, session: SessionDep) -> Response:
    signed_in = web_session.page_user(request, session) is not None
    return RedirectResponse("/home" if signed_in else "/login", status_code=303)


@router.get("/login")
def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=500), NoNul] = None
) -> Response:
    return _login_form(request, next=_safe_next(next))


def _login_form(
    request: Request,
    *,
    next: str,
    message: str | None = None,
    username: str = "",
    status: int = 200,
) -> Response:
    token = web_session.new_login_csrf()
    response = pages.render(
        request,
        "login.html",
        {"next": next, "message": message, "username": username, "login_csrf": token},
        status_code=status,
    )
    web_session.set_login_csrf(response, request, token)
    return response


@router.post("/login")
def login_submit(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64), NoNul],
    password: Annotated[str, Form(max_length=1000), NoNul],
    csrf_token: Annotated[str, Form(max_length=200), NoNul] = "",
    next: Annotated[str, Form(max_length=500), NoNul] = "/home",
) -> Response:
    if not web_session.login_csrf_ok(request, csrf_token):
        return _login_form(
            request,
            next=_safe_next(next),
            message="The form expired or did not come from this site; please log in again.",
            status=403,
        )
    try:
        issued = auth_service.login(
            session,
            username=username,
            password=password,
            client_host=request.client.host if request.client else None,
            ttl_minutes=get_settings().web_session_minutes,
        )
    except TooManyAttempts as exc:  # nothing was checked or written
        refused = _login_form(
            request, next=_safe_next(next), message=exc.detail, username=username, status=429
        )
        refused.headers["Retry-After"] = str(exc.retry_after_seconds)
        return refused
    if issued is None:  # audited; the session commits it
        return _login_form(
            request,
            next=_safe_next(next),
            message="Wrong user name or password, or the account is locked.",
            username=username,
            status=401,
        )
    if issued.user.role not in pages.PAGE_ROLES:
        return _login_form(request, next="/home", message="Pages are for people.", status=403)
    response = RedirectResponse(_safe_next(next), status_code=303)
    web_session.set_session_cookie(response, request, issued.token, issued.expires_at)
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    csrf_token: Annotated[str, Form(max_length=200), NoNul] = "",
) -> Response:
    user = web_session.page_user(request, session)
    token = web_session.session_token(request)
    if user is not None and token is not None:
        if not web_session.csrf_ok(request, csrf_token):
            return pages.error_page(
                request, user, 403, "Refused", "The form did not come from this site."
            )
        auth_service.logout(session, user, token)
    response = RedirectResponse("/login", status_code=303)
    web_session.clear_session_cookie(response, request)
    return response


def _naive_unacceptable(t: TransferRead) -> bool:
    naive = t.target.naive_metrics
    if naive is None or naive.rmse is None:
        return False
    criteria = t.transfer.acceptance.criteria
    source = t.source.in_domain_metrics
    if criteria.max_rmse is not None and naive.rmse > criteria.max_rmse:
        return True
    if criteria.max_rmse_ratio is not None and source is not None and source.rmse:
        return naive.rmse > criteria.max_rmse_ratio * source.rmse
    return naive.r2 is not None and naive.r2 < 0


@router.get("/home")
def home(
    request: Request,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=32), NoNul] = None,
    verdict: Annotated[str | None, Query(max_length=8), NoNul] = None,
    model: Annotated[str | None, Query(max_length=100), NoNul] = None,
    domain: Annotated[str | None, Query(max_length=100), NoNul] = None,
    change_control: Annotated[str | None, Query(max_length=100), NoNul] = None,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    filters = {
        "status": status or None,
        "verdict": verdict or None,
        "model": model or None,
        "domain": domain or None,
        "change_control": change_control or None,
    }
    filter_error = None
    pending: list[TransferRead] = []
    described: list[TransferRead] = []
    try:
        wanted = TransferStatus(filters["status"]) if filters["status"] else None

        def newest(**kw: Any) -> list[TransferRecord]:
            return transfers_service.list_transfers(
                session,
                model=filters["model"],
                domain=filters["domain"],
                change_control=filters["change_control"],
                verdict=filters["verdict"],  # type: ignore[arg-type]
                newest_first=True,
                limit=HOME_PAGE + 1,
                **kw,
            )

        if wanted in (None, TransferStatus.completed):
            waiting = newest(
                status=TransferStatus.completed,
                target_status=VersionStatus.pending_requalification,
            )
            pending = transfers_service.describe_transfers(session, waiting)
        rows = newest(status=wanted, before=before)
        described = transfers_service.describe_transfers(session, rows[:HOME_PAGE])
    except (DomainError, ValueError) as exc:
        session.rollback()
        rows, filter_error = [], getattr(exc, "detail", None) or str(exc)
    older = None
    if len(rows) > HOME_PAGE:
        query = {k: v for k, v in filters.items() if v} | {"before": described[-1].number}
        older = "/home?" + urlencode(query)
    cards = models_service.versions_in_status(
        session, (VersionStatus.requalification_due, VersionStatus.rejected)
    )
    due = [c for c in cards if c.status is VersionStatus.requalification_due]
    context = {
        "user": user,
        "filters": filters,
        "filtered": any(filters.values()),
        "filter_error": filter_error,
        "transfer_statuses": [s.value for s in TransferStatus],
        "page_size": HOME_PAGE,
        "pending": pending[:HOME_PAGE],
        "more_pending": len(pending) > HOME_PAGE,
        "transfers": described,
        "before": before,
        "older": older,
        "due": due,
        "rejected": [c for c in cards if c.status is VersionStatus.rejected][:20],
        "monitoring_alarms": web_monitoring.standing_alarms(session, due),
        "monitoring_plots": monitoring_plots.CAPTIONS,
    }
    return pages.render(request, "home.html", context)


def _meanings(t: TransferRead, user: User) -> list[str]:
    """The signatures ``user`` may give this record now (the service checks again)."""
    if t.status is not TransferStatus.completed:
        return []
    status = t.governance.requalification_status
    if status in (VersionStatus.rejected, VersionStatus.retired):
        return []
    makers = {t.governance.created_by, t.governance.completed_by}
    if user.role is Role.developer:
        authored = pages.has_authored(t.governance.signatures, user)
        return [] if user.username not in makers or authored else ["authored"]
    if user.role is not Role.qa or user.username in makers:
        return []
    meanings = ["reviewed"]
    if t.governance.approvable:
        meanings.append("approved")
    if status is VersionStatus.pending_requalification:
        meanings.append("rejected")
    return meanings


@router.get("/transfers/{number}")
def transfer_card(
    request: Request,
    session: SessionDep,
    number: pages.TransferNumber,
    signed: SignatureMeaning | None = None,
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    notice = (
        f"Signed: {signed}. The record and its status below are as they are now."
        if signed
        else None
    )
    return _transfer_card(request, session, user, number, sign_notice=notice)


def _transfer_card(
    request: Request,
    session: Session,
    user: User,
    number: pages.TransferNumber,
    *,
    sign_notice: str | None = None,
    sign_error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        record = transfers_service.get_transfer(session, str(number))
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such transfer", exc.detail)
    t = transfers_service.describe_transfer(session, record)
    context = {
        "sign_notice": sign_notice,
        "sign_error": sign_error,
        "meanings": _meanings(t, user),
        "user": user,
        "t": t,
        "naive_unacceptable": _naive_unacceptable(t),
        "can_audit": user.role in (Role.qa, Role.auditor, Role.admin),
        "plots": [(k, web_plots.CAPTIONS[k]) for k in web_plots.KINDS],
    }
    return pages.render(request, "transfer.html", context, status_code=status)


@router.post("/transfers/{number}/sign")
def sign_transfer(
    request: Request,
    session: SessionDep,
    number: pages.TransferNumber,
    form: Annotated[pages.SignForm, Form()],
) -> Response:
    """Sign from the record card: the same service, rules and audit as the API."""
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    return pages.submit_signature(
        request,
        session,
        user,
        form,
        sign=lambda data: signatures_service.sign_transfer(
            session, str(number), data=data, actor=user
        ),
        again=lambda message, status: _transfer_card(
            request, session, user, number, sign_error=message, status=status
        ),
        done=f"/transfers/{number}",
    )


@router.get("/transfers/{number}/plots/{kind}.svg")
def transfer_plot(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    number: pages.TransferNumber,
    kind: pages.PlotKind,
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    if kind not in web_plots.KINDS:
        return pages.error_page(
            request, user, 404, "No such plot", f"plots: {', '.join(web_plots.KINDS)}"
        )
    try:
        record = transfers_service.get_transfer(session, str(number))
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such transfer", exc.detail)
    if record.status is not TransferStatus.completed:
        return pages.error_page(
            request, user, 409, "No plots yet", f"transfer #{number} is not completed"
        )

    def inputs() -> tuple[PlotData, TransferRead]:
        t = transfers_service.describe_transfer(session, record)
        tb = t.transfer
        limits = tb.applicability.limits if tb.applicability else None
        data = plot_data(
            session,
            store,
            record,
            units=t.source.units,
            source_dataset_sha256=t.source.training_dataset_sha256,
            dataset_shas={
                "target_standards": tb.target_standards_dataset_sha256,
                "source_standards": tb.source_standards_dataset_sha256,
                "validation": tb.validation_dataset_sha256,
            },
            limits=(limits.t2_95, limits.t2_99, limits.q_95, limits.q_99)
            if limits
            else (math.nan,) * 4,
        )
        return data, t

    svg = web_plots.draw(kind, record_sha256(record), inputs)
    return Response(
        svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"}
    )
