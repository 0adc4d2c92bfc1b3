"""create_app(): routers and error handlers, nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from app import __version__
from app.api.errors import install_error_handlers
from app.api.limits import UploadSizeLimit
from app.api.routers import (
    audit,
    auth,
    datasets,
    domains,
    health,
    models,
    predict,
    prediction_log,
    transfers,
)

API_PREFIX = "/api/v1"


def create_app() -> FastAPI:
    app = FastAPI(
        title="softsensor-registry",
        version=__version__,
        description="GxP registry for spectroscopic soft-sensor models and transfer records.",
    )
    install_error_handlers(app)
    app.add_middleware(UploadSizeLimit)  # 413 before an oversized body is read
    app.include_router(health.router)
    for module in (auth, audit, domains, datasets, models, predict, prediction_log, transfers):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
