"""Concurrent writers on one PostgreSQL: version numbers and the audit chain stay correct.

Real commits in a database of their own (not the rolled-back per-test transaction), one
session per thread, released together by a barrier: what 32 simultaneous requests do.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import ModelVersion
from app.services import audit, models
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
