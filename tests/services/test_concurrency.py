"""Concurrent writers on one PostgreSQL: version numbers and the audit chain stay correct.

Real commits in a database of their own (not the rolled-back per-test transaction), one
session per thread, released together by a barrier: what 32 simultaneous requests do.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from app.db.models import ModelVersion
from app.db.repositories import signatures as signature_rows
from app.db.repositories import users as user_rows
from app.enums import IntendedUse, TransferMethod
from app.schemas.transfers import TransferCreate
from app.services import audit, models, transfers
from app.store import LocalStore
from tests.committed import committed_registry, run_together, training

N_WRITERS = 32


def test_32_concurrent_trainings_get_versions_1_to_32(pg_engine: Engine, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    dev, sha = committed_registry(pg_engine, store, model_names=("titer_pls",))

    def train(s: Session) -> int:
        return models.train_version(
            s, store, model_name="titer_pls", data=training(sha), actor=dev
        ).version

    numbers = sorted(run_together(pg_engine, [train] * N_WRITERS))

    assert numbers == list(range(1, N_WRITERS + 1))
    with Session(pg_engine) as s:
        stored = sorted(s.scalars(select(ModelVersion.version)))
        assert stored == list(range(1, N_WRITERS + 1))
        report = audit.verify_chain(s)
    assert report.valid, report
    assert report.events == 4 + N_WRITERS  # user, domain, dataset, model, then 32 versions


def test_inserts_referencing_a_locked_version_or_user_do_not_wait_for_the_lock(
    pg_engine: Engine, tmp_path: Path
) -> None:
    """A writer holding a version's and a user's row lock (a signature being given) does not
    hold up another transaction's insert that references both (a transfer opened by that
    user from that version) - that wait, under the audit-head lock, was a deadlock."""
    store = LocalStore(tmp_path / "store")
    dev, _ = committed_registry(
        pg_engine, store, domain_names=("dev", "plant"), model_names=("titer_pls",), train=True
    )
    with Session(pg_engine) as holder, holder.begin():
        v1 = signature_rows.lock_version(holder, models.get_version(holder, "titer_pls", 1).id)
        assert user_rows.by_username(holder, "dev", for_update=True) is not None
        plan = TransferCreate(
            source_model="titer_pls",
            source_version=1,
            target_domain="plant",
            method=TransferMethod.sbc,
            n_standards=3,
            change_control="CC-LOCK-0001",
            intended_use=IntendedUse.monitoring,
            operating_range={"min": v1.operating_range_min, "max": v1.operating_range_max},
            acceptance={"max_rmse_ratio": 3.0},
            reason="t",
        )
        with Session(pg_engine) as s, s.begin():
            s.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait fails, not blocks
            number = transfers.open_transfer(s, data=plan, actor=dev).number
        assert number == 1
