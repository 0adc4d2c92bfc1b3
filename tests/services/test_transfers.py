"""Transfers at the service layer: numbering and completion under concurrency on PostgreSQL,
and the demo seed's transfer record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import (
    AccountScope,
    AliasAssignment,
    Domain,
    ModelVersion,
    SoftSensorModel,
    TransferRecord,
    User,
)
from app.enums import IntendedUse, TransferMethod, TransferStatus, VersionStatus
from app.errors import Conflict
from app.schemas.models import OperatingRange
from app.schemas.transfers import AcceptanceCriteria, StandardsForm, TransferCreate
from app.services import audit, models, transfers
from app.services.seed import N_STANDARDS, PLANT_DOMAIN, seed_demo
from app.services.seed_monitoring import LINE_B_DOMAIN
from app.store import LocalStore
from tests.committed import committed_registry, run_together, training
from tests.factories import make_spectral_table, simulate_spectra

N_THREADS = 8


def _plan(model: str) -> TransferCreate:
    return TransferCreate(
        source_model=model,
        source_version=1,
        target_domain="plant",
        method=TransferMethod.ds,
        n_standards=5,
        change_control="CC-1",
        intended_use=IntendedUse.monitoring,
        operating_range=OperatingRange(min=1.0, max=4.0),
        acceptance=AcceptanceCriteria(max_rmse=1.0),
        reason="t",
    )


def _standards() -> transfers.StandardsFiles:
    X, y, axis = simulate_spectra(24, 12, seed=1)
    blob = make_spectral_table(
        X=0.9 * X[:8] + 0.02, y=y[:8], axis=axis, sample_ids=[f"S{i + 1:03d}" for i in range(8)]
    )
    return transfers.StandardsFiles(target_standards=transfers.Upload(blob, "t.parquet"))


@pytest.mark.postgres
def test_concurrent_transfers_of_two_models_get_numbers_1_to_n(
    pg_engine: Engine, tmp_path: Path
) -> None:
    """Transfer numbers are global: the model row lock alone would not serialize them."""
    store = LocalStore(tmp_path / "store")
    dev, _ = committed_registry(
        pg_engine,
        store,
        domain_names=("dev", "plant"),
        model_names=("model_a", "model_b"),
        train=True,
    )

    def job(model: str) -> Callable[[Session], int]:
        return lambda s: transfers.open_transfer(s, data=_plan(model), actor=dev).number

    numbers = run_together(
        pg_engine, [job("model_a" if i % 2 else "model_b") for i in range(N_THREADS)]
    )
    assert sorted(numbers) == list(range(1, N_THREADS + 1))
    with Session(pg_engine) as s:
        assert audit.verify_chain(s).valid


@pytest.mark.postgres
def test_concurrent_completions_and_trainings_number_versions_without_deadlock(
    pg_engine: Engine, tmp_path: Path
) -> None:
    """Standards uploads and trainings of one model at once: versions 2..n, no deadlock, and
    a transfer completed twice at the same moment completes once (the other gets 409)."""
    store = LocalStore(tmp_path / "store")
    dev, sha = committed_registry(
        pg_engine, store, domain_names=("dev", "plant"), model_names=("model_a",), train=True
    )
    with Session(pg_engine, expire_on_commit=False) as s, s.begin():
        opened = [transfers.open_transfer(s, data=_plan("model_a"), actor=dev) for _ in range(3)]
    form = StandardsForm(reason="t")

    def complete(number: int) -> Callable[[Session], int]:
        def run(s: Session) -> int:
            done = transfers.upload_standards(
                s, store, ref=str(number), files=_standards(), form=form, actor=dev
            )
            return int(
                s.scalar(select(ModelVersion.version).where(ModelVersion.transfer_id == done.id))
                or 0
            )

        return run

    def train(s: Session) -> int:
        return models.train_version(
            s, store, model_name="model_a", data=training(sha), actor=dev
        ).version

    jobs = [complete(t.number) for t in opened] + [complete(opened[0].number)] + [train] * 3
    outcomes = run_together(pg_engine, jobs)
    versions = [o for o in outcomes if isinstance(o, int)]
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert sorted(versions) == list(range(2, 2 + 6))
    assert len(conflicts) == 1
    with Session(pg_engine) as s:
        rows = list(s.scalars(select(TransferRecord).order_by(TransferRecord.number)))
        assert [t.status for t in rows] == [TransferStatus.completed] * 3
        assert audit.verify_chain(s).valid


# The demo seed runs on the embedded SQLite default (`make run`); once is enough.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_seed_demo_records_transfer_1(
    session: Session, store: LocalStore, settings_env: None
) -> None:
    result = seed_demo(session, store)
    assert any(n.startswith("alias plant-2000L -> titer_pls v2") for n in result.notes)
    transfer = transfers.get_transfer(session, "1")
    record = transfers.describe_transfer(session, transfer).model_dump()
    assert record["status"] == TransferStatus.completed
    assert record["target"]["domain"] == PLANT_DOMAIN
    assert record["transfer"]["n_standards"] == N_STANDARDS
    assert record["transfer"]["n_candidates"] > N_STANDARDS
    assert record["target"]["naive_metrics"]["r2"] < 0
    assert record["transfer"]["post_transfer_metrics"]["r2"] >= 0.98
    assert record["transfer"]["acceptance"]["verdict"] == "pass"
    assert record["governance"]["change_control"] == "CC-2026-0042"
    model = session.scalars(
        select(SoftSensorModel).where(SoftSensorModel.name == "titer_pls")
    ).one()
    v2 = session.scalars(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == 2)
    ).one()
    # Signed through the services: v1 authored and approved, transfer #1 authored, reviewed
    # and approved, which requalified v2.
    assert v2.status == VersionStatus.requalified
    assert v2.review_due_at is not None
    assert v2.transfer_id == transfer.id
    signed = record["governance"]["signatures"]
    assert [s["meaning"] for s in signed] == ["authored", "reviewed", "approved"]
    assert [s["signer_username"] for s in signed] == ["demo-developer", "demo-qa", "demo-qa"]
    assert all(s["valid"] for s in signed)
    v1 = models.describe_version(session, models.get_version(session, "titer_pls", 1))
    assert v1.status == VersionStatus.approved
    assert v1.qualified
    assert [s.meaning.value for s in v1.signatures] == ["authored", "approved"]
    assert models.describe_version(session, v2).qualified
    # demo-plant is bound to both plant lines' domains and titer_pls; plant-2000L names v2
    plant = session.scalars(select(User).where(User.username == "demo-plant")).one()
    (scope,) = session.scalars(select(AccountScope).where(AccountScope.user_id == plant.id))
    domain = session.scalars(select(Domain).where(Domain.name == PLANT_DOMAIN)).one()
    line_b = session.scalars(select(Domain).where(Domain.name == LINE_B_DOMAIN)).one()
    assert scope.domain_ids == [str(domain.id), str(line_b.id)]  # by domain name
    assert scope.model_ids == [str(model.id)]
    (moved,) = session.scalars(
        select(AliasAssignment).where(AliasAssignment.alias == "plant-2000L")
    )
    assert (moved.alias, moved.version_id, moved.signer_username) == (
        "plant-2000L",
        v2.id,
        "demo-qa",
    )
    assert moved.change_control == "CC-2026-0042"
    again = seed_demo(session, store)
    assert not again.created
