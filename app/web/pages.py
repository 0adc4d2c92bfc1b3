"""What every page shares: the templates and their number filters, rendering, the signed-in
person (or where to send a visitor instead), error pages."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from app.db.models import User
from app.enums import Role, SignatureMeaning
from app.errors import DomainError
from app.schemas.common import INT32_MAX, NoNul
from app.schemas.signatures import SignatureCreate, SignatureRead
from app.web import session as web_session

HERE = Path(__file__).resolve().parent
PAGE_ROLES = frozenset({Role.admin, Role.developer, Role.qa, Role.auditor})

templates = Jinja2Templates(directory=HERE / "templates")

# Path parameters of the pages, bounded like the API's (app.api.params): a value no row can
# hold is refused before a query runs.
ModelName = Annotated[str, PathParam(max_length=100), NoNul]
VersionNumber = Annotated[int, PathParam(ge=1, le=INT32_MAX)]
TransferNumber = Annotated[int, PathParam(ge=1, le=INT32_MAX)]
ChangeControlRef = Annotated[str, PathParam(max_length=100), NoNul]
PlotKind = Annotated[str, PathParam(max_length=40), NoNul]


def fixed(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def sig(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def utc(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters.update(fixed=fixed, sig=sig, utc=utc)


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    base = {"csrf": web_session.csrf_token(request), "user": None}
    return templates.TemplateResponse(request, name, base | context, status_code=status_code)


def error_page(
    request: Request,
    user: User | None,
    status: int,
    heading: str,
    detail: str,
    *,
    code: str | None = None,
    problems: Sequence[str] = (),
) -> Response:
    context = {
        "user": user,
        "status": status,
        "heading": heading,
        "detail": detail,
        "code": code,
        "problems": problems,
    }
    return render(request, "error.html", context, status_code=status)


def handler_error_page(
    request: Request,
    status: int,
    heading: str,
    detail: str,
    headers: Mapping[str, str],
    *,
    code: str,
    problems: Sequence[str] = (),
) -> Response | None:
    """An error the app's handlers answer (a 5xx, a refused value) as a page, or None when
    the request was not for a page (no page route matched it: the error envelope then)."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if endpoint is None or not endpoint.__module__.startswith(f"{__package__}."):
        return None
    response = error_page(request, None, status, heading, detail, code=code, problems=problems)
    response.headers.update(headers)
    return response


def signed_in(request: Request, session: Session) -> User | Response:
    """The person behind the session, or the response to send instead (the login page, or a
    403 for a service account)."""
    user = web_session.page_user(request, session)
    if user is None:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    if user.role not in PAGE_ROLES:
        return error_page(request, user, 403, "Not for service accounts", "Pages are for people.")
    return user


def signed_in_as(request: Request, session: Session, roles: Iterable[Role]) -> User | Response:
    """:func:`signed_in`, and a 403 page for a person whose role may not see the page."""
    user = signed_in(request, session)
    if isinstance(user, Response):
        return user
    allowed = frozenset(roles)
    if user.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        return error_page(request, user, 403, "Not for your role", f"This page is for {names}.")
    return user


def submit_signature(
    request: Request,
    session: Session,
    user: User,
    form: SignForm,
    *,
    sign: Callable[[SignatureCreate], object | None],
    again: Callable[[str, int], Response],
    done: str,
) -> Response:
    """A sign form posted: CSRF, then the signature service (``sign``), then where to go.

    A refusal rolls the session back (nothing of it is kept) and shows the page again with
    the reason (``again(message, status)``); wrong credentials are a 401 page whose audit
    events commit with it; a signature redirects to ``done`` with ``?signed=<meaning>``."""
    if not web_session.csrf_ok(request, form.csrf_token):
        return error_page(request, user, 403, "Refused", "The form did not come from here.")
    try:
        data = SignatureCreate(
            meaning=SignatureMeaning(form.meaning),
            username=form.username,
            password=form.password,
            comment=form.comment or None,
        )
    except (ValidationError, ValueError) as exc:
        return again(first_error(exc), 422)
    try:
        signed = sign(data)
    except DomainError as exc:
        session.rollback()
        return again(exc.detail, exc.status_code)
    if signed is None:
        return again(WRONG_CREDENTIALS, 401)
    return RedirectResponse(f"{done}?signed={data.meaning.value}", status_code=303)


def has_authored(signatures: Iterable[SignatureRead], user: User) -> bool:
    """``user`` has already signed the record ``authored``."""
    return any(
        s.meaning is SignatureMeaning.authored and s.signer_username == user.username
        for s in signatures
    )


class SignForm(BaseModel):
    """The fields of a sign form (user name and password entered again)."""

    meaning: Annotated[str, Field(max_length=20), NoNul]
    username: Annotated[str, Field(max_length=64), NoNul]
    password: Annotated[str, Field(max_length=1000), NoNul]
    comment: Annotated[str, Field(max_length=4000), NoNul] = ""
    csrf_token: Annotated[str, Field(max_length=200), NoNul] = ""


WRONG_CREDENTIALS = (
    "The user name or password entered is wrong, or the account is locked: nothing was signed."
)


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"meaning must be one of {', '.join(m.value for m in SignatureMeaning)}"
