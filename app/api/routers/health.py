from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.services.health import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Process is up")
async def healthz() -> dict[str, str]:
    """Liveness: no database, no I/O, so no thread-pool trip (``/readyz`` checks the rest)."""
    return {"status": "ok"}


@router.get("/readyz", summary="Database reachable, store writable, migrations at head")
def readyz() -> JSONResponse:
    checks = readiness()
    ok = all(c == "ok" for c in checks.values())
    return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks})
