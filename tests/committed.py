"""Service-level setup with real commits, for tests that run many sessions at once (their own
database: see the ``pg_engine`` fixture), and the barrier that releases those sessions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.models import User
from app.db.session import unit_of_work
from app.enums import Role
from app.errors import Conflict
from app.schemas.datasets import DatasetCreate, DomainCreate
from app.schemas.models import ModelVersionCreate, SoftSensorModelCreate
from app.services import auth, datasets, domains, models
from app.store import LocalStore
from tests.factories import make_spectral_table


def training(sha: str) -> ModelVersionCreate:
    """A quick, deterministic training request (2 components, no hold-out)."""
    return ModelVersionCreate(
        dataset_sha256=sha,
        n_components=2,
        holdout_scheme="none",
        intended_use="monitoring",
        reason="t",
    )


def committed_registry(
    engine: Engine,
    store: LocalStore,
    *,
    domain_names: Sequence[str] = ("dev",),
    model_names: Sequence[str] = (),
    train: bool = False,
) -> tuple[User, str]:
    """Commit a developer, ``domain_names``, a 24 x 12-channel dataset in the first domain and
    ``model_names`` (each with v1 trained on it when ``train``). Returns the developer and the
    dataset's sha256. Audit events: 3 + one per domain after the first, model and version."""
    with unit_of_work(bind=engine) as s:
        dev = auth.create_user(
            s,
            username="dev",
            full_name="Dev",
            role=Role.developer,
            password="long enough password",
            actor="pytest",
            reason="fixture",
        ).user
        for name in domain_names:
            domains.create_domain(
                s,
                data=DomainCreate(
                    name=name, instrument="RXN2", probe_serial=name, scale="s", site="s", reason="t"
                ),
                actor=dev,
            )
        ds, _ = datasets.register_dataset(
            s,
            store,
            blob=make_spectral_table(n_samples=24, n_channels=12, seed=1),
            filename="a.parquet",
            data=DatasetCreate(
                name="d",
                domain=domain_names[0],
                reference_column="titer_g_L",
                units="g/L",
                sample_id_column="sample_id",
            ),
            actor=dev,
        )
        for name in model_names:
            models.create_model(
                s,
                data=SoftSensorModelCreate(name=name, analyte="titer", units="g/L", reason="t"),
                actor=dev,
            )
            if train:
                models.train_version(s, store, model_name=name, data=training(ds.sha256), actor=dev)
        return dev, ds.sha256


def run_together(engine: Engine, jobs: Sequence[Callable[[Session], Any]]) -> list[Any]:
    """Each job in its own session and transaction, all released at once by a barrier; a job's
    Conflict is returned in its place."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[Session], Any]) -> Any:
        with Session(engine, expire_on_commit=False) as s:
            barrier.wait(timeout=30)
            try:
                with s.begin():
                    return job(s)
            except Conflict as exc:
                return exc

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))
