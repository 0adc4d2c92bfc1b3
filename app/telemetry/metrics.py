"""Prometheus metrics (prometheus-client), served at ``GET /metrics``.

Labels are bounded: routes by their template (``/api/v1/models/{name}/versions/{version}/
predict``, never the raw path; ``unmatched`` for a path no route serves), models by name and
version (as many as the registry holds), flags, methods and verdicts from closed sets.

Several worker processes: set the environment variable ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory writable by every worker before the service starts (``ssreg serve`` empties
it at start). prometheus-client then keeps each process's values in files there and
``/metrics`` adds them up, whichever worker answers the scrape; a command run with the same
variable (``ssreg audit verify``) contributes its verification result. Without it, each process
reports its own values (one worker: the whole service) plus its process and Python metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# No *_created series: they would double the lines and nothing here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# From a fast prediction (about 1 ms) to a transfer's standards upload (about 0.5 s) and
# beyond.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
UNMATCHED_ROUTE = "unmatched"
FLAGS = ("t2_exceeded", "q_exceeded", "outside_operating_range")

HTTP_REQUESTS = Counter(
    "ssreg_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "ssreg_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
PREDICTION_CALLS = Counter(
    "ssreg_prediction_calls",
    "Prediction calls answered and logged, by model, version and purpose.",
    ["model", "version", "purpose"],
)
PREDICTED_SPECTRA = Counter(
    "ssreg_predicted_spectra",
    "Spectra predicted in logged calls, by model and version.",
    ["model", "version"],
)
FLAGGED_SPECTRA = Counter(
    "ssreg_flagged_spectra",
    "Predicted spectra flagged at the 99% limits, by model, version and flag "
    "(t2_exceeded, q_exceeded, outside_operating_range).",
    ["model", "version", "flag"],
)
TRANSFERS = Counter(
    "ssreg_transfers_completed",
    "Calibration transfers completed (committed), by requested method and acceptance verdict.",
    ["method", "verdict"],
)
DATABASE_ERRORS = Counter(
    "ssreg_database_errors",
    "Errors the database driver raised, by DB-API category (OperationalError, "
    "IntegrityError, ...) and whether the connection was lost.",
    ["kind", "disconnect"],
)
INTEGRITY_FAILURES = Counter(
    "ssreg_integrity_failures",
    "Requests refused because a record or its stored bytes are not as audited (error "
    "integrity_failure), by status: 409 on the serving path (predict), 500 elsewhere.",
    ["status"],
)
# The most recent verification in any process wins (multiprocess mode "mostrecent").
CHAIN_VALID = Gauge(
    "ssreg_audit_chain_valid",
    "1 if the most recent audit-chain verification passed, 0 if it found the chain broken.",
    multiprocess_mode="mostrecent",
)
CHAIN_EVENTS = Gauge(
    "ssreg_audit_chain_events",
    "Events read by the most recent audit-chain verification.",
    multiprocess_mode="mostrecent",
)
CHAIN_VERIFIED_AT = Gauge(
    "ssreg_audit_chain_verified_timestamp_seconds",
    "When the most recent audit-chain verification ran (Unix time).",
    multiprocess_mode="mostrecent",
)

# Label children by their values, so a request pays one dictionary lookup, not labels().
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_prediction_children: dict[tuple[str, int, str], tuple[Any, Any, tuple[Any, ...]]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


def count_prediction(
    *, model: str, version: int, purpose: str, n_spectra: int, flag_counts: Mapping[str, int]
) -> None:
    """A committed prediction call: its spectra and how many of them each flag marked."""
    key = (model, version, purpose)
    children = _prediction_children.get(key)
    if children is None:
        v = str(version)
        children = _prediction_children[key] = (
            PREDICTION_CALLS.labels(model, v, purpose),
            PREDICTED_SPECTRA.labels(model, v),
            tuple(FLAGGED_SPECTRA.labels(model, v, flag) for flag in FLAGS),
        )
    calls, spectra, flagged = children
    calls.inc()
    spectra.inc(n_spectra)
    for flag, child in zip(FLAGS, flagged, strict=True):
        count = flag_counts.get(flag, 0)
        if count:
            child.inc(count)


def count_transfer(*, method: str, verdict: str | None) -> None:
    TRANSFERS.labels(method, verdict or "none").inc()


def count_database_error(kind: str, *, disconnect: bool) -> None:
    DATABASE_ERRORS.labels(kind, "true" if disconnect else "false").inc()


def count_integrity_failure(status: int) -> None:
    INTEGRITY_FAILURES.labels(str(status)).inc()


def record_chain_verification(*, valid: bool, events: int, at: float) -> None:
    CHAIN_VALID.set(1 if valid else 0)
    CHAIN_EVENTS.set(events)
    CHAIN_VERIFIED_AT.set(at)


def multiprocess_enabled() -> bool:
    """Whether prometheus-client keeps values in ``PROMETHEUS_MULTIPROC_DIR`` files (decided
    when it was first imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def check_multiprocess(configured: Path | None) -> None:
    """Refuse to start with the directory configured but not in force: prometheus-client reads
    the environment variable itself, once, so one set in a ``.env`` file only would leave
    every worker reporting alone while ``/metrics`` read the files."""
    if configured is not None and not multiprocess_enabled():
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR={configured} is configured but was not in the "
            "environment when prometheus-client was imported: export it before starting "
            "the service (ssreg serve does)"
        )


def clear_multiprocess_dir(directory: Path) -> int:
    """Empty the directory of a previous run's value files (before the workers start, as
    prometheus-client requires); returns how many were removed."""
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in directory.glob("*.db"):
        path.unlink()
        removed += 1
    return removed


def exposition() -> bytes:
    """Every metric in the Prometheus text format: the sum over the workers' files in
    multiprocess mode, this process's registry otherwise."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
