"""Request ids, one log line per request, and the Prometheus metrics at ``GET /metrics``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.enums import Role
from app.main import create_app
from app.settings import get_settings
from tests.factories import train_transfer_source, transfer_data
from tests.helpers import Actor

PREDICT_ROUTE = "/api/v1/models/{name}/versions/{version}/predict"


def scrape(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, frozenset[Any]], float]:
    """Every sample of ``/metrics``, by name and labels."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def auditor(actors: dict[Role, Actor]) -> dict[str, str]:
    return actors[Role.auditor].headers


# --- request ids ------------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "plant-opc:4711.a_b"})
    assert r.headers["X-Request-ID"] == "plant-opc:4711.a_b"


@pytest.mark.parametrize("sent", [None, "has space", "x" * 129, "semi;colon", "ünï".encode()])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    client: TestClient, sent: str | bytes | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    r = client.get("/healthz", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])
    assert r.headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]


def test_errors_carry_the_request_id_too(client: TestClient) -> None:
    r = client.get("/api/v1/users/me", headers={"X-Request-ID": "req-401"})
    assert r.status_code == 401
    assert r.headers["X-Request-ID"] == "req-401"
    assert client.get("/no/such/page", headers={"X-Request-ID": "r404"}).headers[
        "X-Request-ID"
    ] == ("r404")


def test_a_500_carries_the_request_id_and_is_logged_as_500(
    client: TestClient,
    auditor: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.services import audit

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(audit, "verify_chain", broken)
    with caplog.at_level(logging.INFO, logger="app"):
        r = client.get("/api/v1/audit/verify", headers={**auditor, "X-Request-ID": "boom-1"})
    assert r.status_code == 500
    assert r.headers["X-Request-ID"] == "boom-1"
    (line,) = [rec for rec in caplog.records if rec.name == "app.request"]
    assert line.__dict__["status"] == 500
    assert line.__dict__["request_id"] == "boom-1"


# --- the request log --------------------------------------------------------------------------


def test_one_log_line_per_request_with_route_status_duration_id_and_user(
    client: TestClient, actors: dict[Role, Actor], caplog: pytest.LogCaptureFixture
) -> None:
    qa = actors[Role.qa]
    with caplog.at_level(logging.INFO, logger="app.request"):
        client.get("/api/v1/transfers/12345", headers={**qa.headers, "X-Request-ID": "t-1"})
        client.get("/api/v1/users/me", headers={"X-Request-ID": "t-2"})
    lines = [rec.__dict__ for rec in caplog.records if rec.name == "app.request"]
    assert [line["request_id"] for line in lines] == ["t-1", "t-2"]
    first, second = lines
    assert first["method"] == "GET"
    assert first["route"] == "/api/v1/transfers/{id}"
    assert first["path"] == "/api/v1/transfers/12345"
    assert first["status"] == 404
    assert first["user"] == qa.user.username
    assert first["duration_ms"] > 0
    assert (second["status"], second["user"]) == (401, None)


# --- /metrics: who may read it ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.admin, 200),
        (Role.auditor, 200),
        (Role.qa, 403),
        (Role.developer, 403),
        (Role.plant, 403),
        (None, 401),
    ],
)
def test_metrics_need_an_admin_or_auditor_token_from_elsewhere(
    client: TestClient, actors: dict[Role, Actor], role: Role | None, status: int
) -> None:
    headers = {} if role is None else actors[role].headers
    assert client.get("/metrics", headers=headers).status_code == status


@pytest.fixture
def loopback_client(client: TestClient) -> Iterator[TestClient]:
    """A client whose address is 127.0.0.1 (a scraper on the same host)."""
    app = create_app()
    app.dependency_overrides = dict(client.app.dependency_overrides)  # type: ignore[attr-defined]
    with TestClient(app, client=("127.0.0.1", 50123), raise_server_exceptions=False) as c:
        yield c


def test_metrics_are_open_to_the_scrape_networks_only(
    loopback_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = loopback_client.get("/metrics")
    assert r.status_code == 200
    assert "ssreg_http_requests_total" in r.text
    monkeypatch.setenv("REGISTRY_METRICS_SCRAPE_NETWORKS", "[]")
    get_settings.cache_clear()
    assert loopback_client.get("/metrics").status_code == 401
    monkeypatch.setenv("REGISTRY_METRICS_SCRAPE_NETWORKS", '["10.0.0.0/8", "::1/128"]')
    get_settings.cache_clear()
    assert loopback_client.get("/metrics").status_code == 401


def test_metrics_stay_out_of_the_openapi_document(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


# --- /metrics: what it counts -----------------------------------------------------------------


def test_requests_are_counted_by_route_template_not_raw_path(
    client: TestClient, auditor: dict[str, str]
) -> None:
    before = scrape(client, auditor)
    for ref in ("1", "2", "no-such-transfer"):
        client.get(f"/api/v1/transfers/{ref}", headers=auditor)
    after = scrape(client, auditor)
    labels = {"method": "GET", "route": "/api/v1/transfers/{id}", "status": "404"}
    delta = value(after, "ssreg_http_requests_total", **labels) - value(
        before, "ssreg_http_requests_total", **labels
    )
    assert delta == 3
    routes = {dict(key[1]).get("route") for key in after}
    assert not any(r and "no-such-transfer" in r for r in routes)
    buckets = value(
        after,
        "ssreg_http_request_duration_seconds_count",
        method="GET",
        route="/api/v1/transfers/{id}",
    )
    assert buckets >= 3


def test_predictions_count_spectra_and_flags_by_model_and_version(
    client: TestClient, actors: dict[Role, Actor], auditor: dict[str, str], trained: dict[str, Any]
) -> None:
    X = trained["X"].copy()
    X[0] += 50.0  # far outside the calibration: flagged on Q (and more)
    before = scrape(client, auditor)
    r = client.post(
        "/api/v1/models/titer_pls/versions/1/predict",
        json={"spectra": X.tolist()},
        headers=actors[Role.plant].headers,
    )
    assert r.status_code == 200, r.text
    counts = r.json()["flag_counts"]
    assert counts["q_exceeded"] >= 1
    after = scrape(client, auditor)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    mv = {"model": "titer_pls", "version": "1"}
    assert delta("ssreg_prediction_calls_total", **mv, purpose="evaluation") == 1
    assert delta("ssreg_predicted_spectra_total", **mv) == len(X)
    for flag in ("t2_exceeded", "q_exceeded", "outside_operating_range"):
        assert delta("ssreg_flagged_spectra_total", **mv, flag=flag) == counts[flag]
    ok = {"method": "POST", "route": PREDICT_ROUTE, "status": "200"}
    assert delta("ssreg_http_requests_total", **ok) == 1


def test_a_refused_prediction_counts_no_spectra(
    client: TestClient, actors: dict[Role, Actor], auditor: dict[str, str], trained: dict[str, Any]
) -> None:
    before = scrape(client, auditor)
    r = client.post(
        "/api/v1/models/titer_pls/versions/1/predict",
        json={"spectra": [[1.0, 2.0]]},
        headers=actors[Role.plant].headers,
    )
    assert r.status_code == 422
    after = scrape(client, auditor)
    name = "ssreg_predicted_spectra_total"
    assert value(after, name, model="titer_pls", version="1") == value(
        before, name, model="titer_pls", version="1"
    )


def test_completed_transfers_are_counted_by_method_and_verdict(
    client: TestClient, actors: dict[Role, Actor], auditor: dict[str, str]
) -> None:
    dev = actors[Role.developer].headers
    source = train_transfer_source(client, dev)
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": "plant-raman-2000L",
        "method": "sbc",
        "n_standards": 12,
        "change_control": "CC-METRICS-1",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "metrics",
    }
    opened = client.post("/api/v1/transfers", json=plan, headers=dev)
    assert opened.status_code == 201, opened.text
    before = scrape(client, auditor)
    r = client.post(
        f"/api/v1/transfers/{opened.json()['number']}/standards",
        data={"reason": "standards"},
        files={"target_standards": ("t.parquet", transfer_data().target_bytes())},
        headers=dev,
    )
    assert r.status_code == 201, r.text
    verdict = r.json()["transfer"]["acceptance"]["verdict"]
    after = scrape(client, auditor)
    name, labels = "ssreg_transfers_completed_total", {"method": "sbc", "verdict": verdict}
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_the_verify_endpoint_sets_the_chain_gauge(
    client: TestClient, session: Session, auditor: dict[str, str]
) -> None:
    r = client.get("/api/v1/audit/verify", headers=auditor)
    assert r.json()["valid"] is True
    samples = scrape(client, auditor)
    assert value(samples, "ssreg_audit_chain_valid") == 1
    assert value(samples, "ssreg_audit_chain_events") == r.json()["events"]
    assert value(samples, "ssreg_audit_chain_verified_timestamp_seconds") > 0

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER audit_event_no_update"))
    session.execute(text("UPDATE audit_event SET reason = 'rewritten' WHERE seq = 1"))
    assert client.get("/api/v1/audit/verify", headers=auditor).json()["valid"] is False
    assert value(scrape(client, auditor), "ssreg_audit_chain_valid") == 0


def test_database_errors_are_counted(
    client: TestClient, session: Session, auditor: dict[str, str]
) -> None:
    def total(samples: dict[tuple[str, frozenset[Any]], float]) -> float:
        return sum(v for (name, _), v in samples.items() if name == "ssreg_database_errors_total")

    before = total(scrape(client, auditor))
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(text("UPDATE audit_event SET reason = 'x'"))  # refused by a trigger
    assert total(scrape(client, auditor)) == before + 1


def test_route_labels_stay_bounded(client: TestClient) -> None:
    """A mounted app is labelled by its mount, every path no route serves as one label."""
    from app.telemetry import metrics

    client.get("/static/style.css")
    client.get("/static/no-such-file.css")
    client.get("/really/not/here")
    seen = {route for _, route, _ in metrics._request_children}
    assert "/static/{path}" in seen
    assert metrics.UNMATCHED_ROUTE in seen
    assert not any("style" in route or "really" in route for route in seen)
