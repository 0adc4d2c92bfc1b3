"""Part 11 electronic signatures on transfer records and versions.

A signature stores who signed (id, user name, printed full name, role), when (server UTC),
what it means, the comment, and the sha256 of the record's canonical content at signing
(:func:`app.services.canonical.record_sha256`). It is written with its ``signature.sign``
audit event, and with the lifecycle transition an approving or rejecting signature causes, in
one transaction. Rules:

- ``authored``: a developer who created or completed the record (once each);
- ``reviewed``, ``approved``, ``rejected``: QA only, and never on a record the signer created
  or completed (self-approval, 403);
- a transfer is signed once completed; approving it requalifies its target version, rejecting
  it rejects that version; a pending transferred version is signed through its transfer;
- approval needs an ``authored`` signature (first approval), every signature on the record
  valid, a passed acceptance verdict (transfers) and a legal transition;
- both credential components are entered again (21 CFR 11.200): a wrong password is a refusal
  that counts towards the lockout and is audited, and the caller commits it (None returned).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.models import ModelVersion, Signature, TransferRecord, User
from app.db.repositories import signatures as signature_rows
from app.db.repositories import transfers as transfer_rows
from app.enums import (
    AuditAction,
    AuditEntityType,
    LifecycleTrigger,
    Role,
    SignatureMeaning,
    SignedEntity,
    TransferStatus,
    VersionStatus,
)
from app.errors import Conflict, Forbidden, InvalidTransition
from app.schemas.common import read_from
from app.schemas.signatures import LifecycleEventRead, SignatureCreate, SignatureCreated
from app.services import audit, auth, lifecycle, models, transfers
from app.services.approval import Blocker, signature_reads, transfer_blockers, version_blockers
from app.services.canonical import record_sha256

QA_MEANINGS = frozenset(
    {SignatureMeaning.reviewed, SignatureMeaning.approved, SignatureMeaning.rejected}
)
FINAL = frozenset({VersionStatus.rejected, VersionStatus.retired})


@dataclass(frozen=True)
class Signed:
    signature: Signature
    record: str
    version: ModelVersion | None

    def read(self) -> SignatureCreated:
        (view,) = signature_reads([self.signature], self.signature.content_sha256)
        return SignatureCreated(
            **view.model_dump(),
            entity_type=self.signature.entity_type,
            entity_id=self.signature.entity_id,
            record=self.record,
            version_status=self.version.status if self.version else None,
            review_due_at=self.version.review_due_at if self.version else None,
        )


def _check_signer(
    meaning: SignatureMeaning, actor: User, makers: set[uuid.UUID | None], what: str
) -> None:
    """403 unless ``actor`` may give a signature of this meaning on this record."""
    if meaning is SignatureMeaning.authored:
        if actor.role is not Role.developer:
            raise Forbidden(
                f"only a developer signs {what} 'authored' (you are {actor.role.value})"
            )
        if actor.id not in makers:
            raise Forbidden(f"only a developer who created or completed {what} signs it 'authored'")
        return
    if actor.role is not Role.qa:
        raise Forbidden(
            f"only QA signs {meaning.value!r} (you are {actor.role.value}): segregation of duties"
        )
    if actor.id in makers:
        raise Forbidden(
            f"self-approval: you created or completed {what}, so you cannot sign it "
            f"{meaning.value!r}; another QA person must"
        )


def _check_not_twice(
    meaning: SignatureMeaning, actor: User, existing: Sequence[Signature], what: str
) -> None:
    if meaning is SignatureMeaning.authored and any(
        s.meaning is SignatureMeaning.authored and s.signer_id == actor.id for s in existing
    ):
        raise Conflict(f"you have already signed {what} 'authored'")


def _reauthenticated(
    session: Session,
    actor: User,
    data: SignatureCreate,
    *,
    entity_type: AuditEntityType,
    entity_id: uuid.UUID,
    what: str,
) -> bool:
    if auth.reauthenticate(session, actor, username=data.username, password=data.password):
        return True
    audit.record(
        session,
        actor=actor,
        action=AuditAction.signature_refused,
        entity_type=entity_type,
        entity_id=entity_id,
        reason="re-authentication failed",
        after={"record": what, "meaning": data.meaning},
    )
    return False


def _store(
    session: Session,
    actor: User,
    data: SignatureCreate,
    *,
    entity_type: SignedEntity,
    row: TransferRecord | ModelVersion,
    what: str,
    change_control: str | None,
) -> Signature:
    signature = Signature(
        entity_type=entity_type,
        entity_id=row.id,
        meaning=data.meaning,
        signer_id=actor.id,
        signer_username=actor.username,
        signer_full_name=actor.full_name,
        signer_role=actor.role,
        comment=data.comment.strip() if data.comment else None,
        content_sha256=record_sha256(row),
        change_control=change_control,
    )
    signature_rows.add(session, signature)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.signature_sign,
        entity_type=AuditEntityType.signature,
        entity_id=signature.id,
        reason=signature.comment,
        after={
            "record": what,
            "entity_type": entity_type,
            "entity_id": row.id,
            "meaning": signature.meaning,
            "signer": actor.username,
            "signer_full_name": actor.full_name,
            "signer_role": actor.role,
            "signed_at": signature.signed_at,
            "content_sha256": signature.content_sha256,
            "change_control": change_control,
        },
    )
    return signature


def _raise_first(blockers: Sequence[Blocker]) -> None:
    for blocker in blockers:
        raise blocker.error(blocker.detail)


def sign_transfer(
    session: Session, ref: str, *, data: SignatureCreate, actor: User
) -> Signed | None:
    """Sign a completed transfer record; approved requalifies its target version, rejected
    rejects it. None: the credentials entered were wrong (audited; the caller commits)."""
    transfer = transfers.get_transfer(session, ref, for_update=True)
    what = f"transfer #{transfer.number}"
    if transfer.status != TransferStatus.completed:
        raise Conflict(
            f"{what} is {transfer.status.value}: only a completed transfer record is signed"
        )
    _check_signer(data.meaning, actor, {transfer.created_by_id, transfer.completed_by_id}, what)
    target = transfer_rows.target_versions(session, [transfer.id])[transfer.id]
    target = signature_rows.lock_version(session, target.id)
    target_label = lifecycle.label(session, target)
    existing = signature_rows.of_entities(session, [transfer.id])
    _check_not_twice(data.meaning, actor, existing, what)
    if data.meaning is SignatureMeaning.approved:
        views = signature_reads(existing, record_sha256(transfer))
        _raise_first(transfer_blockers(transfer, target, views, target_label=target_label))
    elif data.meaning is SignatureMeaning.rejected:
        lifecycle.check(target_label, target, VersionStatus.rejected)
    elif target.status in FINAL:
        raise Conflict(f"{what}'s version {target_label} is {target.status.value}: not signed")
    if not _reauthenticated(
        session, actor, data, entity_type=AuditEntityType.transfer, entity_id=transfer.id, what=what
    ):
        return None
    signature = _store(
        session,
        actor,
        data,
        entity_type=SignedEntity.transfer,
        row=transfer,
        what=what,
        change_control=transfer.change_control,
    )
    _transition(session, target, data, signature, actor, change_control=transfer.change_control)
    return Signed(signature, what, target)


def sign_version(
    session: Session, name: str, number: int, *, data: SignatureCreate, actor: User
) -> Signed | None:
    """Sign a version; approved approves a trained draft or requalifies a version that is
    due, rejected rejects a draft. None: wrong credentials (audited; the caller commits)."""
    version = signature_rows.lock_version(session, models.get_version(session, name, number).id)
    what = f"{name} v{number}"
    transfer = (
        transfers.get_transfer(session, str(version.transfer_id))
        if version.transfer_id is not None
        else None
    )
    makers: set[uuid.UUID | None] = {version.created_by_id}
    if transfer is not None:
        makers |= {transfer.created_by_id, transfer.completed_by_id}
    _check_signer(data.meaning, actor, makers, what)
    existing = signature_rows.of_entities(session, [version.id, transfer.id if transfer else None])
    own = [s for s in existing if s.entity_id == version.id]
    _check_not_twice(data.meaning, actor, own, what)
    if data.meaning is SignatureMeaning.approved:
        views = signature_reads(own, record_sha256(version))
        transfer_views = (
            signature_reads(
                [s for s in existing if s.entity_id == transfer.id], record_sha256(transfer)
            )
            if transfer is not None
            else []
        )
        _raise_first(
            version_blockers(
                version, what, views, transfer=transfer, transfer_signatures=transfer_views
            )
        )
    elif data.meaning is SignatureMeaning.rejected:
        if transfer is not None and version.status is VersionStatus.pending_requalification:
            raise InvalidTransition(
                f"{what} is pending_requalification: it is rejected through its transfer "
                f"record — sign transfer #{transfer.number} 'rejected' instead"
            )
        lifecycle.check(what, version, VersionStatus.rejected)
    elif version.status in FINAL:
        raise Conflict(f"{what} is {version.status.value}: not signed")
    if not _reauthenticated(
        session,
        actor,
        data,
        entity_type=AuditEntityType.model_version,
        entity_id=version.id,
        what=what,
    ):
        return None
    change_control = transfer.change_control if transfer is not None else None
    signature = _store(
        session,
        actor,
        data,
        entity_type=SignedEntity.model_version,
        row=version,
        what=what,
        change_control=change_control,
    )
    _transition(session, version, data, signature, actor, change_control=change_control)
    return Signed(signature, what, version)


def _transition(
    session: Session,
    version: ModelVersion,
    data: SignatureCreate,
    signature: Signature,
    actor: User,
    *,
    change_control: str | None,
) -> None:
    if data.meaning is SignatureMeaning.approved:
        to = lifecycle.approved_status(version)
    elif data.meaning is SignatureMeaning.rejected:
        to = VersionStatus.rejected
    else:
        return
    lifecycle.transition(
        session,
        version,
        to=to,
        trigger=LifecycleTrigger.signature,
        actor=actor,
        reason=signature.comment or data.meaning.value,
        signature=signature,
        change_control=change_control,
        review_interval_days=data.review_interval_days,
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def lifecycle_history(session: Session, name: str, number: int) -> list[LifecycleEventRead]:
    """A version's transitions, oldest first, each with the signature that caused it (judged
    valid or not against its record now)."""
    version = models.get_version(session, name, number)
    events = signature_rows.lifecycle_of(session, version.id)
    signatures = signature_rows.by_ids(session, (e.signature_id for e in events))
    transfer = (
        transfers.get_transfer(session, str(version.transfer_id))
        if version.transfer_id is not None
        else None
    )
    current = {version.id: record_sha256(version)}
    if transfer is not None:
        current[transfer.id] = record_sha256(transfer)
    out = []
    for e in events:
        signature = signatures.get(e.signature_id) if e.signature_id else None
        view = None
        if signature is not None:
            (view,) = signature_reads([signature], current.get(signature.entity_id, ""))
        out.append(
            read_from(
                LifecycleEventRead,
                e,
                signature=view,
                signed_entity=signature.entity_type if signature else None,
            )
        )
    return out
