"""A small transfer under a change control, and GxP rows (signatures, lifecycle events, alias
moves, domain events) inserted directly through the test session, as the signing, lifecycle
and alias services would write them (each with its audit event)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    AliasAssignment,
    DomainEvent,
    LifecycleEvent,
    ModelVersion,
    Signature,
    TransferRecord,
    User,
)
from app.enums import (
    AuditAction,
    AuditEntityType,
    DomainEventKind,
    LifecycleTrigger,
    SignatureMeaning,
    SignedEntity,
    VersionStatus,
)
from app.services import audit
from app.services.canonical import record_sha256
from tests.factories import create_domain, make_spectral_table, simulate_spectra, upload_dataset

N_CHANNELS = 12


def small_transfer(
    client: TestClient,
    dev: dict[str, str],
    *,
    change_control: str,
    model: str = "cc_pls",
    source: str = "cc-dev",
    target: str = "cc-plant",
) -> dict[str, Any]:
    """``model`` v1 (12 channels) and a completed DS transfer under ``change_control`` that
    created v2; returns the transfer record and both version cards as JSON."""
    create_domain(client, dev, name=source)
    create_domain(client, dev, name=target, scale="2000 L")
    blob = make_spectral_table(n_samples=20, n_channels=N_CHANNELS, seed=1)
    sha = upload_dataset(client, dev, blob, domain=source, name="cc training").json()["sha256"]
    body = {"name": model, "analyte": "titer", "units": "g/L", "reason": "t"}
    assert client.post("/api/v1/models", json=body, headers=dev).status_code == 201
    train = {"dataset_sha256": sha, "n_components": 2, "intended_use": "monitoring", "reason": "t"}
    v1 = client.post(f"/api/v1/models/{model}/versions", json=train, headers=dev)
    assert v1.status_code == 201, v1.text
    plan = {
        "source_model": model,
        "source_version": 1,
        "target_domain": target,
        "method": "ds",
        "n_standards": 5,
        "change_control": change_control,
        "intended_use": "monitoring",
        "operating_range": v1.json()["operating_range"],
        "acceptance": {"max_rmse": 100.0},
        "reason": f"move {model} to {target}",
    }
    opened = client.post("/api/v1/transfers", json=plan, headers=dev)
    assert opened.status_code == 201, opened.text
    X, y, axis = simulate_spectra(20, N_CHANNELS, seed=1)
    standards = make_spectral_table(
        X=0.9 * X[:8] + 0.02, y=y[:8], axis=axis, sample_ids=[f"S{i + 1:03d}" for i in range(8)]
    )
    done = client.post(
        f"/api/v1/transfers/{opened.json()['number']}/standards",
        data={"reason": "standards measured"},
        files={"target_standards": ("t.parquet", standards)},
        headers=dev,
    )
    assert done.status_code == 201, done.text
    v2 = client.get(f"/api/v1/models/{model}/versions/2", headers=dev)
    return {"transfer": done.json(), "v1": v1.json(), "v2": v2.json()}


def transfer_row(session: Session, number: int) -> TransferRecord:
    return session.scalars(select(TransferRecord).where(TransferRecord.number == number)).one()


def version_row(session: Session, version_id: str | uuid.UUID) -> ModelVersion:
    row = session.get(ModelVersion, uuid.UUID(str(version_id)))
    assert row is not None
    return row


def add_signature(
    session: Session,
    signer: User,
    row: TransferRecord | ModelVersion,
    *,
    meaning: SignatureMeaning = SignatureMeaning.reviewed,
    change_control: str | None = None,
    content_sha256: str | None = None,
) -> Signature:
    """A signature on ``row`` bound to its content hash now (or to ``content_sha256``)."""
    entity = (
        SignedEntity.transfer if isinstance(row, TransferRecord) else SignedEntity.model_version
    )
    sig = Signature(
        entity_type=entity,
        entity_id=row.id,
        meaning=meaning,
        signer_id=signer.id,
        signer_username=signer.username,
        signer_full_name=signer.full_name,
        signer_role=signer.role,
        comment="looks right",
        content_sha256=content_sha256 or record_sha256(row),
        change_control=change_control,
    )
    audit.record_created(
        session,
        sig,
        actor=signer,
        action=AuditAction.signature_sign,
        entity_type=AuditEntityType.signature,
        reason="signed",
        after={"meaning": meaning.value, "entity_id": row.id, "change_control": change_control},
    )
    return sig


def add_lifecycle_event(
    session: Session,
    actor: User,
    version: ModelVersion,
    *,
    to_status: VersionStatus,
    change_control: str | None,
    signature: Signature | None = None,
    domain_event: DomainEvent | None = None,
) -> LifecycleEvent:
    event = LifecycleEvent(
        model_version_id=version.id,
        from_status=version.status,
        to_status=to_status,
        trigger=LifecycleTrigger.signature if signature else LifecycleTrigger.domain_event,
        signature_id=signature.id if signature else None,
        domain_event_id=domain_event.id if domain_event else None,
        actor_id=actor.id,
        actor=actor.username,
        reason="requalified on the evidence of transfer #1",
        change_control=change_control,
    )
    session.add(event)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.model_version_transition,
        entity_type=AuditEntityType.model_version,
        entity_id=version.id,
        reason=event.reason,
        before={"status": version.status.value},
        after={"status": to_status.value, "change_control": change_control},
    )
    return event


def add_alias_move(
    session: Session, actor: User, version: ModelVersion, *, alias: str, change_control: str
) -> AliasAssignment:
    move = AliasAssignment(
        model_id=version.model_id,
        alias=alias,
        sequence=1,
        version_id=version.id,
        assigned_by_id=actor.id,
        signer_username=actor.username,
        signer_full_name=actor.full_name,
        reason="plant go-live",
        change_control=change_control,
    )
    return audit.record_created(
        session,
        move,
        actor=actor,
        action=AuditAction.alias_move,
        entity_type=AuditEntityType.alias,
        reason=move.reason,
        after={"alias": alias, "version_id": version.id, "change_control": change_control},
    )


def add_domain_event(
    session: Session, actor: User, domain_id: uuid.UUID, *, change_control: str | None
) -> DomainEvent:
    event = DomainEvent(
        domain_id=domain_id,
        kind=DomainEventKind.probe_replaced,
        occurred_at=audit.utcnow(),
        description="probe window scratched, replaced",
        change_control=change_control,
        recorded_by_id=actor.id,
    )
    return audit.record_created(
        session,
        event,
        actor=actor,
        action=AuditAction.domain_event,
        entity_type=AuditEntityType.domain_event,
        reason=event.description,
        after={"kind": event.kind.value, "change_control": change_control},
    )
