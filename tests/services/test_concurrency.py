"""Concurrent writers on one PostgreSQL: version numbers and the audit chain stay correct.

Real commits in a database of their own (not the rolled-back per-test transaction), one
session per thread, released together by a barrier: what 32 simultaneous requests do.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.models import ModelVersion, User
from app.enums import Role
from app.schemas.datasets import DatasetCreate, DomainCreate
from app.schemas.models import ModelVersionCreate, SoftSensorModelCreate
from app.services import audit, auth, datasets, domains, models
from app.store import LocalStore
from tests.factories import make_spectral_table

N_WRITERS = 32


def _setup(engine: Engine, store: LocalStore) -> tuple[User, str]:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        dev = auth.create_user(
            s,
            username="dev",
            full_name="Dev",
            role=Role.developer,
            password="long enough password",
            actor="pytest",
            reason="fixture",
        ).user
        domains.create_domain(
            s,
            data=DomainCreate(
                name="dev-raman",
                instrument="RXN2",
                probe_serial="P1",
                scale="250 mL",
                site="lab",
                reason="fixture",
            ),
            actor=dev,
        )
        ds, _ = datasets.register_dataset(
            s,
            store,
            blob=make_spectral_table(n_samples=24, n_channels=12),
            filename="a.parquet",
            data=DatasetCreate(
                name="d",
                domain="dev-raman",
                reference_column="titer_g_L",
                units="g/L",
                sample_id_column="sample_id",
            ),
            actor=dev,
        )
        models.create_model(
            s,
            data=SoftSensorModelCreate(
                name="titer_pls", analyte="titer", units="g/L", reason="fixture"
            ),
            actor=dev,
        )
        return dev, ds.sha256


def test_32_concurrent_trainings_get_versions_1_to_32(pg_engine: Engine, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    dev, sha = _setup(pg_engine, store)
    barrier = threading.Barrier(N_WRITERS)
    body = ModelVersionCreate(
        dataset_sha256=sha,
        n_components=2,
        holdout_scheme="none",
        intended_use="test",
        reason="concurrency",
    )

    def train(_: int) -> int:
        with Session(pg_engine, expire_on_commit=False) as s:
            barrier.wait(timeout=30)
            with s.begin():
                return models.train_version(
                    s, store, model_name="titer_pls", data=body, actor=dev
                ).version

    with ThreadPoolExecutor(N_WRITERS) as pool:
        numbers = sorted(pool.map(train, range(N_WRITERS)))

    assert numbers == list(range(1, N_WRITERS + 1))
    with Session(pg_engine) as s:
        stored = sorted(s.scalars(select(ModelVersion.version)))
        assert stored == list(range(1, N_WRITERS + 1))
        report = audit.verify_chain(s)
    assert report.valid, report
    assert report.events == 4 + N_WRITERS  # user, domain, dataset, model, then 32 versions
