"""Store check: every artifact the database references is present and intact, each record
points at the artifact its audit trail says (a version's ``artifact_sha256`` repointed at
another version's file is found here: that file is intact), and nothing unreferenced lies in
the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.repositories import datasets as dataset_rows
from app.db.repositories import models as model_rows
from app.services import reconcile
from app.store import ArtifactStore

# The columns by which records point at the store.
DIGEST_COLUMNS = {
    "dataset": ("sha256",),
    "model_version": ("artifact_sha256",),
    "transfer": ("artifact_sha256",),
}


def referenced_digests(session: Session) -> set[str]:
    """Every digest a record points at: datasets' bytes, versions' and transfers' artifacts."""
    return dataset_rows.referenced_digests(session) | model_rows.referenced_digests(session)


@dataclass
class FsckReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    # "<table> <id>: <column> <audited> -> <now>", or "... has no audited state".
    repointed: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.missing and not self.corrupt and not self.repointed


def repointed(session: Session) -> list[str]:
    """Records whose digest column is not the one of their last audited state (or that have
    no audited state at all)."""
    tables = [Base.metadata.tables[name] for name in DIGEST_COLUMNS]
    found = []
    for d in reconcile.reconcile(session, tables=tables).differences:
        if d.kind == "unaudited":
            found.append(f"{d.table} {d.entity_id}: no audited state")
        for f in d.fields:
            if f.field in DIGEST_COLUMNS[d.table]:
                found.append(f"{d.table} {d.entity_id}: {f.field} {f.audited} -> {f.current}")
    return found


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
    report.repointed = repointed(session)
    return report
