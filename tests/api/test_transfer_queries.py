"""The work a transfer request does: a fixed number of SQL statements per page of records,
one parse per upload."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.enums import Role
from app.services import datasets
from tests.factories import PLANT_DOMAIN, train_transfer_source, transfer_data
from tests.helpers import Actor, counted_statements

MODEL = {"name": "titer_pls", "analyte": "titer", "units": "g/L", "reason": "new soft sensor"}


def _source(client: TestClient, dev: dict[str, str]) -> dict[str, Any]:
    return dict(train_transfer_source(client, dev)["version"])


def _open(client: TestClient, dev: dict[str, str], version: dict[str, Any]) -> int:
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "pds",
        "n_standards": 12,
        "change_control": "CC-TEST-0001",
        "intended_use": "monitoring",
        "operating_range": version["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    r = client.post("/api/v1/transfers", json=plan, headers=dev)
    assert r.status_code == 201, r.text
    return int(r.json()["number"])


def _complete(client: TestClient, dev: dict[str, str], number: int) -> None:
    data = transfer_data()
    r = client.post(
        f"/api/v1/transfers/{number}/standards",
        data={"reason": "plant probe standards"},
        files={
            "target_standards": ("standards.parquet", data.target_bytes()),
            "validation": ("validation.parquet", data.validation_bytes()),
        },
        headers=dev,
    )
    assert r.status_code == 201, r.text


def _count_list(client: TestClient, dev: dict[str, str], session: Session) -> list[str]:
    with counted_statements(session) as statements:
        r = client.get("/api/v1/transfers", params={"limit": 10}, headers=dev)
    assert r.status_code == 200, r.text
    return statements


def test_listing_transfers_runs_as_many_statements_for_6_records_as_for_2(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    dev = actors[Role.developer].headers
    version = _source(client, dev)
    _complete(client, dev, _open(client, dev, version))
    _open(client, dev, version)
    two = _count_list(client, dev, session)
    # Completed and open records both grow: every related kind of row is on the page.
    for _ in range(2):
        _complete(client, dev, _open(client, dev, version))
    for _ in range(2):
        _open(client, dev, version)
    six = _count_list(client, dev, session)
    r = client.get("/api/v1/transfers", headers=dev)
    assert [t["status"] for t in r.json()].count("completed") == 3
    assert len(r.json()) == 6
    assert len(six) == len(two), six


def test_each_upload_of_a_standards_step_is_parsed_once(
    client: TestClient, actors: dict[Role, Actor], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = actors[Role.developer].headers
    version = _source(client, dev)
    number = _open(client, dev, version)
    parsed: list[str] = []
    real = datasets.parse_spectral_table

    def counting(blob: bytes, **kwargs: Any) -> datasets.ParsedTable:
        parsed.append(hashlib.sha256(blob).hexdigest())
        return real(blob, **kwargs)

    monkeypatch.setattr(datasets, "parse_spectral_table", counting)
    _complete(client, dev, number)
    data = transfer_data()
    for upload in (data.target_bytes(), data.validation_bytes()):
        assert parsed.count(hashlib.sha256(upload).hexdigest()) == 1


def test_a_standards_step_looks_up_no_domain_by_name_and_each_dataset_by_sha256_once(
    client: TestClient, actors: dict[Role, Actor], session: Session
) -> None:
    dev = actors[Role.developer].headers
    number = _open(client, dev, _source(client, dev))
    with counted_statements(session) as statements:
        _complete(client, dev, number)
    by_name = [s for s in statements if "FROM domain" in s and "domain.name =" in s]
    assert by_name == []  # the transfer holds its domains' rows
    # one look-up per upload (is it registered already?); the source's training dataset is
    # read through the row the transfer already holds
    by_sha256 = [s for s in statements if "FROM dataset" in s and "dataset.sha256 =" in s]
    assert len(by_sha256) == 2, by_sha256
