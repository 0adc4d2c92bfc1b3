"""Store check: every artifact the database references is present and intact, and nothing
unreferenced lies in the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, ModelVersion, Transfer
from app.store import ArtifactStore


def referenced_digests(session: Session) -> set[str]:
    refs = set(session.scalars(select(Dataset.sha256)))
    refs |= set(session.scalars(select(ModelVersion.artifact_sha256)))
    refs |= set(
        session.scalars(
            select(Transfer.artifact_sha256).where(Transfer.artifact_sha256.is_not(None))
        )
    )
    return refs


@dataclass
class FsckReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.missing and not self.corrupt


def fsck(session: Session, store: ArtifactStore) -> FsckReport:
    report = FsckReport()
    refs = referenced_digests(session)
    for digest in sorted(refs):
        report.checked += 1
        state = store.check(digest)
        if state == "missing":
            report.missing.append(digest)
        elif state == "corrupt":
            report.corrupt.append(digest)
    report.unreferenced = sorted(set(store.digests()) - refs)
    return report
