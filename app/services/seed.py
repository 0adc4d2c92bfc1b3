"""Demo data for `make run`, created through the same services the API uses (so every row is
audited like any other): demo users, the development domain, the simulated BATCH-2026-001
dataset and model ``titer_pls`` v1 trained on it."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.simulate import simulate_batch, to_arrow_table
from app.db.models import User
from app.enums import Role
from app.schemas.datasets import DatasetCreate, DomainCreate
from app.schemas.models import ModelVersionCreate, SoftSensorModelCreate
from app.services import auth, datasets, domains, models
from app.store import ArtifactStore

SEED = 2026
ACTOR = "seed:make-run"
DEV_DOMAIN = "dev-raman-ambr250"
DEMO_USERS = {
    Role.admin: "demo-admin",
    Role.developer: "demo-developer",
    Role.qa: "demo-qa",
    Role.auditor: "demo-auditor",
    Role.plant: "demo-plant",
}


@dataclass
class SeedResult:
    created: bool
    credentials: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def simulated_dataset_bytes(batch_id: str = "BATCH-2026-001") -> bytes:
    batch = simulate_batch(batch_id, seed=SEED)
    buf = io.BytesIO()
    pq.write_table(to_arrow_table(batch, scale="250 mL"), buf)
    return buf.getvalue()


def seed_demo(session: Session, store: ArtifactStore) -> SeedResult:
    """Create the demo once; a second call changes nothing and says so."""
    if session.scalar(select(User).where(User.username == DEMO_USERS[Role.admin])):
        return SeedResult(created=False, notes=["demo already seeded; credentials unchanged"])
    result = SeedResult(created=True)
    users: dict[Role, User] = {}
    for role, username in DEMO_USERS.items():
        password = None if role is Role.plant else secrets.token_urlsafe(12)
        created = auth.create_user(
            session,
            username=username,
            full_name=f"Demo {role.value}",
            role=role,
            password=password,
            actor=ACTOR,
            reason="demo seed",
        )
        users[role] = created.user
        result.credentials[username] = created.api_key or password or ""
    dev = users[Role.developer]
    domains.create_domain(
        session,
        data=DomainCreate(
            name=DEV_DOMAIN,
            instrument="Raman analyser (simulated)",
            probe_serial="DEV-PROBE-0001",
            scale="250 mL (Ambr 250)",
            site="Process development lab",
            description="simulated development probe",
            reason="demo seed",
        ),
        actor=dev,
    )
    ds, _ = datasets.register_dataset(
        session,
        store,
        blob=simulated_dataset_bytes(),
        filename="raman_spectra.parquet",
        data=DatasetCreate(
            name="BATCH-2026-001 hourly Raman spectra (simulated)",
            domain=DEV_DOMAIN,
            reference_column="titer_g_L",
            units="g/L",
            sample_id_column="sample_id",
            reason="demo seed",
        ),
        actor=dev,
    )
    models.create_model(
        session,
        data=SoftSensorModelCreate(
            name="titer_pls",
            analyte="titer",
            units="g/L",
            description="PLS soft sensor for product titer from in-line Raman spectra",
            reason="demo seed",
        ),
        actor=dev,
    )
    version = models.train_version(
        session,
        store,
        model_name="titer_pls",
        data=ModelVersionCreate(
            dataset_sha256=ds.sha256,
            intended_use="monitoring titer in Ambr 250 development runs",
            reason="demo seed: first calibration",
        ),
        actor=dev,
    )
    holdout = version.metrics.get("holdout", {})
    result.notes.append(
        f"titer_pls v{version.version}: {version.n_components} components, held-out "
        f"R2={holdout.get('r2', float('nan')):.4f} RMSE={holdout.get('rmse', float('nan')):.4f} g/L"
    )
    return result
