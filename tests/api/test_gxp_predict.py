"""Issue 11, prediction side: purpose and intended use, the per-call results in the log,
aliases (signed moves, history, predictions through them) and scoped service accounts.

Versions are put into approved/requalified with :func:`tests.helpers.set_lifecycle`, which
BYPASSES THE LIFECYCLE (no signature): switch to signed approvals once those exist here.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import AccountScope, AliasAssignment, AuditEvent, PredictionLog, User
from app.enums import Role
from app.services.canonical import sha256_hex
from tests.factories import PLANT_DOMAIN, create_domain
from tests.helpers import PASSWORD, Actor, assert_error, grant_scope, set_lifecycle

PREDICT = "/api/v1/models/titer_pls/versions/1/predict"
ALIAS = "/api/v1/models/titer_pls/aliases/plant-2000L"
LOG = "/api/v1/prediction-log"


def _json(**body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _predict(
    client: TestClient,
    headers: dict[str, str],
    X: Any,
    url: str = PREDICT,
    **body: Any,
) -> Any:
    return client.post(
        url,
        content=_json(spectra=X, **body),
        headers=headers | {"Content-Type": "application/json"},
    )


def _log_rows(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(PredictionLog)) or 0)


def _move(
    client: TestClient,
    headers: dict[str, str],
    version: int | None,
    *,
    alias: str = "plant-2000L",
    password: str = PASSWORD,
    username: str = "test-qa",
    change_control: str = "CC-2026-0042",
) -> Any:
    body = {
        "version": version,
        "reason": "point the plant at the qualified version",
        "change_control": change_control,
        "username": username,
        "password": password,
    }
    return client.post(f"/api/v1/models/titer_pls/aliases/{alias}", json=body, headers=headers)


# --------------------------------------------------------------------------------------------
# purpose and intended use
# --------------------------------------------------------------------------------------------


def test_evaluation_is_the_default_served_by_a_draft_and_marked_not_for_gmp(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    r = _predict(client, actors[Role.plant].headers, trained["X"][:2])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["purpose"] == "evaluation"
    assert out["for_gmp"] is False
    assert "not for GMP use" in out["notice"]
    assert out["qualified"] is False
    assert out["status"] == "draft"
    assert out["intended_use"] == "monitoring"
    assert out["alias"] is None
    log = session.get(PredictionLog, uuid.UUID(out["prediction_log_id"]))
    assert log is not None
    assert (log.purpose, log.for_gmp, log.qualified) == ("evaluation", False, False)


@pytest.mark.parametrize("purpose", ["advisory", "monitoring", "control", "release"])
def test_gmp_purposes_on_an_unqualified_version_are_409_naming_both(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    purpose: str,
) -> None:
    before = _log_rows(session)
    r = _predict(client, actors[Role.plant].headers, trained["X"][:2], purpose=purpose)
    assert_error(r, 409, "titer_pls v1 is draft (not qualified)", f"purpose {purpose!r}")
    assert f"covers {purpose} (this one: monitoring)" in r.json()["detail"]
    assert _log_rows(session) == before


def test_a_qualified_version_serves_the_purposes_its_intended_use_covers(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    set_lifecycle(session, "titer_pls", 1, "approved")
    plant = actors[Role.plant].headers
    for purpose in ("evaluation", "advisory", "monitoring"):
        r = _predict(client, plant, trained["X"][:1], purpose=purpose)
        assert r.status_code == 200, r.text
        assert r.json()["qualified"] is True
        assert r.json()["for_gmp"] is (purpose != "evaluation")
        assert (r.json()["notice"] is None) is (purpose != "evaluation")
    for purpose in ("control", "release"):
        r = _predict(client, plant, trained["X"][:1], purpose=purpose)
        assert_error(r, 409, "approved (qualified)", f"covers {purpose} (this one: monitoring)")
    # the query parameter works as well (Arrow bodies carry their purpose there)
    r = client.post(
        PREDICT,
        params={"purpose": "monitoring"},
        content=_json(spectra=trained["X"][:1]),
        headers=plant | {"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["purpose"] == "monitoring"
    logged = session.get(PredictionLog, uuid.UUID(r.json()["prediction_log_id"]))
    assert logged is not None
    assert logged.for_gmp is True
    assert logged.qualified is True


def test_a_version_past_its_review_date_is_409_for_monitoring_and_served_for_evaluation(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    set_lifecycle(session, "titer_pls", 1, "approved", review_due_at=utcnow() - timedelta(days=1))
    plant = actors[Role.plant].headers
    r = _predict(client, plant, trained["X"][:1], purpose="monitoring")
    assert_error(r, 409, "approved but its periodic review was due on", "(not qualified)")
    r = _predict(client, plant, trained["X"][:1])
    assert r.status_code == 200, r.text
    assert r.json()["qualified"] is False
    assert r.json()["for_gmp"] is False


@pytest.mark.parametrize("where", ["body", "query"])
def test_an_unknown_purpose_is_422_naming_the_allowed_ones(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    where: str,
) -> None:
    before = _log_rows(session)
    headers = actors[Role.plant].headers | {"Content-Type": "application/json"}
    if where == "body":
        r = client.post(
            PREDICT, content=_json(spectra=trained["X"][:1], purpose="QC"), headers=headers
        )
    else:
        r = client.post(
            PREDICT,
            params={"purpose": "QC"},
            content=_json(spectra=trained["X"][:1]),
            headers=headers,
        )
    assert_error(r, 422, "evaluation", "advisory", "monitoring", "control", "release")
    assert _log_rows(session) == before


def test_a_retired_version_is_409_even_for_evaluation(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    set_lifecycle(session, "titer_pls", 1, "retired")
    assert_error(_predict(client, actors[Role.plant].headers, trained["X"][:1]), 409, "retired")


# --------------------------------------------------------------------------------------------
# the per-call results
# --------------------------------------------------------------------------------------------


def test_results_and_sample_ids_are_logged_and_returned_with_a_valid_sha256(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    X = trained["X"][:3].copy()
    X[2] *= 10  # flagged
    ids = ["B42-H01", "B42-H02", "B42-H03"]
    r = _predict(client, actors[Role.plant].headers, X, sample_ids=ids)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["sample_ids"] == ids
    entry = client.get(f"{LOG}/{out['prediction_log_id']}", headers=actors[Role.auditor].headers)
    assert entry.status_code == 200, entry.text
    got = entry.json()
    assert got["results"] == {
        "predictions": out["predictions"],
        "t2": out["t2"],
        "q": out["q"],
        "flags": out["flags"],
        "sample_ids": ids,
    }
    assert got["results_sha256"] == sha256_hex(got["results"])
    assert got["results_valid"] is True
    assert got["purpose"] == "evaluation"
    assert got["for_gmp"] is False
    assert got["results"]["flags"]["t2_exceeded"][2] is True
    # the stored row holds the same
    row = session.get(PredictionLog, uuid.UUID(out["prediction_log_id"]))
    assert row is not None
    assert row.results_sha256 == got["results_sha256"]


def test_an_altered_results_column_shows_invalid(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    """The table is append-only at the database; a forged row (inserted with another row's
    sha256) is what an auditor would then find: results_valid false."""
    r = _predict(client, actors[Role.plant].headers, trained["X"][:2])
    row = session.get(PredictionLog, uuid.UUID(r.json()["prediction_log_id"]))
    assert row is not None
    assert row.results is not None
    forged_results = {**row.results, "predictions": [0.0, 0.0]}
    forged = PredictionLog(
        **{
            c.key: getattr(row, c.key)
            for c in PredictionLog.__table__.columns
            if c.key not in ("id", "results")
        },
        id=uuid.uuid4(),
        results=forged_results,
    )
    session.add(forged)
    session.flush()
    got = client.get(f"{LOG}/{forged.id}", headers=actors[Role.qa].headers).json()
    assert got["results_valid"] is False


def test_arrow_sample_id_column_is_logged(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"][:2], trained["axis"]
    columns: dict[str, Any] = {"sample_id": ["S-1", "S-2"]}
    for j, position in enumerate(axis):
        columns[f"wn_{position:g}"] = X[:, j]
    sink = io.BytesIO()
    table = pa.table(columns)
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    r = client.post(
        PREDICT,
        content=sink.getvalue(),
        headers=actors[Role.plant].headers
        | {"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["sample_ids"] == ["S-1", "S-2"]
    got = client.get(f"{LOG}/{r.json()['prediction_log_id']}", headers=actors[Role.qa].headers)
    assert got.json()["results"]["sample_ids"] == ["S-1", "S-2"]
    assert got.json()["input_sha256"] == hashlib.sha256(sink.getvalue()).hexdigest()


def test_sample_ids_of_another_length_are_422_and_nothing_is_logged(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    before = _log_rows(session)
    r = _predict(client, actors[Role.plant].headers, trained["X"][:3], sample_ids=["a", "b"])
    assert_error(r, 422, "2 sample ids for 3 spectra")
    assert _log_rows(session) == before


def test_an_unknown_log_entry_is_404(client: TestClient, actors: dict[Role, Actor]) -> None:
    r = client.get(f"{LOG}/{uuid.uuid4()}", headers=actors[Role.qa].headers)
    assert_error(r, 404, "does not exist")


# --------------------------------------------------------------------------------------------
# aliases
# --------------------------------------------------------------------------------------------


def _audit(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_an_alias_move_needs_qa_the_password_and_a_qualified_version(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    qa = actors[Role.qa].headers
    # a developer may not (403), even with a password
    r = _move(client, actors[Role.developer].headers, 1, username="test-developer")
    assert_error(r, 403, code="forbidden")
    # without the password: 422 (both components are required)
    body = {"version": 1, "reason": "r", "change_control": "CC-1"}
    r = client.post(ALIAS, json=body, headers=qa)
    assert_error(r, 422, "password")
    # an unqualified version: 409
    assert_error(_move(client, qa, 1), 409, "titer_pls v1 is draft (not qualified)")
    set_lifecycle(session, "titer_pls", 1, "approved")
    # a wrong password: 401, audited and counted (committed)
    qa_user = session.get(User, actors[Role.qa].user.id)
    assert qa_user is not None
    failures = qa_user.failed_login_count
    r = _move(client, qa, 1, password="wrong password entirely")
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_credentials"
    session.expire_all()
    qa_user = session.get(User, actors[Role.qa].user.id)
    assert qa_user is not None
    assert qa_user.failed_login_count == failures + 1
    refused = _audit(session, "auth.login_failed")
    assert refused
    assert refused[-1].actor == "test-qa"
    assert session.scalar(select(func.count()).select_from(AliasAssignment)) == 0
    # another person's user name with the right password: 401 too
    assert _move(client, qa, 1, username="test-admin").status_code == 401
    # QA, right password, qualified version: 201, one row, audited with before/after
    r = _move(client, qa, 1)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    (move,) = r.json()["history"]
    assert move["assigned_by"] == "test-qa"
    assert move["change_control"] == "CC-2026-0042"
    (event,) = _audit(session, "alias.move")
    assert event.entity_type == "alias"
    assert event.entity_id == "titer_pls/plant-2000L"
    assert event.before == {"version": None, "sequence": None}
    assert event.after is not None
    assert event.after["version"] == 1
    assert event.reason == "point the plant at the qualified version"
    # the same move again is a 409 (nothing to move); a bad name is a 422
    assert_error(_move(client, qa, 1), 409, "already names v1")
    assert_error(_move(client, qa, 1, alias="Plant 2000L"), 422, "not a valid alias name")


def test_alias_history_answers_which_version_at_time_t(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    qa = actors[Role.qa].headers
    set_lifecycle(session, "titer_pls", 1, "approved")
    body = {
        "dataset_sha256": trained["version"]["dataset_sha256"],
        "intended_use": "control",
        "reason": "second",
    }
    r = client.post(
        "/api/v1/models/titer_pls/versions", json=body, headers=actors[Role.developer].headers
    )
    assert r.status_code == 201, r.text
    set_lifecycle(session, "titer_pls", 2, "approved")
    before_first = utcnow()
    first = _move(client, qa, 1)
    assert first.status_code == 201, first.text
    between = utcnow()
    second = _move(client, qa, 2, change_control="CC-2026-0043")
    assert second.status_code == 201, second.text
    reader = actors[Role.auditor].headers

    def named_at(t: datetime | None) -> Any:
        params = {} if t is None else {"at": t.isoformat()}
        r = client.get(ALIAS, params=params, headers=reader)
        assert r.status_code == 200, r.text
        return r.json()

    now = named_at(None)
    assert now["version"] == 2
    assert [(m["sequence"], m["version"], m["change_control"]) for m in now["history"]] == [
        (1, 1, "CC-2026-0042"),
        (2, 2, "CC-2026-0043"),
    ]
    assert named_at(between)["version"] == 1
    assert named_at(before_first)["version"] is None  # documented: null before the first move
    assert named_at(utcnow())["version"] == 2
    # the list of aliases, and the version card names its aliases
    aliases = client.get("/api/v1/models/titer_pls/aliases", headers=reader).json()
    assert [(a["alias"], a["version"], a["qualified"]) for a in aliases] == [
        ("plant-2000L", 2, True)
    ]
    card = client.get("/api/v1/models/titer_pls/versions/2", headers=reader).json()
    assert card["aliases"] == ["plant-2000L"]
    assert client.get("/api/v1/models/titer_pls/versions/1", headers=reader).json()["aliases"] == []
    # withdrawing: version null now, the history keeps every move
    withdrawn = _move(client, qa, None)
    assert withdrawn.status_code == 201, withdrawn.text
    assert withdrawn.json()["version"] is None
    assert len(withdrawn.json()["history"]) == 3
    r = _predict(client, actors[Role.plant].headers, trained["X"][:1], url=ALIAS + "/predict")
    assert_error(r, 404, "withdrawn")
    # unknown alias; a naive time
    assert_error(client.get(ALIAS + "x", headers=reader), 404, "no alias")
    r = client.get(ALIAS, params={"at": "2026-03-03T12:00:00"}, headers=reader)
    assert_error(r, 422, "time zone")


def test_alias_predict_logs_the_alias_and_follows_the_version_state(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    set_lifecycle(session, "titer_pls", 1, "approved")
    assert _move(client, actors[Role.qa].headers, 1).status_code == 201
    plant = actors[Role.plant].headers
    r = _predict(client, plant, trained["X"][:2], url=ALIAS + "/predict", purpose="monitoring")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["alias"], out["version"], out["for_gmp"]) == ("plant-2000L", 1, True)
    row = session.get(PredictionLog, uuid.UUID(out["prediction_log_id"]))
    assert row is not None
    assert row.alias == "plant-2000L"
    assert row.for_gmp is True
    listed = client.get(LOG, headers=actors[Role.qa].headers).json()["entries"]
    assert listed[-1]["alias"] == "plant-2000L"
    # the version becomes unqualified: the alias still resolves, GMP purposes are refused
    set_lifecycle(session, "titer_pls", 1, "requalification_due")
    r = _predict(client, plant, trained["X"][:1], url=ALIAS + "/predict", purpose="monitoring")
    assert_error(r, 409, "alias 'plant-2000L'", "requalification_due (not qualified)")
    r = _predict(client, plant, trained["X"][:1], url=ALIAS + "/predict")
    assert r.status_code == 200, r.text
    assert r.json()["for_gmp"] is False
    assert r.json()["alias"] == "plant-2000L"
    # an alias never assigned, a model unknown
    r = _predict(
        client, plant, trained["X"][:1], url="/api/v1/models/titer_pls/aliases/nope/predict"
    )
    assert_error(r, 404, "no alias 'nope'")
    r = _predict(client, plant, trained["X"][:1], url="/api/v1/models/nope/aliases/a/predict")
    assert_error(r, 404, "'nope'")


# --------------------------------------------------------------------------------------------
# scoped service accounts
# --------------------------------------------------------------------------------------------


def test_a_scoped_key_is_refused_on_another_domain_and_after_its_scope_changes(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    admin, plant = actors[Role.admin].headers, actors[Role.plant].headers
    create_domain(client, actors[Role.developer].headers, PLANT_DOMAIN, scale="2000 L")
    assert _predict(client, plant, trained["X"][:1]).status_code == 200  # in scope (fixture)
    # a new scope row without the development domain bites at the next call
    granted = grant_scope(client, admin, [PLANT_DOMAIN])
    assert granted["scope"]["domains"] == [PLANT_DOMAIN]
    assert granted["scope"]["sequence"] == 2
    before = _log_rows(session)
    r = _predict(client, plant, trained["X"][:1])
    assert_error(r, 403, "not scoped to domain 'dev-raman-ambr250'", code="forbidden")
    assert _log_rows(session) == before
    # reading follows the scope too
    assert client.get("/api/v1/models", headers=plant).json() == []
    assert_error(client.get("/api/v1/models/titer_pls/versions/1", headers=plant), 403)
    # a model list narrows a scope
    grant_scope(client, admin, ["dev-raman-ambr250"], models=["titer_pls"])
    assert _predict(client, plant, trained["X"][:1]).status_code == 200
    assert [m["name"] for m in client.get("/api/v1/models", headers=plant).json()] == ["titer_pls"]
    # audited, and the history kept
    events = _audit(session, "user.scope")
    assert [e.after["sequence"] for e in events if e.after] == [1, 2, 3]
    assert events[1].before == {"sequence": 1, "domains": ["dev-raman-ambr250"], "models": None}
    rows = session.scalars(
        select(AccountScope).where(AccountScope.user_id == actors[Role.plant].user.id)
    ).all()
    assert len(rows) == 3
    # GET /users shows the scope in force
    users = {u["username"]: u for u in client.get("/api/v1/users", headers=admin).json()}
    assert users["test-plant"]["scope"]["models"] == ["titer_pls"]
    assert users["test-qa"]["scope"] is None


def test_a_plant_account_without_scope_is_bound_to_no_domain(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    admin = actors[Role.admin].headers
    body = {"username": "plant-new", "full_name": "DCS", "role": "plant", "reason": "r"}
    created = client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    assert_error(_predict(client, key, trained["X"][:1]), 403, "bound to no domain")
    # created with its first scope
    body = body | {"username": "plant-scoped", "domains": ["dev-raman-ambr250"]}
    created = client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    assert _predict(client, key, trained["X"][:1]).status_code == 200


@pytest.mark.parametrize(
    ("target", "body", "status", "words"),
    [
        ("test-qa", {"domains": ["dev-raman-ambr250"]}, 422, "role qa"),
        ("test-plant", {"domains": []}, 422, "domains"),
        ("test-plant", {"domains": ["no-such-domain"]}, 404, "no-such-domain"),
        ("test-plant", {"domains": ["dev-raman-ambr250"], "models": ["nope"]}, 404, "nope"),
        ("nobody", {"domains": ["dev-raman-ambr250"]}, 404, "nobody"),
    ],
)
def test_bad_scope_grants_are_refused_and_write_nothing(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    session: Session,
    target: str,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    before = session.scalar(select(func.count()).select_from(AccountScope))
    r = client.post(
        f"/api/v1/users/{target}/scopes",
        json=body | {"reason": "r"},
        headers=actors[Role.admin].headers,
    )
    assert_error(r, status, words)
    assert session.scalar(select(func.count()).select_from(AccountScope)) == before


def test_a_person_cannot_be_created_with_a_scope(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    body = {
        "username": "qa-two",
        "full_name": "QA",
        "role": "qa",
        "password": PASSWORD,
        "domains": ["dev-raman-ambr250"],
        "reason": "r",
    }
    r = client.post("/api/v1/users", json=body, headers=actors[Role.admin].headers)
    assert_error(r, 422, "service accounts")


def test_a_revoked_key_is_401_on_both_predict_routes(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any], session: Session
) -> None:
    admin = actors[Role.admin].headers
    body = {
        "username": "plant-leaky",
        "full_name": "DCS",
        "role": "plant",
        "domains": ["dev-raman-ambr250"],
        "reason": "r",
    }
    created = client.post("/api/v1/users", json=body, headers=admin)
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    assert _predict(client, key, trained["X"][:1]).status_code == 200
    r = client.post(
        "/api/v1/users/plant-leaky/api-key/revoke", json={"reason": "leaked"}, headers=admin
    )
    assert r.status_code == 200, r.text
    before = _log_rows(session)
    assert_error(_predict(client, key, trained["X"][:1]), 401, code="not_authenticated")
    r = _predict(client, key, trained["X"][:1], url=ALIAS + "/predict")
    assert_error(r, 401, code="not_authenticated")
    assert _log_rows(session) == before


def test_plant_keys_cannot_download_records(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers
    sha = trained["version"]["dataset_sha256"]
    for url in (
        f"/api/v1/datasets/{sha}/content",
        "/api/v1/models/titer_pls/versions/1/artifact",
        "/api/v1/models/titer_pls/versions/1/lineage",
        "/api/v1/transfers",
        "/api/v1/domains",
        "/api/v1/audit",
        LOG,
    ):
        assert_error(client.get(url, headers=plant), 403, code="forbidden")
    for url in ("/api/v1/users/me", "/api/v1/models/titer_pls/versions", "/api/v1/models"):
        assert client.get(url, headers=plant).status_code == 200
