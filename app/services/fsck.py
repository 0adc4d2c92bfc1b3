"""Store check: every artifact the database references is present and intact, each record
points at the artifact its audit trail says (a version's ``artifact_sha256`` repointed at
another version's file is found here: that file is intact), and nothing unreferenced or left
over lies in the store; collection of what is left over."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.models import User
from app.db.repositories import datasets as dataset_rows
from app.db.repositories import models as model_rows
from app.enums import AuditAction, AuditEntityType
from app.services import audit, reconcile
from app.store import ArtifactStore
from app.store.local import StoreFile

# The audit entity of a collection: the artifact store as a whole.
STORE_ENTITY_ID = "artifact-store"

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
    # Temporary files of writes that never finished (a process killed mid-write).
    temporary: list[StoreFile] = field(default_factory=list)
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
    report.temporary = list(store.temporaries())
    return report


@dataclass(frozen=True)
class RemovedArtifact:
    digest: str
    size: int


@dataclass
class CollectReport:
    grace_seconds: float
    removed_temporary: list[StoreFile] = field(default_factory=list)
    removed_artifacts: list[RemovedArtifact] = field(default_factory=list)
    # Left in place because they are younger than the grace period (or in use right now).
    kept_temporary: int = 0
    kept_unreferenced: int = 0
    audit_seq: int | None = None

    @property
    def removed_bytes(self) -> int:
        return sum(f.size for f in self.removed_temporary) + sum(
            a.size for a in self.removed_artifacts
        )


def collect(
    session: Session,
    store: ArtifactStore,
    *,
    grace_seconds: float,
    actor: User | str,
    reason: str,
    now: float | None = None,
) -> CollectReport:
    """Remove temporary files and unreferenced artifacts last modified more than
    ``grace_seconds`` ago, and audit what was removed (``store.collect``), in the caller's
    transaction. Never removes an artifact a record references.

    The chain head is locked first: every transaction that commits a record naming an
    artifact appends an audit event, so none commits while this one reads the references and
    removes files. A record committed before is among the references; one in flight put its
    artifact - wrote it or found it, both refresh its time - during its own request, so the
    grace period keeps it as long as the request is shorter than the grace period.
    """
    audit.lock_chain(session)
    refs = referenced_digests(session)
    older_than = (time.time() if now is None else now) - grace_seconds
    report = CollectReport(grace_seconds=grace_seconds)
    for found in store.temporaries():
        if store.remove_temporary(found, older_than=older_than):
            report.removed_temporary.append(found)
        else:
            report.kept_temporary += 1
    for digest in sorted(set(store.digests()) - refs):
        size = store.collect(digest, older_than=older_than)
        if size is None:
            report.kept_unreferenced += 1
        else:
            report.removed_artifacts.append(RemovedArtifact(digest, size))
    if report.removed_temporary or report.removed_artifacts:
        event = audit.record(
            session,
            actor=actor,
            action=AuditAction.store_collect,
            entity_type=AuditEntityType.store,
            entity_id=STORE_ENTITY_ID,
            reason=reason,
            after={
                "grace_seconds": grace_seconds,
                "removed_temporary": [
                    {"path": f.path, "size": f.size} for f in report.removed_temporary
                ],
                "removed_artifacts": [
                    {"sha256": a.digest, "size": a.size} for a in report.removed_artifacts
                ],
                "removed_bytes": report.removed_bytes,
            },
        )
        report.audit_seq = event.seq
    return report
