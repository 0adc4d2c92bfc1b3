"""create_app(): routers, error handlers, middleware, the process's numeric thread limit, upload
spooling."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from threadpoolctl import threadpool_limits

from app import __version__
from app.api.errors import install_error_handlers
from app.api.headers import SecurityHeaders
from app.api.limits import RequestBodyGuard, keep_upload_parts_in_memory
from app.api.observability import RequestTelemetry, RouteTemplates
from app.api.openapi import install_openapi
from app.api.query import reject_unknown_query_parameters
from app.api.routers import (
    aliases,
    audit,
    auth,
    change_controls,
    datasets,
    domains,
    health,
    metrics,
    models,
    monitoring,
    predict,
    prediction_log,
    signatures,
    transfers,
)
from app.settings import get_settings
from app.telemetry import metrics as telemetry
from app.web import monitoring as web_monitoring
from app.web import pages as web_pages
from app.web import records as web_records
from app.web import routes as web_routes
from app.web import session as web_session

API_PREFIX = "/api/v1"
# The order of the groups in /docs (independent of the order routes are matched in).
TAGS = [
    {"name": "health", "description": "liveness and readiness"},
    {"name": "auth", "description": "tokens, users and service accounts"},
    {"name": "domains", "description": "measurement domains (instrument, probe, scale)"},
    {"name": "datasets", "description": "uploaded spectra, pinned by sha256"},
    {"name": "models", "description": "soft-sensor models and their versions"},
    {"name": "transfers", "description": "calibration-transfer records"},
    {"name": "predictions", "description": "corrected predictions and their log"},
    {"name": "audit", "description": "the hash-chained audit trail"},
    {"name": "change control", "description": "everything under a change-control reference"},
]


def create_app() -> FastAPI:
    settings = get_settings()
    telemetry.check_multiprocess(settings.prometheus_multiproc_dir)
    compute_threads = settings.compute_threads
    if compute_threads > 0:
        threadpool_limits(limits=compute_threads)  # BLAS and OpenMP, process-wide
    # /docs and /redoc load Swagger UI and ReDoc from the service itself (fastapi-offline ships
    # them), so they render on an air-gapped plant network.
    app = FastAPIOffline(
        dependencies=[Depends(reject_unknown_query_parameters)],
        title="softsensor-registry",
        version=__version__,
        description="GxP registry for spectroscopic soft-sensor models and transfer records.",
        openapi_tags=TAGS,
        # operationId = the route function's name: what generated clients call the operation.
        generate_unique_id_function=lambda route: route.name,
    )
    install_error_handlers(app, page=web_pages.handler_error_page)
    install_openapi(app)
    # No body is read before its sender is known, and none without bounds (413, 408, 503).
    app.add_middleware(
        RequestBodyGuard,
        api_prefix=API_PREFIX,
        session_cookie=web_session.SESSION_COOKIE,
        login_path="/login",
    )
    # Outermost of ours, so that a 413 gets them too (a 500 gets them from its handler).
    docs = ("/docs", "/redoc", app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect")
    app.add_middleware(SecurityHeaders, docs_paths=docs)
    # Added last, so outermost: request id, log line and metrics for every answer, 413 included.
    routes = RouteTemplates()
    app.add_middleware(RequestTelemetry, routes=routes)
    keep_upload_parts_in_memory()  # parts of a few MiB: no temporary file while parsing
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=web_pages.HERE / "static"), name="web-static")
    # Routes are matched in order and the plant's prediction calls are the hot path: first.
    for module in (
        predict,
        auth,
        audit,
        domains,
        datasets,
        models,
        aliases,
        monitoring,
        prediction_log,
        transfers,
        signatures,
        change_controls,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
        routes.include(module.router, API_PREFIX)
    app.include_router(web_routes.router)  # the pages, after the API
    app.include_router(web_records.router)
    app.include_router(web_monitoring.router)
    return app
