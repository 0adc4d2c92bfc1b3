"""``ssreg backup`` and ``ssreg restore``: a database dump, a copy of every artifact its records
name, and ``manifest.json`` with the sha256 of every file.

A backup directory holds ``database.sqlite3`` (SQLite) or ``database.pgdump`` (PostgreSQL,
``pg_dump`` custom format), ``store/sha256/<ab>/<digest>`` and ``manifest.json``. The
manifest is written last (a directory without one is an unfinished backup) and also records
the schema revision, the audit chain's head and the rows per table of the dumped state, and
the artifacts are those the dumped records name, read from the dump's own snapshot: a
restored system is whole (nothing missing, nothing unreferenced). Unreferenced artifacts of
the live store (leftovers, or artifacts of requests that committed after the snapshot) are
not copied.

A restore verifies the whole manifest first - every listed file present with its sha256, no
file beyond them, every artifact named by its sha256 - and refuses on any mismatch before it
changes anything. It needs an empty database and a store that is empty (or holds only
artifacts of this backup, from an interrupted restore), and a backup at this software's schema
revision (restore older ones with the version that made them, then migrate). After loading,
the database's revision, audit head and row counts must equal the manifest's.

Keep the manifest's sha256 (printed by the backup) apart from the backup: the manifest proves
the files are the ones it lists, not that nobody rewrote both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from app import __version__
from app.db import backup as dumps
from app.db.backup import BackupError
from app.db.models import User
from app.db.repositories import audit as audit_rows
from app.enums import AuditAction, AuditEntityType
from app.errors import IntegrityFailure, NotFound
from app.services import audit
from app.services.fsck import referenced_digests
from app.services.health import head_revisions
from app.store import LocalStore

MANIFEST = "manifest.json"
FORMAT = "softsensor-registry-backup"
FORMAT_VERSION = 1
_STORE_FILE = re.compile(r"^store/sha256/([0-9a-f]{2})/([0-9a-f]{64})$")


@dataclass(frozen=True)
class DumpedState:
    """What the dumped database holds, read from the dump's own snapshot."""

    revision: str | None
    audit_seq: int
    audit_hash: str
    counts: dict[str, int]
    referenced: frozenset[str]


def read_state(session: Session) -> DumpedState:
    head = audit_rows.head(session)
    return DumpedState(
        revision=dumps.schema_revision(session.connection()),
        audit_seq=head.seq if head else 0,
        audit_hash=head.hash if head else audit.GENESIS,
        counts=dumps.table_counts(session),
        referenced=frozenset(referenced_digests(session)),
    )


@dataclass(frozen=True)
class BackupReport:
    directory: Path
    manifest_sha256: str
    database_file: str
    revision: str | None
    audit_seq: int
    artifacts: int
    artifact_bytes: int
    unreferenced_skipped: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(url: str, store: LocalStore, directory: Path) -> BackupReport:
    """Write a backup of the database at ``url`` and its artifacts into ``directory`` (new or
    empty). The database is dumped first, then the artifacts its dump names are copied:
    artifacts are never changed or removed while a record names them, so each is there."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory} is not an empty directory: back up into a new one")
    directory.mkdir(parents=True, exist_ok=True)
    database_file, state = dumps.dump(url, directory, read=read_state)
    files = {database_file: sha256_file(directory / database_file)}
    total = 0
    for digest in sorted(state.referenced):
        try:
            blob = store.get(digest)  # re-hashed: a corrupt artifact is not backed up
        except (NotFound, IntegrityFailure) as exc:
            raise BackupError(f"cannot back up: {exc.detail} (see ssreg store fsck)") from exc
        relative = f"store/sha256/{digest[:2]}/{digest}"
        _write(directory / relative, blob)
        files[relative] = digest
        total += len(blob)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "software_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "database": {
            "dialect": dumps.dialect_of(url),
            "file": database_file,
            "schema_revision": state.revision,
            "audit_head": {"seq": state.audit_seq, "hash": state.audit_hash},
            "rows": state.counts,
        },
        "store": {"artifacts": len(state.referenced), "bytes": total},
        "files": dict(sorted(files.items())),
    }
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    _write(directory / MANIFEST, raw)
    return BackupReport(
        directory=directory,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        database_file=database_file,
        revision=state.revision,
        audit_seq=state.audit_seq,
        artifacts=len(state.referenced),
        artifact_bytes=total,
        unreferenced_skipped=len(set(store.digests()) - state.referenced),
    )


@dataclass(frozen=True)
class VerifiedBackup:
    directory: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def database(self) -> dict[str, Any]:
        return dict(self.manifest["database"])

    @property
    def artifacts(self) -> dict[str, str]:
        """Relative path of each artifact file by its sha256."""
        return {d: p for p, d in self.manifest["files"].items() if _STORE_FILE.match(p)}


def verify_backup(directory: Path) -> VerifiedBackup:
    """The backup's manifest, once every file checks against it; otherwise BackupError naming
    each file that is missing, differs, is not listed, or is misnamed."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"no {MANIFEST} in {directory}: not a backup, or one that did not finish")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
        files: dict[str, str] = manifest["files"]
        database = manifest["database"]
        if manifest["format"] != FORMAT or manifest["format_version"] != FORMAT_VERSION:
            raise BackupError(f"{MANIFEST} is not a {FORMAT} version {FORMAT_VERSION} manifest")
        if not isinstance(files, dict) or database["file"] not in files:
            raise BackupError(f"{MANIFEST} does not list the database dump")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{MANIFEST} cannot be read: {exc}") from exc
    problems = []
    expected_dump = dumps.dump_file_name(database["dialect"])
    for relative, digest in sorted(files.items()):
        store_file = _STORE_FILE.match(relative)
        if relative != expected_dump and store_file is None:
            problems.append(f"{relative}: not a file a backup holds")
            continue
        if store_file is not None and (
            store_file.group(2) != digest or store_file.group(1) != digest[:2]
        ):
            problems.append(f"{relative}: named for another sha256 than its own ({digest})")
            continue
        target = directory / PurePosixPath(relative)
        if not target.is_file():
            problems.append(f"{relative}: missing")
        elif sha256_file(target) != digest:
            problems.append(f"{relative}: its sha256 differs from the manifest's")
    for found in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = found.relative_to(directory).as_posix()
        if relative != MANIFEST and relative not in files:
            problems.append(f"{relative}: not in the manifest")
    if problems:
        listed = "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else "")
        raise BackupError(f"the backup does not match its manifest, nothing restored: {listed}")
    return VerifiedBackup(directory, manifest, hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class RestoreReport:
    manifest_sha256: str
    dialect: str
    revision: str | None
    audit_seq: int
    artifacts_restored: int
    rows: dict[str, int]


def restore(
    url: str, store: LocalStore, directory: Path, *, manifest_sha256: str | None = None
) -> tuple[VerifiedBackup, RestoreReport]:
    """Restore the backup in ``directory`` into the empty database at ``url`` and ``store``,
    after verifying it whole; the restored state is checked against the manifest."""
    verified = verify_backup(directory)
    if manifest_sha256 is not None and verified.manifest_sha256 != manifest_sha256.lower():
        raise BackupError(
            f"the manifest's sha256 is {verified.manifest_sha256}, not the {manifest_sha256} "
            "you kept: the backup has been changed, nothing restored"
        )
    database = verified.database
    dialect = dumps.dialect_of(url)
    if database["dialect"] != dialect:
        raise BackupError(f"a {database['dialect']} backup cannot be restored into {dialect}")
    heads = ",".join(sorted(head_revisions()))
    if database["schema_revision"] != heads:
        raise BackupError(
            f"the backup is at schema revision {database['schema_revision']}, this software at "
            f"{heads}: restore it with the software version that made it, then migrate"
        )
    if not dumps.is_empty(url):
        raise BackupError("the target database is not empty: restore into a new database")
    artifacts = verified.artifacts
    strangers = set(store.digests()) - set(artifacts)
    if strangers:
        raise BackupError(
            f"the store at {store.root} holds {len(strangers)} artifact(s) not in this backup: "
            "restore into an empty store"
        )
    for digest, relative in sorted(artifacts.items()):
        stored, _ = store.put((directory / PurePosixPath(relative)).read_bytes())
        if stored != digest:  # verified above; the bytes changed since
            raise BackupError(f"{relative} changed while being restored")
    dumps.restore(url, directory / database["file"])
    with dumps.reading(url) as session:
        state = read_state(session)
    expected = (database["schema_revision"], database["audit_head"], database["rows"])
    found = (state.revision, {"seq": state.audit_seq, "hash": state.audit_hash}, state.counts)
    if found != expected:
        raise BackupError(
            "the restored database differs from the manifest (schema revision, audit head or "
            f"rows per table): {found} against {expected}"
        )
    return verified, RestoreReport(
        manifest_sha256=verified.manifest_sha256,
        dialect=dialect,
        revision=state.revision,
        audit_seq=state.audit_seq,
        artifacts_restored=len(artifacts),
        rows=state.counts,
    )


def record_restore(
    session: Session, verified: VerifiedBackup, *, actor: User | str, reason: str
) -> int:
    """Audit the restore in the restored chain (``backup.restore``); returns the event's seq."""
    event = audit.record(
        session,
        actor=actor,
        action=AuditAction.backup_restore,
        entity_type=AuditEntityType.backup,
        entity_id=verified.manifest_sha256,
        reason=reason,
        after={
            "manifest_sha256": verified.manifest_sha256,
            "backup_created_at": verified.manifest["created_at"],
            "software_version": verified.manifest["software_version"],
            "audit_head": verified.database["audit_head"],
            "artifacts": len(verified.artifacts),
        },
    )
    return event.seq


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as fh:  # never overwrite
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
