"""Change control: every record under a reference, and the bundle an auditor verifies offline.

A change-control reference (``CC-2026-0042``) is carried by transfers and, optionally, by
signatures, lifecycle events, alias moves and domain events. Under a reference are:

- the *transfers* made under it, and those signed under it;
- the *versions* those transfers created and their source versions, and the versions named by
  its lifecycle events, alias moves and signatures;
- the *signatures* on any of those records or carrying the reference, each with its validity
  (the record's content hash now against the one signed);
- the *lifecycle events* of those versions or carrying the reference, the *alias moves*
  carrying it, the *domain events* carrying it or causing one of those lifecycle events;
- the *audit events* about any of those entities (and the datasets the records pin), or whose
  reason or ``after`` names the reference as a value, in sequence order.

Reading changes nothing: no audit event. The export is deterministic: the same state gives
the same bytes (fixed zip timestamps, sorted files, canonical JSON).
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.orm import Session

from app.db.models import (
    AliasAssignment,
    AuditCheckpoint,
    AuditEvent,
    Dataset,
    Domain,
    DomainEvent,
    LifecycleEvent,
    ModelVersion,
    Signature,
    SoftSensorModel,
    TransferRecord,
)
from app.db.repositories import change_controls as cc_rows
from app.db.repositories import datasets as dataset_rows
from app.db.repositories import domains as domain_rows
from app.db.repositories import models as model_rows
from app.db.repositories import transfers as transfer_rows
from app.enums import AuditEntityType, SignedEntity
from app.errors import IntegrityFailure, NotFound
from app.schemas.audit import AuditEventRead
from app.schemas.change_controls import (
    ChangeControlAliasMove,
    ChangeControlCounts,
    ChangeControlDomainEvent,
    ChangeControlLifecycleEvent,
    ChangeControlRead,
    ChangeControlSignature,
    ChangeControlSummary,
)
from app.schemas.common import read_from
from app.services import audit, bundle_verifier, checkpoints, models, transfers
from app.services.canonical import canonical_json, record_content, record_sha256
from app.services.paging import decode_keyed_cursor, encode_keyed_cursor
from app.store import ArtifactStore

# --------------------------------------------------------------------------------------------
# The list of references
# --------------------------------------------------------------------------------------------


def list_references(
    session: Session, *, cursor: str | None, limit: int
) -> tuple[list[ChangeControlSummary], str | None]:
    """One page of the references in use, most recent activity first, and the next page's
    cursor (None on the last page)."""
    before = decode_keyed_cursor(cursor) if cursor is not None else None
    rows = cc_rows.summaries(session, before=before, limit=limit + 1)
    page = [
        ChangeControlSummary(
            ref=r.ref,
            counts=ChangeControlCounts(**r.counts),
            first_at=r.first_at,
            last_at=r.last_at,
        )
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_keyed_cursor(page[-1].last_at, page[-1].ref)
    return page, next_cursor


# --------------------------------------------------------------------------------------------
# Everything under one reference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dossier:
    """The rows under one reference, each kind in its display order."""

    ref: str
    transfers: list[TransferRecord]
    versions: list[ModelVersion]
    models: dict[uuid.UUID, SoftSensorModel]
    signatures: list[Signature]
    lifecycle_events: list[LifecycleEvent]
    alias_moves: list[AliasAssignment]
    domain_events: list[DomainEvent]
    domains: dict[uuid.UUID, Domain]
    datasets: list[Dataset]
    audit_events: list[AuditEvent]

    def version_label(self, version_id: uuid.UUID) -> str:
        version = self.version_by_id.get(version_id)
        if version is None:
            return f"version {version_id}"
        return f"{self.models[version.model_id].name} v{version.version}"

    @cached_property
    def version_by_id(self) -> dict[uuid.UUID, ModelVersion]:
        return {v.id: v for v in self.versions}

    @cached_property
    def transfer_by_id(self) -> dict[uuid.UUID, TransferRecord]:
        return {t.id: t for t in self.transfers}

    def record_label(self, entity_type: SignedEntity, entity_id: uuid.UUID) -> str:
        if entity_type is SignedEntity.transfer:
            transfer = self.transfer_by_id.get(entity_id)
            return f"transfer #{transfer.number}" if transfer else f"transfer {entity_id}"
        return self.version_label(entity_id)

    def record_hashes(self) -> dict[tuple[SignedEntity, uuid.UUID], str]:
        """The content hash of every record now (what signatures are checked against)."""
        out = {(SignedEntity.transfer, t.id): record_sha256(t) for t in self.transfers}
        out.update({(SignedEntity.model_version, v.id): record_sha256(v) for v in self.versions})
        return out

    @cached_property
    def signature_validity(self) -> dict[uuid.UUID, bool]:
        hashes = self.record_hashes()
        return {
            s.id: hashes.get((s.entity_type, s.entity_id)) == s.content_sha256
            for s in self.signatures
        }


_WORD = "A-Za-z0-9"


def _names(value: Any, ref: str) -> bool:
    """Whether ``ref`` is one of the string values of a JSON snapshot."""
    if isinstance(value, str):
        return value == ref
    if isinstance(value, dict):
        return any(_names(v, ref) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, ref) for v in value)
    return False


def _mentions(event: AuditEvent, ref: str) -> bool:
    """The event's ``after`` holds ``ref`` as a value, or its reason names it as a word."""
    if event.after is not None and _names(event.after, ref):
        return True
    pattern = rf"(?<![{_WORD}]){re.escape(ref)}(?![{_WORD}])"
    return event.reason is not None and re.search(pattern, event.reason) is not None


def collect(session: Session, ref: str) -> Dossier:
    """The rows under ``ref``; NotFound when no row carries it."""
    under = cc_rows.transfers_under(session, ref)
    alias_moves = cc_rows.alias_moves_under(session, ref)
    signed_here = cc_rows.signatures_of(session, ref=ref, transfer_ids=(), version_ids=())
    moved_here = cc_rows.lifecycle_events_of(session, ref=ref, version_ids=())
    own_events = cc_rows.domain_events_of(session, ref=ref, ids=())
    if not (under or alias_moves or signed_here or moved_here or own_events):
        raise NotFound(
            f"no transfer, signature, lifecycle event, alias move or domain event "
            f"carries the change-control reference {ref!r}"
        )

    known = {t.id for t in under}
    extra = model_rows.transfers_by_ids(
        session,
        {
            s.entity_id
            for s in signed_here
            if s.entity_type is SignedEntity.transfer and s.entity_id not in known
        },
    )
    all_transfers = sorted([*under, *extra.values()], key=lambda t: t.number)
    created = transfer_rows.target_versions(session, (t.id for t in all_transfers)).values()
    version_ids: set[uuid.UUID] = {t.source_version_id for t in all_transfers}
    version_ids |= {v.id for v in created}
    version_ids |= {m.version_id for m in alias_moves if m.version_id is not None}
    version_ids |= {e.model_version_id for e in moved_here}
    version_ids |= {s.entity_id for s in signed_here if s.entity_type is SignedEntity.model_version}
    found = model_rows.versions_by_ids(session, version_ids)
    model_map = model_rows.models_by_ids(
        session, {v.model_id for v in found.values()} | {m.model_id for m in alias_moves}
    )
    versions = sorted(found.values(), key=lambda v: (model_map[v.model_id].name, v.version))

    signatures = cc_rows.signatures_of(
        session,
        ref=ref,
        transfer_ids=(t.id for t in all_transfers),
        version_ids=found,
    )
    lifecycle = cc_rows.lifecycle_events_of(session, ref=ref, version_ids=found)
    domain_events = cc_rows.domain_events_of(
        session, ref=ref, ids=(e.domain_event_id for e in lifecycle)
    )
    domains = domain_rows.by_ids(session, {e.domain_id for e in domain_events})
    dataset_map = dataset_rows.by_ids(
        session,
        [v.dataset_id for v in versions] + [d for t in all_transfers for d in t.dataset_ids],
    )
    datasets = sorted(dataset_map.values(), key=lambda d: d.sha256)

    entities: list[tuple[str, str]] = [
        *((AuditEntityType.transfer.value, str(t.id)) for t in all_transfers),
        *((AuditEntityType.model_version.value, str(v.id)) for v in versions),
        *((AuditEntityType.signature.value, str(s.id)) for s in signatures),
        *((AuditEntityType.alias.value, str(m.id)) for m in alias_moves),
        *((AuditEntityType.domain_event.value, str(e.id)) for e in domain_events),
        *((AuditEntityType.dataset.value, str(d.id)) for d in datasets),
    ]
    entity_set = set(entities)
    audit_events = [
        e
        for e in cc_rows.audit_events_of(session, entities=entities, mentioning=ref)
        if (e.entity_type, e.entity_id) in entity_set or _mentions(e, ref)
    ]
    return Dossier(
        ref=ref,
        transfers=all_transfers,
        versions=versions,
        models=model_map,
        signatures=signatures,
        lifecycle_events=lifecycle,
        alias_moves=alias_moves,
        domain_events=domain_events,
        domains=domains,
        datasets=datasets,
        audit_events=audit_events,
    )


def describe(session: Session, dossier: Dossier) -> ChangeControlRead:
    """The API view of a dossier: records through the transfers and models services."""
    validity = dossier.signature_validity
    return ChangeControlRead(
        ref=dossier.ref,
        transfers=transfers.describe_transfers(session, dossier.transfers),
        versions=models.describe_versions(session, dossier.versions),
        signatures=[
            read_from(
                ChangeControlSignature,
                s,
                record=dossier.record_label(s.entity_type, s.entity_id),
                valid=validity[s.id],
            )
            for s in dossier.signatures
        ],
        lifecycle_events=[
            read_from(
                ChangeControlLifecycleEvent, e, version=dossier.version_label(e.model_version_id)
            )
            for e in dossier.lifecycle_events
        ],
        alias_moves=[
            read_from(
                ChangeControlAliasMove,
                m,
                model=dossier.models[m.model_id].name,
                version=(
                    dossier.version_by_id[m.version_id].version
                    if m.version_id is not None
                    else None
                ),
            )
            for m in dossier.alias_moves
        ],
        domain_events=[
            read_from(ChangeControlDomainEvent, e, domain=dossier.domains[e.domain_id].name)
            for e in dossier.domain_events
        ],
        audit_events=[AuditEventRead.model_validate(e) for e in dossier.audit_events],
    )


def get(session: Session, ref: str) -> ChangeControlRead:
    return describe(session, collect(session, ref))


# --------------------------------------------------------------------------------------------
# The export bundle
# --------------------------------------------------------------------------------------------

# Every entry of the zip gets this time stamp (the earliest a zip can hold) and these modes:
# the same state exports the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Bundle:
    filename: str
    blob: bytes
    manifest_sha256: str


def safe_filename(ref: str) -> str:
    """The reference as a file name on any file system: letters, digits, ``.``, ``_``, ``-``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", ref).lstrip(".") or "_"
    return f"change-control-{stem[:100]}.zip"


def audit_fields(event: AuditEvent) -> dict[str, Any]:
    """An event's fields exactly as its hash covers them (see app/services/audit.py), and
    the hash."""
    return audit.hashed_fields(event) | {"hash": event.hash}


def _record_file(kind: SignedEntity, row: TransferRecord | ModelVersion, **extra: Any) -> bytes:
    return canonical_json(
        {
            "kind": kind.value,
            **extra,
            "content": record_content(row),
            "content_sha256": record_sha256(row),
        }
    )


def _checkpoints_file(signed: list[AuditCheckpoint]) -> dict[str, Any]:
    """The signed checkpoints within the segment and the public key that verifies them (the
    operator's: compare its id with the one they publish)."""
    key = checkpoints.signing_key()
    return {
        "public_key": key.public.b64 if key else None,
        "key_id": key.public.key_id if key else None,
        "checkpoints": [checkpoints.Checkpoint.from_row(c).as_json() for c in signed],
    }


def _stored(store: ArtifactStore, digest: str, what: str) -> str:
    state = store.check(digest)
    if state != "ok":
        raise IntegrityFailure(
            f"{what} ({digest}) is {state} in the store: the export is refused until the "
            "store is repaired (ssreg store fsck)"
        )
    return state


def _hashes(store: ArtifactStore, dossier: Dossier) -> dict[str, Any]:
    """The sha256 of every dataset and artifact the records reference, re-checked against the
    stored bytes (IntegrityFailure when they differ or are missing)."""
    uses: dict[uuid.UUID, list[str]] = {d.id: [] for d in dossier.datasets}
    for v in dossier.versions:
        label = dossier.version_label(v.id)
        uses[v.dataset_id].append(
            f"{label}: training data" if v.transfer_id is None else f"{label}: source training"
        )
    for t in dossier.transfers:
        for role, dataset_id in (
            ("target standards", t.target_standards_dataset_id),
            ("source standards", t.source_standards_dataset_id),
            ("validation", t.validation_dataset_id),
        ):
            if dataset_id is not None:
                uses[dataset_id].append(f"transfer #{t.number}: {role}")
    datasets = [
        {
            "sha256": d.sha256,
            "id": str(d.id),
            "name": d.name,
            "file_format": d.file_format,
            "size_bytes": d.size_bytes,
            "used_as": sorted(set(uses[d.id])),
            "store": _stored(store, d.sha256, f"dataset {d.name!r}"),
        }
        for d in dossier.datasets
    ]
    artifacts: dict[str, set[str]] = {}
    for v in dossier.versions:
        artifacts.setdefault(v.artifact_sha256, set()).add(dossier.version_label(v.id))
    for t in dossier.transfers:
        if t.artifact_sha256 is not None:
            artifacts.setdefault(t.artifact_sha256, set()).add(f"transfer #{t.number}")
    return {
        "datasets": datasets,
        "artifacts": [
            {
                "sha256": digest,
                "of": sorted(of),
                "store": _stored(store, digest, f"artifact of {', '.join(sorted(of))}"),
            }
            for digest, of in sorted(artifacts.items())
        ],
    }


def _rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [record_content(r) for r in rows]


def _report(dossier: Dossier, files: dict[str, bytes], hashes: dict[str, Any]) -> bytes:
    validity = dossier.signature_validity
    template = _TEMPLATES.get_template("change_control_report.html")
    html = template.render(
        ref=dossier.ref,
        transfers=dossier.transfers,
        versions=[(dossier.version_label(v.id), v, record_sha256(v)) for v in dossier.versions],
        transfer_hashes={t.id: record_sha256(t) for t in dossier.transfers},
        signatures=[
            (s, dossier.record_label(s.entity_type, s.entity_id), validity[s.id])
            for s in dossier.signatures
        ],
        lifecycle=[
            (e, dossier.version_label(e.model_version_id)) for e in dossier.lifecycle_events
        ],
        alias_moves=[
            (
                m,
                dossier.models[m.model_id].name,
                dossier.version_label(m.version_id) if m.version_id else "withdrawn",
            )
            for m in dossier.alias_moves
        ],
        domain_events=[(e, dossier.domains[e.domain_id].name) for e in dossier.domain_events],
        audit_events=dossier.audit_events,
        hashes=hashes,
        files=sorted(files),
    )
    return html.encode("utf-8")


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = _FILE_MODE
            info.create_system = 3  # Unix, whatever the exporting host
            archive.writestr(info, files[name])
    return buffer.getvalue()


def export(session: Session, store: ArtifactStore, ref: str) -> Bundle:
    """The zip bundle of everything under ``ref`` with its manifest and offline verifier."""
    dossier = collect(session, ref)
    validity = dossier.signature_validity
    files: dict[str, bytes] = {}
    for t in dossier.transfers:
        files[f"records/transfers/{t.number}.json"] = _record_file(
            SignedEntity.transfer, t, number=t.number
        )
    record_paths: dict[tuple[SignedEntity, uuid.UUID], str] = {
        (SignedEntity.transfer, t.id): f"records/transfers/{t.number}.json"
        for t in dossier.transfers
    }
    for v in dossier.versions:
        name = dossier.models[v.model_id].name
        path = f"records/versions/{name}-v{v.version}.json"
        record_paths[(SignedEntity.model_version, v.id)] = path
        files[path] = _record_file(
            SignedEntity.model_version,
            v,
            model=name,
            version=v.version,
            # Not signed content: changed only by audited lifecycle transitions.
            lifecycle={"status": v.status, "review_due_at": v.review_due_at},
        )
    files["signatures.json"] = canonical_json(
        [
            {
                "row": record_content(s),
                "record_file": record_paths.get((s.entity_type, s.entity_id)),
                "valid": validity[s.id],
            }
            for s in dossier.signatures
        ]
    )
    files["lifecycle_events.json"] = canonical_json(_rows(dossier.lifecycle_events))
    files["alias_moves.json"] = canonical_json(_rows(dossier.alias_moves))
    files["domain_events.json"] = canonical_json(_rows(dossier.domain_events))
    files["audit/events.json"] = canonical_json([audit_fields(e) for e in dossier.audit_events])
    segment: list[AuditEvent] = []
    signed: list[AuditCheckpoint] = []
    if dossier.audit_events:
        first_seq, last_seq = dossier.audit_events[0].seq, dossier.audit_events[-1].seq
        # To the first signed checkpoint at or after the last event concerned: then the
        # segment ends on a hash signed with the operator's key.
        last_seq = cc_rows.first_checkpoint_from(session, last_seq) or last_seq
        segment = cc_rows.audit_segment(session, first_seq=first_seq, last_seq=last_seq)
        signed = cc_rows.checkpoints_within(session, first_seq=first_seq, last_seq=last_seq)
    files["audit/chain_segment.json"] = canonical_json(
        {
            "first_seq": segment[0].seq if segment else None,
            "last_seq": segment[-1].seq if segment else None,
            "events": [audit_fields(e) for e in segment],
        }
    )
    files["audit/checkpoints.json"] = canonical_json(_checkpoints_file(signed))
    hashes = _hashes(store, dossier)
    files["hashes.json"] = canonical_json(hashes)
    files["verify.py"] = Path(bundle_verifier.__file__).read_bytes()
    files["report.html"] = _report(dossier, files, hashes)
    manifest = canonical_json({name: hashlib.sha256(b).hexdigest() for name, b in files.items()})
    files["manifest.json"] = manifest
    return Bundle(
        filename=safe_filename(ref),
        blob=_zip(files),
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
    )
