"""Two ``ssreg serve`` processes on one PostgreSQL and one store, as docker-compose.yml runs the
API (the roles and the migration one-shot, then the servers as the runtime role behind their
health checks, signing checkpoints with one key; one of them with two workers, as the image's
command runs it): clients of both create versions of one model, transfers, signatures and
domains at the same moment. Version and transfer numbers come out gap-free and unique, every
change has its audit event, and the audit trail is one valid chain with gap-free sequence
numbers, anchored by the checkpoints both servers signed."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import select

from app.db.models import AuditEvent, Domain, ModelVersion, Signature, TransferRecord
from app.enums import AuditAction, Role
from tests.conftest import PG_ADMIN_URL
from tests.factories import (
    PLANT_DOMAIN,
    domain_payload,
    train_transfer_source,
    transfer_data,
)
from tests.helpers import PASSWORD
from tests.reliability.conftest import Deployment, Server, audit_chain

pytestmark = pytest.mark.reliability

VERSIONS_PER_TRAINER = 2
REVIEWS_PER_QA = 3
DOMAINS_PER_CREATOR = 3


@dataclass
class Made:
    versions: list[int] = field(default_factory=list)
    transfers: list[int] = field(default_factory=list)


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, f"{response.request.url}: {response.text}"
    return dict(response.json())


def _sign(client: httpx.Client, url: str, username: str, meaning: str) -> dict[str, Any]:
    body = {"meaning": meaning, "username": username, "password": PASSWORD}
    return _created(client.post(url, json=body))


def test_two_servers_on_one_database_number_gap_free_and_keep_one_chain(
    pg_deployment: Deployment,
) -> None:
    d = pg_deployment
    tokens = {
        name: d.user(name, role)
        for name, role in (
            ("dev-a", Role.developer),
            ("dev-b", Role.developer),
            ("qa-a", Role.qa),
            ("qa-b", Role.qa),
        )
    }
    # The image's command (ssreg serve --workers 2) beside a single-worker process.
    a, b = d.serve_many(2, 1)
    with a.client(tokens["dev-a"]) as client:
        source = train_transfer_source(client, {})  # domains, dataset, titer_pls v1
    sha = source["dataset"]["sha256"]
    plan = {
        "source_model": "titer_pls",
        "source_version": 1,
        "target_domain": PLANT_DOMAIN,
        "method": "pds",
        "params": {"window": 5},
        "n_standards": 12,
        "change_control": "CC-TWO-0001",
        "intended_use": "monitoring",
        "operating_range": source["version"]["operating_range"],
        "acceptance": {"max_rmse_ratio": 3.0},
        "reason": "move titer_pls to the plant probe",
    }
    data = transfer_data()

    def trainer(server: Server, user: str) -> Made:
        """Versions trained, each then signed 'authored' by whoever trained it."""
        made = Made()
        with server.client(tokens[user]) as client:
            for i in range(VERSIONS_PER_TRAINER):
                body = {
                    "dataset_sha256": sha,
                    "n_components": 2 + i,
                    "holdout_scheme": "none",
                    "intended_use": "monitoring",
                    "reason": f"candidate by {user}",
                }
                v = _created(client.post("/api/v1/models/titer_pls/versions", json=body))
                made.versions.append(int(v["version"]))
                url = f"/api/v1/models/titer_pls/versions/{v['version']}/signatures"
                _sign(client, url, user, "authored")
        return made

    def transferrer(server: Server, user: str) -> Made:
        """A transfer completed (its target version is numbered among the trainings) and
        signed 'authored', then a second one opened."""
        with server.client(tokens[user]) as client:
            number = _created(client.post("/api/v1/transfers", json=plan))["number"]
            record = _created(
                client.post(
                    f"/api/v1/transfers/{number}/standards",
                    data={"reason": "plant probe standards"},
                    files={
                        "target_standards": ("standards.parquet", data.target_bytes()),
                        "validation": ("validation.parquet", data.validation_bytes()),
                    },
                )
            )
            _sign(client, f"/api/v1/transfers/{number}/signatures", user, "authored")
            again = _created(client.post("/api/v1/transfers", json=plan))["number"]
        target = record["governance"]["lineage"]["target_version"]["version"]
        return Made(versions=[int(target)], transfers=[int(number), int(again)])

    def reviewer(server: Server, user: str) -> Made:
        with server.client(tokens[user]) as client:
            for _ in range(REVIEWS_PER_QA):
                _sign(client, "/api/v1/models/titer_pls/versions/1/signatures", user, "reviewed")
        return Made()

    def creator(server: Server, user: str) -> Made:
        with server.client(tokens[user]) as client:
            for i in range(DOMAINS_PER_CREATOR):
                _created(client.post("/api/v1/domains", json=domain_payload(f"{user}-line-{i}")))
        return Made()

    jobs: list[tuple[Callable[[Server, str], Made], Server, str]] = [
        (trainer, a, "dev-a"),
        (trainer, b, "dev-b"),
        (trainer, b, "dev-a"),
        (trainer, a, "dev-b"),
        (transferrer, a, "dev-a"),
        (transferrer, b, "dev-b"),
        (reviewer, a, "qa-a"),
        (reviewer, b, "qa-b"),
        (creator, a, "dev-a"),
        (creator, b, "dev-b"),
    ]
    barrier = threading.Barrier(len(jobs))

    def run(job: tuple[Callable[[Server, str], Made], Server, str]) -> Made:
        work, server, user = job
        barrier.wait(timeout=60)
        return work(server, user)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))

    made = [n for r in results for n in r.versions]
    opened = sorted(n for r in results for n in r.transfers)
    n_versions = 1 + len(made)
    n_trained = 4 * VERSIONS_PER_TRAINER

    # Numbers: 1..N, none twice, none skipped - in the responses and in the database.
    assert len(made) == n_trained + 2
    assert sorted(made) == list(range(2, n_versions + 1))
    assert opened == [1, 2, 3, 4]
    with d.read() as s:
        versions = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        transfer_rows = s.scalars(select(TransferRecord).order_by(TransferRecord.number)).all()
        signatures = s.scalars(select(Signature)).all()
        domains = s.scalars(select(Domain)).all()
        events = s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [v.version for v in versions] == list(range(1, n_versions + 1))
    assert [t.number for t in transfer_rows] == opened

    # Every change has exactly one audit event of its kind, naming it.
    named = Counter((e.action, e.entity_id) for e in events)

    def audited(action: AuditAction, ids: list[Any]) -> None:
        assert all(named[(action.value, str(i))] == 1 for i in ids), action
        assert sum(n for (act, _), n in named.items() if act == action.value) == len(ids)

    audited(AuditAction.model_version_create, [v.id for v in versions])
    audited(AuditAction.transfer_open, [t.id for t in transfer_rows])
    audited(AuditAction.transfer_complete, [t.id for t in transfer_rows if t.completed_at])
    n_signatures = n_trained + 2 + 2 * REVIEWS_PER_QA  # authored versions, transfers; reviews
    assert len(signatures) == n_signatures
    audited(AuditAction.signature_sign, [sig.id for sig in signatures])
    assert len(domains) == 2 + 2 * DOMAINS_PER_CREATOR
    audited(AuditAction.domain_create, [dom.id for dom in domains])

    # Every server logged in as the runtime role, never as the schema owner.
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        logins = admin.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s",
            (d.engine.url.database,),
        ).fetchall()
    assert logins == [(d.runtime_role,)]

    # One chain, gap-free, valid and anchored - read by the command and by each server.
    n_events = audit_chain(d)
    assert n_events == len(events)
    for server in (a, b):
        with server.client(tokens["qa-a"]) as client:
            verified = client.get("/api/v1/audit/verify")
        assert verified.status_code == 200, verified.text
        body = verified.json()
        assert body["valid"] is True, body
        assert body["anchored"] is True, body  # from the newest checkpoint a server signed
        assert body["head_seq"] == n_events, body
        assert body["checked_from_seq"] + body["events"] == n_events, body
