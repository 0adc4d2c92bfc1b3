"""The monitoring section of the version page and of the reviewer's home, and its plots."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.api.deps import SessionDep
from app.db.models import ModelVersion
from app.errors import DomainError
from app.schemas.monitoring import MonitoringRead
from app.services import models as models_service
from app.services import monitoring as monitoring_service
from app.services.models import VersionCard
from app.web import monitoring_plots, pages

router = APIRouter(include_in_schema=False)


def section(session: Session, version: ModelVersion) -> MonitoringRead:
    """What the version page's monitoring section shows."""
    return monitoring_service.describe(session, version)


def standing_alarms(
    session: Session, due: list[VersionCard]
) -> list[tuple[VersionCard, list[str]]]:
    """The due versions with monitoring alarms standing, and the alarms (home page; one
    indexed read per due version, the charts load on their own)."""
    out = []
    for card in due:
        messages = monitoring_service.standing_alarm_messages(session, card.id)
        if messages:
            out.append((card, messages))
    return out


@router.get("/models/{name}/versions/{version}/monitoring/{kind}.svg")
def monitoring_plot(
    request: Request, session: SessionDep, name: str, version: int, kind: str
) -> Response:
    user = pages.signed_in(request, session)
    if isinstance(user, Response):
        return user
    if kind not in monitoring_plots.KINDS:
        return pages.error_page(
            request, user, 404, "No such plot", f"plots: {', '.join(monitoring_plots.KINDS)}"
        )
    try:
        row = models_service.get_version(session, name, version)
    except DomainError as exc:
        return pages.error_page(request, user, exc.status_code, "No such version", exc.detail)
    svg = monitoring_plots.draw(kind, monitoring_service.describe(session, row))
    # Every new reference changes the plot: the browser asks again each time.
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, no-cache"})
