"""Monitoring against reference results over the API: references recorded, refused and
corrected; the rules evaluated when a reference is posted; a breach makes the version due
(audited, with its figures and references) and puts a warning on its predictions; QA's
settings; a new window at requalification."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core import monitoring as charts
from app.db.base import utcnow
from app.db.models import (
    AuditEvent,
    LifecycleEvent,
    MonitoringAlarm,
    MonitoringSettings,
    ReferenceResult,
)
from app.enums import Role
from tests.helpers import PASSWORD, Actor, assert_error, set_lifecycle
from tests.signing import approve_version, sign_version

V1 = "/api/v1/models/titer_pls/versions/1"
MONITORING = V1 + "/monitoring"
ALIAS = "/api/v1/models/titer_pls/aliases/plant-2000L"


def _predict(
    client: TestClient,
    actor: Actor,
    X: np.ndarray,
    *,
    url: str = V1 + "/predict",
    prefix: str = "S",
) -> dict[str, Any]:
    ids = [f"{prefix}{i:03d}" for i in range(X.shape[0])]
    body = json.dumps({"spectra": X.tolist(), "sample_ids": ids}).encode()
    r = client.post(
        url, content=body, headers={**actor.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _reference(
    client: TestClient,
    actor: Actor,
    log_id: str,
    value: float,
    *,
    sample_id: str | None = None,
    row: int | None = None,
    hours_ago: float = 1.0,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {
        "value": value,
        "units": "g/L",
        "assay_method": "Protein A HPLC",
        "sample_time": (utcnow() - timedelta(hours=hours_ago)).isoformat(),
        "lab_reference": f"LIMS-{uuid.uuid4().hex[:8]}",
        **extra,
    }
    if sample_id is not None:
        body["sample_id"] = sample_id
    if row is not None:
        body["row"] = row
    return client.post(
        f"/api/v1/prediction-log/{log_id}/references", json=body, headers=actor.headers
    )


def _monitoring(client: TestClient, actor: Actor) -> dict[str, Any]:
    r = client.get(MONITORING, headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _count(session: Session, table: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _audit(session: Session, action: str) -> list[AuditEvent]:
    session.expire_all()
    stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
    return list(session.scalars(stmt))


def _post_series(
    client: TestClient, actor: Actor, call: dict[str, Any], z: np.ndarray, sep: float, centre: float
) -> list[dict[str, Any]]:
    """One reference per sample of ``call`` so that the standardized residuals are ``z``, in
    sample-time order (one a day)."""
    out = []
    for i, zi in enumerate(z):
        value = call["predictions"][i] + centre + sep * float(zi)
        r = _reference(
            client, actor, call["prediction_log_id"], value, row=i, hours_ago=24.0 * (len(z) - i)
        )
        assert r.status_code == 201, r.text
        out.append(dict(r.json()))
    return out


@pytest.fixture
def approved(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> dict[str, Any]:
    """titer_pls v1 approved through the signatures (monitoring settings recorded with it)."""
    approve_version(client, actors)
    settings = _monitoring(client, actors[Role.qa])["settings"]
    return {**trained, "sep": settings["validation_sep"], "centre": settings["centre_value"]}


def test_a_reference_is_compared_with_its_prediction_and_audited(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant = actors[Role.plant]
    call = _predict(client, plant, approved["X"][:3])
    value = call["predictions"][1] + approved["centre"] + 0.5 * approved["sep"]
    r = _reference(client, plant, call["prediction_log_id"], value, sample_id="S001")
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["row"], out["sample_id"], out["revision"], out["in_force"]) == (1, "S001", 1, True)
    assert out["predicted"] == pytest.approx(call["predictions"][1])
    assert out["residual"] == pytest.approx(value - call["predictions"][1])
    assert (out["version_status"], out["alarms_raised"]) == ("approved", [])
    assert out["posted_by"] == "test-plant"
    (event,) = _audit(session, "reference.record")
    assert (event.entity_type, event.entity_id, event.actor) == (
        "reference",
        out["id"],
        "test-plant",
    )
    assert event.after is not None
    assert event.after["value"] == value
    assert event.after["version"] == "titer_pls v1"
    listed = client.get(
        f"/api/v1/prediction-log/{call['prediction_log_id']}/references",
        headers=actors[Role.qa].headers,
    )
    assert [x["id"] for x in listed.json()] == [out["id"]]
    view = _monitoring(client, actors[Role.qa])
    (point,) = view["series"]
    assert point["z"] == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"units": "mg/mL"}, 422, "units 'mg/mL' are not the model's"),
        ({"sample_id": "NOPE"}, 422, "sample 'NOPE' is not among the 3 samples"),
        ({"row": 3, "sample_id": None}, 422, "row 3 is not a sample of this call"),
        ({"row": 1}, 422, "exactly one of them"),
        ({"hours_ago": -2}, 422, "is in the future"),
        ({"sample_time": "2026-01-01T00:00:00"}, 422, "needs a time zone"),
        ({"value": "NaN"}, 422, "finite"),
        ({"correction_reason": "typo"}, 422, "corrects nothing"),
    ],
)
def test_bad_references_are_refused_and_write_nothing(
    client: TestClient,
    actors: dict[Role, Actor],
    approved: dict[str, Any],
    session: Session,
    change: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    plant = actors[Role.plant]
    call = _predict(client, plant, approved["X"][:3])
    before = (_count(session, ReferenceResult), _count(session, AuditEvent))
    args: dict[str, Any] = {"sample_id": "S000", **change}
    value = args.pop("value", 1.0)
    hours_ago = args.pop("hours_ago", 1.0)
    r = _reference(client, plant, call["prediction_log_id"], value, hours_ago=hours_ago, **args)
    assert_error(r, status, fragment)
    assert (_count(session, ReferenceResult), _count(session, AuditEvent)) == before


def test_an_unknown_call_is_404_and_a_second_reference_needs_a_correction_reason(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant = actors[Role.plant]
    assert_error(_reference(client, plant, str(uuid.uuid4()), 1.0, row=0), 404, "does not exist")
    call = _predict(client, plant, approved["X"][:3])
    log_id = call["prediction_log_id"]
    first = _reference(client, plant, log_id, 9.9, sample_id="S002")
    assert first.status_code == 201, first.text
    before = (_count(session, ReferenceResult), _count(session, AuditEvent))
    again = _reference(client, plant, log_id, 1.1, sample_id="S002")
    assert_error(again, 409, "sample 'S002'", "has a reference already", "correction_reason")
    assert (_count(session, ReferenceResult), _count(session, AuditEvent)) == before
    # corrected with a reason: revision 2 in force, the false one still visible
    fixed = _reference(
        client, plant, log_id, 1.1, row=2, correction_reason="transcription error: 9.9 for 1.1"
    )
    assert fixed.status_code == 201, fixed.text
    assert (fixed.json()["revision"], fixed.json()["corrects_id"]) == (2, first.json()["id"])
    (audited,) = [
        e for e in _audit(session, "reference.record") if e.entity_id == fixed.json()["id"]
    ]
    assert audited.reason == "transcription error: 9.9 for 1.1"
    assert audited.before is not None
    assert audited.before["value"] == 9.9
    listed = client.get(
        f"/api/v1/prediction-log/{log_id}/references", headers=actors[Role.auditor].headers
    ).json()
    assert [(x["value"], x["revision"], x["in_force"]) for x in listed] == [
        (9.9, 1, False),
        (1.1, 2, True),
    ]
    view = _monitoring(client, actors[Role.qa])
    assert [p["reference"] for p in view["series"]] == [1.1]
    assert sorted((x["value"], x["in_force"]) for x in view["references"]) == [
        (1.1, True),
        (9.9, False),
    ]


def test_a_version_with_no_references_raises_nothing(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any]
) -> None:
    plant = actors[Role.plant]
    for _ in range(3):
        call = _predict(client, plant, approved["X"])
        assert call["warnings"] == []
    view = _monitoring(client, actors[Role.qa])
    assert (view["status"], view["alarms"], view["warnings"], view["series"]) == (
        "approved",
        [],
        [],
        [],
    )
    states = {s["rule"]: s["state"] for s in view["rules"]}
    assert states["ewma"] == states["cusum"] == "no_data"
    assert view["n_spectra"] == 3 * approved["X"].shape[0]
    assert len(view["exceedance"]) == 3
    assert view["settings"]["sequence"] == 1  # recorded at the approval
    assert view["settings"]["origin"] == "qualification"


def test_a_one_sep_bias_step_makes_the_version_due_with_an_audited_trigger_and_warnings(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant, qa = actors[Role.plant], actors[Role.qa]
    assert (
        client.post(
            ALIAS,
            json={
                "version": 1,
                "reason": "plant uses v1",
                "change_control": "CC-MON-1",
                "username": "test-qa",
                "password": PASSWORD,
            },
            headers=qa.headers,
        ).status_code
        == 201
    )
    rng = np.random.default_rng(13)
    n_before, n_after = 10, 30
    z = rng.standard_normal(n_before + n_after)
    z[n_before:] += 1.0  # a bias step of 1 SEP: the model under-predicts from here on
    X = np.vstack([approved["X"]] * 4)[: z.size]
    call = _predict(client, plant, X, url=ALIAS + "/predict")
    # the oracle: where the charts on the same residuals first breach
    first = min(
        int(a) for a in (charts.ewma_chart(z).alarm, charts.cusum_chart(z).alarm) if int(a) >= 0
    )
    delay = first + 1 - n_before
    # the step is caught within its average run length (EWMA 10.8, CUSUM 10.4 references)
    assert 0 < delay <= charts.cusum_arl(0.5, 5.0, 1.0), delay
    posted = _post_series(client, plant, call, z, approved["sep"], approved["centre"])
    raised = [(i, p["alarms_raised"]) for i, p in enumerate(posted) if p["alarms_raised"]]
    i, alarms = raised[0]
    assert i == first
    assert posted[i]["version_status"] == "requalification_due"
    assert all(p["version_status"] == "approved" for p in posted[:i])
    # one trigger: later references neither raise the same rule again nor transition again
    rules = [a["rule"] for _, group in raised for a in group]
    assert len(rules) == len(set(rules))
    session.expire_all()
    (transition,) = session.scalars(
        select(LifecycleEvent).where(LifecycleEvent.trigger == "monitoring")
    )
    assert (transition.from_status, transition.to_status) == ("approved", "requalification_due")
    assert transition.actor == "service:monitoring"
    alarm = alarms[0]
    assert alarm["lifecycle_event_id"] == str(transition.id)
    assert alarm["reference_ids"] == [p["id"] for p in posted[: i + 1]]
    assert alarm["trigger_reference_id"] == posted[i]["id"]
    assert alarm["message"] in transition.reason
    audited = _audit(session, "monitoring.alarm")
    assert [e.after["rule"] for e in audited if e.after] == rules
    assert audited[0].entity_id == str(
        session.get(MonitoringAlarm, uuid.UUID(alarm["id"])).model_version_id
    )  # type: ignore[union-attr]
    assert audited[0].after is not None
    assert audited[0].after["figures"]["z"] == pytest.approx(list(z[: i + 1]), abs=1e-5)
    # every prediction of the version, by version or through its alias, carries the warning
    for url in (V1 + "/predict", ALIAS + "/predict"):
        out = _predict(client, plant, approved["X"][:1], url=url)
        assert out["status"] == "requalification_due"
        assert out["warnings"] == [a["message"] for _, group in raised for a in group]
        assert "monitoring alarm" in out["warnings"][0]
    view = _monitoring(client, qa)
    assert view["warnings"] == out["warnings"]
    assert {s["rule"]: s["state"] for s in view["rules"]}[alarm["rule"]] == "alarm"
    assert [a["id"] for a in view["alarms"]] == [a["id"] for _, g in raised for a in g]
    assert view["aliases_naming_it"] == ["plant-2000L"]
    assert [a["alias"] for a in view["by_alias"]] == ["plant-2000L"]


def test_requalification_opens_a_new_window_and_ends_the_warnings(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant, qa = actors[Role.plant], actors[Role.qa]
    z = np.full(8, 3.0)  # a gross bias: caught at once
    call = _predict(client, plant, approved["X"][: z.size])
    posted = _post_series(client, plant, call, z, approved["sep"], approved["centre"])
    assert posted[-1]["version_status"] == "requalification_due"
    r = sign_version(client, qa, "approved", comment="media lot investigated; bias corrected")
    assert r.status_code == 201, r.text
    out = _predict(client, plant, approved["X"][:2])
    assert (out["status"], out["warnings"]) == ("approved", [])
    view = _monitoring(client, qa)
    assert view["series"] == []
    assert view["references"] == []
    assert [s["origin"] for s in view["settings_history"]] == ["qualification", "qualification"]
    assert view["settings"]["window_start"] > view["settings_history"][0]["window_start"]
    assert len(view["alarms"]) >= 1  # the old window's alarms stay on record
    # references of predictions made before the requalification do not count any more
    late = _reference(client, plant, call["prediction_log_id"], 99.0, row=0, correction_reason="x")
    assert late.status_code == 201, late.text
    assert late.json()["alarms_raised"] == []
    assert _monitoring(client, qa)["series"] == []


def test_exceeded_t2_limits_alarm_on_the_next_reference(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any]
) -> None:
    plant = actors[Role.plant]
    far = approved["X"] * 3.0  # spectra far outside the calibration: T² and Q beyond limits
    call = _predict(client, plant, far)
    assert call["flag_counts"]["any_flag"] > 6
    view = _monitoring(client, actors[Role.qa])
    assert view["status"] == "approved"  # evaluated only when a reference is posted
    posted = _reference(client, plant, call["prediction_log_id"], call["predictions"][0], row=0)
    assert posted.status_code == 201, posted.text
    rules = {a["rule"] for a in posted.json()["alarms_raised"]}
    assert rules & {"t2_exceedance", "q_exceedance"}
    assert posted.json()["version_status"] == "requalification_due"


def test_qa_changes_the_settings_with_a_reason_and_they_are_evaluated_at_once(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant, qa = actors[Role.plant], actors[Role.qa]
    z = np.array([0.9, 0.8, 0.9, 0.8])  # within L = 3, beyond L = 1
    call = _predict(client, plant, approved["X"][: z.size])
    posted = _post_series(client, plant, call, z, approved["sep"], approved["centre"])
    assert not any(p["alarms_raised"] for p in posted)
    url = MONITORING + "/settings"
    assert_error(client.post(url, json={"ewma_L": 1.0}, headers=qa.headers), 422, "reason")
    assert_error(
        client.post(url, json={"ewma_L": 1.0, "reason": "tighter"}, headers=plant.headers), 403
    )
    assert_error(
        client.post(url, json={"ewma_L": 3.0, "reason": "same"}, headers=qa.headers),
        422,
        "nothing changes",
    )
    assert_error(client.post(url, json={"ewma_L": 0, "reason": "x"}, headers=qa.headers), 422)
    r = client.post(
        url, json={"ewma_L": 1.0, "rules": ["ewma"], "reason": "tighter"}, headers=qa.headers
    )
    assert r.status_code == 200, r.text
    view = r.json()
    assert [s["sequence"] for s in view["settings_history"]] == [1, 2]
    assert view["settings_history"][0]["parameters"]["ewma_L"] == 3.0
    assert (view["settings"]["origin"], view["settings"]["set_by"]) == ("qa", "test-qa")
    assert view["settings"]["window_start"] == view["settings_history"][0]["window_start"]
    assert view["settings"]["design"]["ewma_arl0"] < 50
    assert view["status"] == "requalification_due"
    assert [a["rule"] for a in view["alarms"]] == ["ewma"]
    (audited,) = [e for e in _audit(session, "monitoring.settings") if e.reason == "tighter"]
    assert audited.before is not None
    assert audited.after is not None
    assert (audited.before["parameters"]["ewma_L"], audited.after["parameters"]["ewma_L"]) == (
        3.0,
        1.0,
    )
    cusum = {s["rule"]: s for s in view["rules"]}["cusum"]
    assert cusum["enabled"] is False


def test_versions_not_deployed_are_charted_but_raise_nothing(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    dev = actors[Role.developer]
    call = _predict(client, dev, trained["X"][:6])
    for i in range(6):
        r = _reference(client, dev, call["prediction_log_id"], 50.0, row=i)
        assert r.status_code == 201, r.text
        assert (r.json()["version_status"], r.json()["alarms_raised"]) == ("draft", [])
    view = _monitoring(client, actors[Role.auditor])
    assert (view["deployed"], view["settings"]["sequence"]) == (False, None)
    assert len(view["series"]) == 6
    assert {s["rule"]: s["state"] for s in view["rules"]}["cusum"] == "alarm"


def test_a_plant_key_posts_references_only_within_its_scope(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    dev = actors[Role.developer]
    call = _predict(client, dev, approved["X"][:1])
    admin = actors[Role.admin].headers
    r = client.post(
        "/api/v1/domains",
        json={
            "name": "elsewhere",
            "instrument": "i",
            "probe_serial": "p",
            "scale": "s",
            "site": "s",
            "reason": "t",
        },
        headers=dev.headers,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/users/test-plant/scopes",
        json={"domains": ["elsewhere"], "reason": "t"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    refused = _reference(client, actors[Role.plant], call["prediction_log_id"], 1.0, row=0)
    assert_error(refused, 403, "not scoped to domain")
    assert_error(client.get(MONITORING, headers=actors[Role.plant].headers), 403)


def test_monitoring_rows_are_append_only_in_the_database(
    client: TestClient, actors: dict[Role, Actor], approved: dict[str, Any], session: Session
) -> None:
    plant = actors[Role.plant]
    z = np.full(6, 3.0)
    call = _predict(client, plant, approved["X"][: z.size])
    _post_series(client, plant, call, z, approved["sep"], approved["centre"])
    assert _count(session, MonitoringAlarm) >= 1
    for table in ("reference_result", "monitoring_alarm", "monitoring_settings"):
        for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):
            with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
                session.execute(text(statement))


def test_a_bypassed_qualification_monitors_every_prediction_with_the_defaults(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    """A version qualified without a recorded settings row (before monitoring existed):
    the defaults apply and the window is all its predictions."""
    set_lifecycle(session, "titer_pls", 1, "approved")
    view = _monitoring(client, actors[Role.qa])
    assert (view["settings"]["sequence"], view["settings"]["window_start"]) == (None, None)
    assert view["settings"]["parameters"]["ewma_lambda"] == 0.2
    assert _count(session, MonitoringSettings) == 0
