from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.json_body import StrictJSONRoute
from app.schemas.health import LivenessRead, ReadinessRead
from app.services.health import readiness

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/healthz", summary="Process is up", response_model=LivenessRead)
async def healthz() -> LivenessRead:
    """Liveness: no database, no I/O, so no thread-pool trip (``/readyz`` checks the rest)."""
    return LivenessRead(status="ok")


@router.get(
    "/readyz",
    summary="Database reachable, store writable, migrations at head",
    response_model=ReadinessRead,
    responses={503: {"model": ReadinessRead, "description": "not ready: see the checks"}},
)
def readyz() -> JSONResponse:
    checks = readiness()
    body = ReadinessRead(ready=all(c == "ok" for c in checks.values()), checks=checks)
    return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump())
