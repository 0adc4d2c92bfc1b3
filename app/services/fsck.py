"""Store check: every artifact the database references is present and intact, and nothing
unreferenced lies in the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.db.repositories import datasets as dataset_rows
from app.db.repositories import models as model_rows
from app.store import ArtifactStore


def referenced_digests(session: Session) -> set[str]:
    """Every digest a record points at: datasets' bytes, versions' and transfers' artifacts."""
    return dataset_rows.referenced_digests(session) | model_rows.referenced_digests(session)


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
