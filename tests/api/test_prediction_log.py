"""``GET /prediction-log``: review of prediction calls (order, provenance, filters, paging)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.enums import Role
from tests.helpers import Actor, assert_error

PREDICT = "/api/v1/models/titer_pls/versions/1/predict"
LOG = "/api/v1/prediction-log"
EXPORT = "/api/v1/prediction-log/export"


def _predict(
    client: TestClient, actor: Actor, X: np.ndarray, purpose: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"spectra": np.ascontiguousarray(X)}
    if purpose is not None:
        body["purpose"] = purpose
    r = client.post(
        PREDICT,
        content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        headers=actor.headers | {"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _log(client: TestClient, reader: Actor, **params: Any) -> Any:
    return client.get(LOG, params=params, headers=reader.headers)


def test_the_log_lists_each_call_in_time_order_with_its_provenance(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant, dev, qa = actors[Role.plant], actors[Role.developer], actors[Role.qa]
    X = trained["X"]
    calls = [
        _predict(client, plant, X[:3], purpose="evaluation"),
        _predict(client, dev, X[3:4]),
        _predict(client, plant, np.vstack([X[:2], X[:1] * 10.0])),  # one spectrum flagged
    ]
    r = _log(client, qa)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    entries = page["entries"]
    assert [e["id"] for e in entries] == [c["prediction_log_id"] for c in calls]
    for entry, call in zip(entries, calls, strict=True):
        assert entry["occurred_at"] == call["occurred_at"]
        assert entry["model"] == "titer_pls"
        assert entry["version"] == 1
        assert entry["artifact_sha256"] == trained["version"]["artifact_sha256"]
        assert entry["input_sha256"] == call["input_sha256"]
        assert entry["input_format"] == "json"
        assert entry["n_spectra"] == call["n_spectra"]
        assert entry["flag_counts"] == call["flag_counts"]
        assert entry["flag_confidence"] == 0.99
        assert entry["qualified"] is False
        assert entry["transfer_id"] is None
        assert entry["transfer_number"] is None
    assert [e["caller"] for e in entries] == [
        plant.user.username,
        dev.user.username,
        plant.user.username,
    ]
    assert entries[0]["caller_id"] == str(plant.user.id)
    assert entries[0]["purpose"] == "evaluation"
    assert entries[1]["purpose"] == "evaluation"  # the default, logged as such
    assert [e["for_gmp"] for e in entries] == [False, False, False]
    assert [e["alias"] for e in entries] == [None, None, None]
    assert entries[2]["flag_counts"]["any_flag"] >= 1


def test_paging_reads_every_entry_once_and_new_calls_land_at_the_end(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant, auditor = actors[Role.plant], actors[Role.auditor]
    ids = [_predict(client, plant, trained["X"][i : i + 1])["prediction_log_id"] for i in range(5)]
    first = _log(client, auditor, limit=2).json()
    assert [e["id"] for e in first["entries"]] == ids[:2]
    ids.append(_predict(client, plant, trained["X"][5:6])["prediction_log_id"])
    seen = [e["id"] for e in first["entries"]]
    cursor = first["next_cursor"]
    pages = 1
    while cursor is not None:
        page = _log(client, auditor, limit=2, cursor=cursor).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        pages += 1
    assert seen == ids
    assert pages == 3


def test_filters_by_caller_flags_version_and_time(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant, dev, admin = actors[Role.plant], actors[Role.developer], actors[Role.admin]
    X = trained["X"]
    quiet = _predict(client, plant, X[:2])
    by_dev = _predict(client, dev, X[2:3])
    flagged = _predict(client, plant, X[:1] * 10.0)

    def ids(**params: Any) -> list[str]:
        r = _log(client, admin, **params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["entries"]]

    assert ids(caller=dev.user.username) == [by_dev["prediction_log_id"]]
    assert ids(flagged=True) == [flagged["prediction_log_id"]]
    assert ids(flagged=False) == [quiet["prediction_log_id"], by_dev["prediction_log_id"]]
    assert len(ids(model="titer_pls", version=1)) == 3
    t_dev = datetime.fromisoformat(by_dev["occurred_at"])
    assert ids(since=t_dev.isoformat()) == [
        by_dev["prediction_log_id"],
        flagged["prediction_log_id"],
    ]
    assert ids(until=t_dev.isoformat()) == [quiet["prediction_log_id"]]
    assert ids(since=(t_dev + timedelta(days=1)).isoformat()) == []


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"version": 1}, 422, "give model as well"),
        ({"model": "no_such_model"}, 404, "no_such_model"),
        ({"model": "titer_pls", "version": 9}, 404, "no version 9"),
        ({"since": "2026-11-27T10:00:00"}, 422, "time zone"),
        ({"cursor": "not-a-cursor"}, 422, "next_cursor"),
    ],
)
def test_bad_queries_are_refused_in_the_envelope(
    client: TestClient,
    actors: dict[Role, Actor],
    trained: dict[str, Any],
    params: dict[str, Any],
    status: int,
    words: str,
) -> None:
    assert_error(_log(client, actors[Role.qa], **params), status, words)


def test_csv_cells_defuse_formulas() -> None:
    """Purposes are a closed vocabulary now, but rows logged before kept free text."""
    from app.services.prediction_log import _cell

    assert _cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert _cell("batch 7, day 3") == "batch 7, day 3"


def test_the_csv_export_has_the_same_rows_one_per_call(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant, auditor = actors[Role.plant], actors[Role.auditor]
    X = trained["X"]
    calls = [
        _predict(client, plant, X[:2], purpose="evaluation"),
        _predict(client, plant, X[:1] * 10.0),
        _predict(client, plant, X[2:3]),
    ]
    r = client.get(EXPORT, params={"limit": 2}, headers=auditor.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == [c["prediction_log_id"] for c in calls[:2]]
    first, second = rows
    assert first["purpose"] == "evaluation"
    assert first["for_gmp"] == "false"
    assert first["alias"] == ""
    assert "sample_ids" not in first  # per-spectrum content: GET /prediction-log/{id}
    assert first["caller"] == plant.user.username
    assert first["model"] == "titer_pls"
    assert first["version"] == "1"
    assert first["qualified"] == "false"
    assert first["n_spectra"] == "2"
    assert first["input_sha256"] == calls[0]["input_sha256"]
    assert first["occurred_at"] == calls[0]["occurred_at"]
    assert int(second["any_flag"]) == calls[1]["flag_counts"]["any_flag"] >= 1
    assert second["purpose"] == "evaluation"
    rest = client.get(r.links["next"]["url"], headers=auditor.headers)
    (last,) = csv.DictReader(io.StringIO(rest.text))
    assert last["id"] == calls[2]["prediction_log_id"]
    assert last["purpose"] == "evaluation"
    assert "next" not in rest.links
