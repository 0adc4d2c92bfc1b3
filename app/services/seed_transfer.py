"""What the demo seed's two transfers share (:mod:`app.services.seed`'s transfer #1 to the
plant probe, :mod:`app.services.seed_monitoring`'s transfer #2 to line B's): a simulated
domain, and a transfer of ``titer_pls`` opened and completed through the transfer service."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.models import ModelVersion, TransferRecord, User
from app.enums import IntendedUse, TransferMethod
from app.schemas.datasets import DomainCreate
from app.schemas.models import OperatingRange
from app.schemas.transfers import AcceptanceCriteria, StandardsForm, TransferCreate
from app.services import domains, transfers
from app.store import ArtifactStore


def create_simulated_domain(session: Session, dev: User, **fields: str) -> None:
    """A domain of the simulated Raman analyser (``fields``: name, probe, scale, site...)."""
    domains.create_domain(
        session,
        data=DomainCreate(instrument="Raman analyser (simulated)", reason="demo seed", **fields),
        actor=dev,
    )


@dataclass(frozen=True)
class SeedTransfer:
    """One seeded transfer: its plan and the files its standards come in."""

    target_domain: str
    n_standards: int
    change_control: str
    max_rmse_ratio: float
    reason: str
    standards: transfers.Upload
    validation: transfers.Upload
    standards_reason: str


def run_seed_transfer(
    session: Session, store: ArtifactStore, source: ModelVersion, dev: User, plan: SeedTransfer
) -> TransferRecord:
    """Open a transfer of ``source`` (method ``auto``, monitoring use, the source's operating
    range) as ``dev`` and complete it with the plan's standards and validation set (never
    commits)."""
    opened = transfers.open_transfer(
        session,
        data=TransferCreate(
            source_model="titer_pls",
            source_version=source.version,
            target_domain=plan.target_domain,
            method=TransferMethod.auto,
            n_standards=plan.n_standards,
            change_control=plan.change_control,
            intended_use=IntendedUse.monitoring,
            operating_range=OperatingRange(
                min=source.operating_range_min, max=source.operating_range_max
            ),
            acceptance=AcceptanceCriteria(max_rmse_ratio=plan.max_rmse_ratio),
            reason=plan.reason,
        ),
        actor=dev,
    )
    return transfers.upload_standards(
        session,
        store,
        ref=str(opened.number),
        files=transfers.StandardsFiles(target_standards=plan.standards, validation=plan.validation),
        form=StandardsForm(reason=plan.standards_reason),
        actor=dev,
    )
