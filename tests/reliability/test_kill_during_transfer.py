"""kill -9 of the server while POST /transfers/{n}/standards computes the transfer, and a
restart: the transfer is still awaiting its standards, no target version exists without its
completed transfer, the chain is valid, and the transfer then completes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db.models import AuditEvent, ModelVersion, TransferRecord
from app.enums import AuditAction, Role, TransferStatus
from tests.factories import PLANT_DOMAIN, train_transfer_source, transfer_data
from tests.reliability.conftest import (
    STEP,
    Deployment,
    InFlight,
    Server,
    audit_chain,
    store_consistent,
    transaction_open,
)

pytestmark = pytest.mark.reliability

COMPUTING = 0.1  # s of the server's time after the request's transaction began


def _open(client: httpx.Client, source: dict[str, Any]) -> int:
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "auto",  # cross-validates every candidate method: a second or two
        "n_standards": 12,
        "change_control": "CC-KILL-0001",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    r = client.post("/api/v1/transfers", json=plan)
    assert r.status_code == 201, r.text
    return int(r.json()["number"])


def _standards(server: Server, token: str, number: int) -> httpx.Response:
    data = transfer_data()
    with server.client(token) as client:
        return client.post(
            f"/api/v1/transfers/{number}/standards",
            data={"reason": "plant probe standards"},
            files={
                "target_standards": ("standards.parquet", data.target_bytes()),
                "validation": ("validation.parquet", data.validation_bytes()),
            },
        )


def _transfer(deployment: Deployment, number: int) -> TransferRecord:
    with deployment.read() as s:
        return s.scalars(select(TransferRecord).where(TransferRecord.number == number)).one()


def _targets_have_completed_transfers(deployment: Deployment) -> list[int]:
    """Every transferred version's transfer is completed; returns the version numbers."""
    with deployment.read() as s:
        versions = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        for v in versions:
            if v.transfer_id is not None:
                transfer = s.get(TransferRecord, v.transfer_id)
                assert transfer is not None
                assert transfer.status is TransferStatus.completed, v.version
        return [v.version for v in versions]


def _completions(deployment: Deployment, transfer: TransferRecord) -> int:
    with deployment.read() as s:
        return len(
            s.scalars(
                select(AuditEvent.seq).where(
                    AuditEvent.action == AuditAction.transfer_complete,
                    AuditEvent.entity_id == str(transfer.id),
                )
            ).all()
        )


def _kill_while_computing(deployment: Deployment, server: Server, token: str, number: int) -> None:
    """Send the standards, let the server work on them for COMPUTING seconds of its own time
    after its transaction began, and kill it there."""
    request = InFlight(lambda: _standards(server, token, number))
    server.step_until(lambda: transaction_open(deployment), request, "its transaction")
    for _ in range(int(COMPUTING / STEP)):
        server.resume()
        time.sleep(STEP)
        server.freeze()
    assert request.outcome is None, request.outcome
    assert _transfer(deployment, number).status is TransferStatus.awaiting_standards
    server.kill()
    assert isinstance(request.finished(), httpx.TransportError)


def test_a_transfer_killed_while_it_computes_stays_open_and_completes_after_a_restart(
    deployment: Deployment,
) -> None:
    dev = deployment.user("dev-transfer", Role.developer)
    server = deployment.serve()
    with server.client(dev) as client:
        source = train_transfer_source(client, {})
        number = _open(client, source)
    events = audit_chain(deployment)
    versions = _targets_have_completed_transfers(deployment)
    assert versions == [1]
    _kill_while_computing(deployment, server, dev, number)

    transfer = _transfer(deployment, number)
    assert transfer.status is TransferStatus.awaiting_standards
    assert transfer.completed_at is None
    assert transfer.artifact_sha256 is None
    assert _completions(deployment, transfer) == 0
    assert _targets_have_completed_transfers(deployment) == versions  # no new version

    server = deployment.serve()
    assert audit_chain(deployment) == events
    state = store_consistent(deployment)
    assert state.unreferenced == set()
    response = _standards(server, dev, number)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"

    transfer = _transfer(deployment, number)
    assert transfer.status is TransferStatus.completed
    assert _completions(deployment, transfer) == 1
    assert _targets_have_completed_transfers(deployment) == [*versions, versions[-1] + 1]
    assert audit_chain(deployment) > events
    state = store_consistent(deployment)
    assert state.unreferenced == set()
    assert transfer.artifact_sha256 in state.artifacts
