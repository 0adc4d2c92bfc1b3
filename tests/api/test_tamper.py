"""Records changed behind the application's back (issue 14): refused by the database while
its guards stand, and, when the schema owner drops them, named by the reconciliation and
refused by the predict path and the store check."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db.base import Base
from app.enums import AuditAction, AuditEntityType, Role
from app.services import audit, audit_verify, checkpoints
from app.services.audit_seal import record_reconciliation, seal
from app.services.fsck import fsck
from app.settings import get_settings
from app.store import LocalStore
from tests.api.test_observability import PREDICT_ROUTE, scrape, value
from tests.helpers import Actor, assert_error, without_guards
from tests.signing import approve_version

V1 = "/api/v1/models/titer_pls/versions/1"
# The attack of issue 14: a draft version made approved with limits nothing exceeds.
WIDEN = (
    "UPDATE model_version SET status = 'approved', t2_limit_99 = 1e12, q_limit_99 = 1e12, "
    "operating_range_min = -1e9, operating_range_max = 1e9 WHERE version = 1"
)


def _predict(client: TestClient, actor: Actor, spectra: Any) -> Any:
    body = json.dumps({"spectra": spectra, "purpose": "evaluation"}).encode()
    return client.post(
        V1 + "/predict", content=body, headers={**actor.headers, "Content-Type": "application/json"}
    )


def _verify(client: TestClient, actors: dict[Role, Actor]) -> dict[str, Any]:
    r = client.get("/api/v1/audit/verify", headers=actors[Role.auditor].headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _differences(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(kind, table): {field: (audited, current)}} of the reconciliation's findings."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in report["reconciliation"]["differences"]:
        out.setdefault((d["kind"], d["table"]), {}).update(
            {f["field"]: (f["audited"], f["current"]) for f in d["fields"]}
        )
    return out


def test_the_workflow_reconciles_clean(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    approve_version(client, actors)
    report = _verify(client, actors)
    assert report["valid"] is True, report
    assert report["reconciliation"]["differences"] == []
    assert report["reconciliation"]["tables"]["model_version"] >= 1


def test_the_widening_update_is_refused_by_the_database(
    client: TestClient, trained: dict[str, Any], session: Session
) -> None:
    with pytest.raises(DBAPIError, match="not allowed"), session.begin_nested():
        session.execute(text(WIDEN))


def test_a_widened_version_is_named_by_the_reconciliation_and_not_served(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dev = actors[Role.developer]
    spectra = np.full((1, trained["X"].shape[1]), 5000.0).tolist()
    first = _predict(client, dev, spectra)
    assert first.status_code == 200, first.text
    assert first.json()["qualified"] is False  # a draft version, and far out of range
    without_guards(session, "model_version")
    session.execute(text(WIDEN))
    session.expire_all()

    before = scrape(client, actors[Role.auditor].headers)
    with caplog.at_level(logging.ERROR, logger="app"):
        r = _predict(client, dev, spectra)
    # 409, not a 5xx a plant client would retry: nothing but QA resolves it.
    assert_error(r, 409, "differs from its audited state", "status", code="integrity_failure")
    assert "retry-after" not in r.headers
    after = scrape(client, actors[Role.auditor].headers)
    name = "ssreg_integrity_failures_total"
    assert value(after, name, status="409") - value(before, name, status="409") == 1
    labels = {"method": "POST", "route": PREDICT_ROUTE, "status": "409"}
    requests = "ssreg_http_requests_total"
    assert value(after, requests, **labels) - value(before, requests, **labels) == 1
    logged = [rec for rec in caplog.records if rec.getMessage().startswith("integrity failure")]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "answered 409" in logged[0].getMessage()
    assert "differs from its audited state" in logged[0].getMessage()
    changed = _differences(_verify(client, actors))[("changed", "model_version")]
    assert changed["status"] == ("draft", "approved")
    assert changed["t2_limit_99"][1] == 1e12
    assert set(changed) == {
        "status",
        "t2_limit_99",
        "q_limit_99",
        "operating_range_min",
        "operating_range_max",
    }


def test_a_limit_changed_then_carried_into_a_transition_is_found(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    without_guards(session, "model_version")
    session.execute(text("UPDATE model_version SET t2_limit_99 = 1e12 WHERE version = 1"))
    session.expire_all()
    approve_version(client, actors)  # the approval's event holds the altered row
    report = _verify(client, actors)
    assert report["valid"] is False
    assert _differences(report)[("changed_between", "model_version")]["t2_limit_99"][1] == 1e12
    r = _predict(client, actors[Role.developer], trained["X"][:1].tolist())
    assert_error(r, 409, "t2_limit_99 (between events)", code="integrity_failure")


def test_the_predict_routes_document_the_integrity_failure_as_a_409(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = [p for p in paths if p.endswith("/predict")]
    assert sorted(routes) == [
        "/api/v1/models/{name}/aliases/{alias}/predict",
        "/api/v1/models/{name}/versions/{version}/predict",
    ]
    for path in routes:
        responses = paths[path]["post"]["responses"]
        assert "integrity_failure" in responses["409"]["description"], path
        assert "Do not retry" in responses["409"]["description"], path
        assert "500" not in responses, path


def test_a_role_raised_to_admin_is_named(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    session.execute(text("UPDATE app_user SET role = 'admin' WHERE username = 'test-auditor'"))
    session.expire_all()
    report = _verify(client, actors)
    assert report["valid"] is False
    assert _differences(report)[("changed", "app_user")] == {"role": ("auditor", "admin")}


def test_a_repointed_artifact_is_named_by_fsck_and_the_reconciliation(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    store: LocalStore,
) -> None:
    dev = actors[Role.developer].headers
    body = {"dataset_sha256": trained["version"]["dataset_sha256"], "reason": "second"}
    body["intended_use"] = "monitoring"
    body["n_components"] = 2
    r = client.post("/api/v1/models/titer_pls/versions", json=body, headers=dev)
    assert r.status_code == 201, r.text
    v2 = r.json()["artifact_sha256"]
    assert fsck(session, store).healthy
    repoint = text("UPDATE model_version SET artifact_sha256 = :d WHERE version = 1").bindparams(
        d=v2
    )
    with pytest.raises(DBAPIError, match="not allowed"), session.begin_nested():
        session.execute(repoint)
    without_guards(session, "model_version")
    session.execute(repoint)
    report = fsck(session, store)
    assert not report.healthy
    assert report.missing == report.corrupt == []  # v2's file is intact: only the pointer moved
    assert [line for line in report.repointed if "artifact_sha256" in line] != []
    assert v2 in report.repointed[0]
    assert "artifact_sha256" in _differences(_verify(client, actors))[("changed", "model_version")]


def test_rows_deleted_behind_the_back_are_named_missing(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    approve_version(client, actors)
    tables = (
        "monitoring_settings",
        "lifecycle_event",
        "signature",
        "model_version",
        "prediction_log",
    )
    without_guards(session, *tables)
    for table in tables:
        session.execute(text(f"DELETE FROM {table}"))
    found = _differences(_verify(client, actors))
    assert ("missing", "model_version") in found
    assert ("missing", "signature") in found
    assert ("missing", "lifecycle_event") in found


def test_a_row_inserted_behind_the_back_has_no_audited_state(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    session.execute(
        text(
            "INSERT INTO domain (id, name, instrument, probe_serial, scale, site, created_at, "
            "created_by_id) SELECT :id, 'forged', 'i', 'p', 's', 's', created_at, id "
            "FROM app_user WHERE username = 'test-admin'"
        ),
        {"id": "0" * 31 + "1"},
    )
    report = audit_verify.verify(session)
    kinds = [(d.kind, d.table) for d in report.reconciliation.differences]  # type: ignore[union-attr]
    assert kinds == [("unaudited", "domain")]


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "audit.key"
    checkpoints.keygen(path)
    monkeypatch.setenv("REGISTRY_AUDIT_SIGNING_KEY", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_prediction_log_rows_removed_are_found_against_the_seal(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
    backend: str,
) -> None:
    for _ in range(2):
        assert (
            _predict(client, actors[Role.developer], trained["X"][:1].tolist()).status_code == 200
        )
    sealed = seal(session)
    assert sealed is not None
    assert sealed.rows is not None
    assert sealed.rows["prediction_log"] == 2
    # Its reference results go with it (a TRUNCATE of the log alone is refused by their key).
    tables = "prediction_log, reference_result, monitoring_alarm"
    wipe = f"TRUNCATE {tables}" if backend == "postgresql" else "DELETE FROM prediction_log"
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text(wipe))
    without_guards(session, "prediction_log", "reference_result", "monitoring_alarm")
    session.execute(text(wipe))
    report = _verify(client, actors)
    assert report["valid"] is False
    assert _differences(report)[("rows_removed", "prediction_log")] == {"rows": (2, 0)}


def test_truncated_records_are_found_missing(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    backend: str,
) -> None:
    if backend != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's")
    approve_version(client, actors)
    truncate = "TRUNCATE transfer, model_version, dataset CASCADE"
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text(truncate))
    without_guards(session, *Base.metadata.tables)
    session.execute(text(truncate))
    found = _differences(_verify(client, actors))
    for table in ("dataset", "model_version", "lifecycle_event"):
        assert ("missing", table) in found, table


# --------------------------------------------------------------------------------------------
# GET /audit/verify reconciles incrementally from the last recorded full reconciliation
# --------------------------------------------------------------------------------------------


def _record_full_run(session: Session) -> int:
    """What ``ssreg audit verify --full --record`` does; returns the head the run read."""
    report = audit_verify.verify(session, full=True)
    assert report.reconciliation is not None
    record_reconciliation(session, report.reconciliation, head_seq=report.head_seq, actor="cron")
    return report.head_seq


def test_an_old_row_changed_after_the_full_run_is_not_claimed_checked(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
) -> None:
    head = _record_full_run(session)
    session.execute(text("UPDATE app_user SET role = 'admin' WHERE username = 'test-auditor'"))
    session.expire_all()
    report = _verify(client, actors)
    rec = report["reconciliation"]
    assert rec["scope"] == "since_full_reconciliation"
    assert rec["since_seq"] == head
    assert f"no event after seq {head} wrote were not compared" in rec["not_checked"]
    assert report["last_full_reconciliation"]["valid"] is True
    assert report["last_full_reconciliation"]["head_seq"] == head
    assert ("changed", "app_user") not in _differences(report)  # not seen, and not claimed
    r = client.get("/api/v1/audit/verify?reconcile=full", headers=actors[Role.auditor].headers)
    assert r.status_code == 200, r.text
    full = r.json()
    assert full["valid"] is False
    assert full["reconciliation"]["scope"] == "all"
    assert full["reconciliation"]["not_checked"] is None
    assert _differences(full)[("changed", "app_user")] == {"role": ("auditor", "admin")}


def test_a_row_written_after_the_full_run_and_then_changed_is_found_incrementally(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
) -> None:
    head = _record_full_run(session)
    approve_version(client, actors)  # writes v1's row again (its status), after the run
    without_guards(session, "model_version")
    session.execute(text(WIDEN))
    session.expire_all()
    report = _verify(client, actors)
    assert report["valid"] is False
    assert report["reconciliation"]["since_seq"] == head
    assert "domain" not in report["reconciliation"]["tables"]  # no domain row written since
    changed = _differences(report)[("changed", "model_version")]
    assert changed["t2_limit_99"][1] == 1e12


def test_a_row_written_after_the_full_run_and_then_deleted_is_found_missing(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
) -> None:
    _record_full_run(session)
    approve_version(client, actors)  # its lifecycle event rows are written after the run
    without_guards(session, "monitoring_settings", "lifecycle_event")
    for table in ("monitoring_settings", "lifecycle_event"):  # the first refers to the second
        session.execute(text(f"DELETE FROM {table}"))
    report = _verify(client, actors)
    assert report["reconciliation"]["scope"] == "since_full_reconciliation"
    assert report["valid"] is False
    assert ("missing", "lifecycle_event") in _differences(report)


def test_a_full_run_that_found_differences_keeps_the_verification_invalid(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
) -> None:
    session.execute(text("UPDATE app_user SET role = 'admin' WHERE username = 'test-auditor'"))
    session.expire_all()
    _record_full_run(session)
    report = _verify(client, actors)
    assert report["reconciliation"]["scope"] == "since_full_reconciliation"
    assert report["reconciliation"]["valid"] is True  # the role row was not written since
    assert report["last_full_reconciliation"]["valid"] is False
    assert report["last_full_reconciliation"]["differences"] == 1
    assert report["valid"] is False


def test_a_reconciliation_record_without_its_seal_is_not_trusted(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    key: Path,
) -> None:
    # Appended through the application's own function, but not sealed (no signing key
    # needed to do this with the database in hand).
    audit.record(
        session,
        actor="mallory",
        action=AuditAction.audit_reconcile,
        entity_type=AuditEntityType.audit_chain,
        entity_id="chain",
        after={"head_seq": 10**6, "valid": True, "rows_checked": 1, "differences": 0},
    )
    report = _verify(client, actors)
    assert report["valid"] is False
    assert any("is not signed by a seal" in p for p in report["problems"]), report["problems"]
    assert report["last_full_reconciliation"] is None
    assert report["reconciliation"]["scope"] == "all"


def test_without_a_recorded_run_everything_is_reconciled(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], key: Path
) -> None:
    report = _verify(client, actors)
    assert report["reconciliation"]["scope"] == "all"
    assert report["last_full_reconciliation"] is None
    assert any("no signed full reconciliation recorded" in n for n in report["notes"])


@pytest.mark.parametrize("value", ["partial", "true", ""])
def test_an_unknown_reconcile_value_is_a_422(
    client: TestClient, actors: dict[Role, Actor], value: str
) -> None:
    r = client.get(f"/api/v1/audit/verify?reconcile={value}", headers=actors[Role.auditor].headers)
    assert_error(r, 422, "reconcile")


def test_reconcile_none_checks_the_chain_only(
    client: TestClient, actors: dict[Role, Actor]
) -> None:
    r = client.get("/api/v1/audit/verify?reconcile=none", headers=actors[Role.auditor].headers)
    assert r.status_code == 200, r.text
    assert r.json()["reconciliation"] is None
