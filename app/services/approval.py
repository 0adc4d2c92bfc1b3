"""How a record's signatures read and whether the record may be approved now.

A signature is valid while its record still hashes (:func:`app.services.canonical.
record_sha256`) to the ``content_sha256`` it bound: computed at every read, so a record
altered behind the service's back shows its signatures invalid and is not approvable. The
same blockers answer the read models' ``approvable`` and refuse an approving signature (409).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.db.models import ModelVersion, Signature, TransferRecord
from app.enums import SignatureMeaning, TransferStatus, VersionStatus
from app.errors import Conflict, InvalidTransition
from app.schemas.signatures import SignatureRead
from app.services import lifecycle
from app.services.canonical import record_sha256


def signature_reads(signatures: Iterable[Signature], current_sha256: str) -> list[SignatureRead]:
    """The read models of one record's signatures, judged against its current hash."""
    return [
        SignatureRead(
            id=s.id,
            meaning=s.meaning,
            signer_username=s.signer_username,
            signer_full_name=s.signer_full_name,
            signer_role=s.signer_role,
            signed_at=s.signed_at,
            comment=s.comment,
            content_sha256=s.content_sha256,
            valid=s.content_sha256 == current_sha256,
        )
        for s in signatures
    ]


def signed_views(
    rows: Sequence[TransferRecord | ModelVersion], signatures: Iterable[Signature]
) -> dict[Any, list[SignatureRead]]:
    """Signature read models by record id, for a page of records (each hashed once)."""
    by_record: dict[Any, list[Signature]] = {}
    for s in signatures:
        by_record.setdefault(s.entity_id, []).append(s)
    return {row.id: signature_reads(by_record.get(row.id, []), record_sha256(row)) for row in rows}


@dataclass(frozen=True)
class Blocker:
    """Why a record cannot be approved now; ``error`` is the 409 an approval gets."""

    error: type[Conflict]
    detail: str


def _who(s: SignatureRead) -> str:
    return (
        f"{s.meaning.value} by {s.signer_username} at {s.signed_at.isoformat(timespec='seconds')}"
    )


def _signature_blockers(what: str, signatures: Sequence[SignatureRead]) -> list[Blocker]:
    return [
        Blocker(
            Conflict,
            f"the signature {_who(s)} on {what} is INVALID: the record's content changed after "
            "it was signed (it no longer hashes to the signed sha256); the record cannot be "
            "approved",
        )
        for s in signatures
        if not s.valid
    ]


def _authored(what: str, signatures: Sequence[SignatureRead]) -> list[Blocker]:
    if any(s.meaning is SignatureMeaning.authored and s.valid for s in signatures):
        return []
    return [
        Blocker(
            Conflict,
            f"{what} has no authored signature yet: its developer signs it 'authored' before QA "
            "approves it",
        )
    ]


def failed_criteria(transfer: TransferRecord) -> list[str]:
    """The acceptance criteria a completed transfer failed, in words."""
    results = (transfer.result or {}).get("acceptance_results") or []
    return [
        f"{r['criterion']} (observed {_figure(r.get('observed'))}, limit {_figure(r.get('limit'))})"
        for r in results
        if not r.get("passed")
    ]


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def transfer_blockers(
    transfer: TransferRecord,
    target: ModelVersion | None,
    signatures: Sequence[SignatureRead],
    *,
    target_label: str | None = None,
) -> list[Blocker]:
    """Why QA cannot approve this transfer record now (empty: approvable)."""
    what = f"transfer #{transfer.number}"
    if transfer.status != TransferStatus.completed or target is None:
        return [
            Blocker(
                Conflict,
                f"{what} is {transfer.status.value}: only a completed transfer record is signed",
            )
        ]
    blockers = []
    if VersionStatus.requalified not in lifecycle.allowed(target):
        refusal = lifecycle.refusal(
            target_label or "its target version", target, VersionStatus.requalified
        )
        blockers.append(Blocker(InvalidTransition, f"{what} cannot be approved: {refusal}"))
    if transfer.verdict != "pass":
        failed = failed_criteria(transfer)
        blockers.append(
            Blocker(
                Conflict,
                f"{what} failed its acceptance criteria: "
                + ("; ".join(failed) if failed else f"verdict {transfer.verdict}")
                + "; a failed transfer cannot be approved (reject it, or open a new transfer)",
            )
        )
    blockers += _signature_blockers(what, signatures)
    blockers += _authored(what, signatures)
    return blockers


def version_blockers(
    version: ModelVersion,
    label: str,
    signatures: Sequence[SignatureRead],
    *,
    transfer: TransferRecord | None = None,
    transfer_signatures: Sequence[SignatureRead] = (),
) -> list[Blocker]:
    """Why QA cannot approve (or requalify) this version by a signature on it now."""
    if transfer is not None and version.status is VersionStatus.pending_requalification:
        return [
            Blocker(
                InvalidTransition,
                f"{label} is pending_requalification: it is requalified through its transfer "
                f"record — sign transfer #{transfer.number} instead",
            )
        ]
    to = lifecycle.approved_status(version)
    if to not in lifecycle.allowed(version):
        return [Blocker(InvalidTransition, str(lifecycle.refusal(label, version, to)))]
    blockers = _signature_blockers(label, signatures)
    if transfer is not None:
        blockers += _signature_blockers(f"transfer #{transfer.number}", transfer_signatures)
    if version.status is VersionStatus.draft:
        # A first approval needs its author's signature; a periodic requalification rests on
        # the approving signature's evidence (its comment).
        blockers += _authored(label, signatures)
    return blockers
