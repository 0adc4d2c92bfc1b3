"""Calibration transfers run by the service: plan, standards, record, target version.

A transfer moves a trained soft-sensor version from its (source) measurement domain to a target
domain. It is opened with its plan — method, number of standards, change control, intended use,
operating range, acceptance criteria — before any target-probe data is seen, and completed once,
in one transaction, when the target probe's standards arrive: the uploads are pinned as
datasets, the standards are chosen by Kennard–Stone on the target spectra and paired with
source-probe spectra of the same samples, the transfer is fitted (or chosen by cross-validation
over the standards), naive and post-transfer metrics are computed on data the fit did not see,
the acceptance criteria are evaluated, the collapsed transfer + PLS model is stored and a new
version of the model is created in status ``pending_requalification`` with its lineage (source
version -> transfer -> target version). A completed record is immutable (database trigger).

Locks are taken in the order every writer uses — the model row, then (here) the transfer row,
then the audit chain head — and the numerical work runs before any of them is taken.
"""

from __future__ import annotations

import platform
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import sklearn
from sqlalchemy.orm import Session

from app import __version__
from app.core.applicability import ControlLimits
from app.core.pls import LinearSoftSensor
from app.core.serving import ServingModel
from app.core.spectra import FloatArray, check_same_axis
from app.core.transfer import (
    DS,
    PDS,
)
from app.db.base import utcnow
from app.db.models import (
    Dataset,
    Domain,
    ModelVersion,
    SoftSensorModel,
    TransferRecord,
    User,
)
from app.db.repositories import domains as domain_rows
from app.db.repositories import models as model_rows
from app.db.repositories import signatures as signature_rows
from app.db.repositories import transfers as transfers_repo
from app.db.repositories import users as users_repo
from app.db.session import on_commit
from app.enums import AuditAction, AuditEntityType, TransferMethod, TransferStatus, VersionStatus
from app.errors import (
    Conflict,
    DomainError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
)
from app.schemas.common import INT32_MAX
from app.schemas.datasets import DatasetCreate
from app.schemas.signatures import SignatureRead
from app.schemas.transfers import (
    MAX_CANDIDATES,
    StandardsForm,
    TransferCreate,
    TransferRead,
)
from app.services import approval, audit, datasets, domains, models
from app.services.artifacts import dump_npz, load_npz, put_artifact
from app.services.transfer_evaluation import (
    CandidateStandards,
    TransferOutcome,
    TransferPlan,
    applicability_record,
    check_axis_unit,
    check_standards_fit_the_plan,
    evaluate_transfer,
    pair_by_sample_id,
)
from app.store import ArtifactStore
from app.telemetry import metrics

SELECTION_METHOD = "Kennard–Stone on target spectra"
SOURCE_FROM_TRAINING = "source training dataset"
SOURCE_UPLOADED = "uploaded"
_SPECTRAL = frozenset({"pds", "ds", "weighted"})
_MAX_IDS_SHOWN = 10


Verdict = Literal["pass", "fail"]


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its exact bytes and the client's file name."""

    blob: bytes
    filename: str | None


@dataclass(frozen=True)
class StandardsFiles:
    target_standards: Upload
    source_standards: Upload | None = None
    validation: Upload | None = None


# --------------------------------------------------------------------------------------------
# Look-ups
# --------------------------------------------------------------------------------------------


def get_transfer(session: Session, ref: str, *, for_update: bool = False) -> TransferRecord:
    """A transfer by its number (``7``) or its UUID."""
    text = ref.strip()
    if text.isascii() and text.isdigit():  # str.isdigit() alone also takes '²' and '٣'
        number = int(text)
        if number > INT32_MAX:  # beyond the column: no such transfer, and no query
            raise NotFound(f"transfer {ref!r} does not exist")
        row = transfers_repo.get_by_number(session, number, for_update=for_update)
    else:
        try:
            transfer_id = uuid.UUID(text)
        except ValueError:
            raise NotFound(
                f"transfer {ref!r} does not exist: refer to a transfer by its number or UUID"
            ) from None
        row = transfers_repo.get_by_id(session, transfer_id, for_update=for_update)
    if row is None:
        raise NotFound(f"transfer {ref!r} does not exist")
    return row


def _check_awaiting(transfer: TransferRecord) -> None:
    """Only a transfer awaiting its standards can be run or cancelled."""
    if transfer.status == TransferStatus.completed:
        raise Conflict(
            f"transfer #{transfer.number} is already completed; a completed record is "
            "immutable — open a new transfer to run it again"
        )
    if transfer.status == TransferStatus.cancelled:
        raise Conflict(
            f"transfer #{transfer.number} was cancelled; a cancelled record is immutable — "
            "open a new transfer"
        )


def cancel_transfer(session: Session, ref: str, *, reason: str, actor: User) -> TransferRecord:
    """Cancel a transfer still awaiting its standards (opened by mistake), audited.

    Raises
    ------
    NotFound
        Unknown transfer.
    Conflict
        The transfer is completed or already cancelled.
    """
    transfer = get_transfer(session, ref, for_update=True)
    _check_awaiting(transfer)
    before = {"status": transfer.status.value}
    transfer.status = TransferStatus.cancelled
    transfer.cancelled_at = utcnow()
    transfer.cancelled_by_id = actor.id
    transfer.cancel_reason = reason
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.transfer_cancel,
        entity_type=AuditEntityType.transfer,
        entity_id=transfer.id,
        reason=reason,
        before=before,
        after={"status": transfer.status.value, "number": transfer.number},
    )
    return transfer


def list_transfers(
    session: Session,
    *,
    status: TransferStatus | None = None,
    model: str | None = None,
    domain: str | None = None,
    change_control: str | None = None,
    verdict: Verdict | None = None,
    target_status: VersionStatus | None = None,
    after: int | None = None,
    before: int | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> list[TransferRecord]:
    """Transfers in number order (or newest first); ``domain`` matches the source or the
    target domain, ``target_status`` is the target version's status.

    ``after`` / ``before`` (a transfer number) and ``limit`` page through them: numbers never
    change, so a page once read stays the same and new transfers land at the end."""
    return transfers_repo.list_page(
        session,
        status=status,
        model_id=models.get_model(session, model).id if model is not None else None,
        domain_id=domains.get_domain(session, domain).id if domain is not None else None,
        change_control=change_control,
        verdict=verdict,
        target_status=target_status,
        after=after,
        before=before,
        newest_first=newest_first,
        limit=limit,
    )


def _source_version(session: Session, model: SoftSensorModel, version: int) -> ModelVersion:
    row = model_rows.version(session, model.id, version)
    if row is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    return row


# --------------------------------------------------------------------------------------------
# Open
# --------------------------------------------------------------------------------------------


def _fixed_params(data: TransferCreate) -> dict[str, float | int | str]:
    """The fixed method's parameters, the core's defaults filled in."""
    given = data.params.model_dump(exclude_none=True) if data.params else {}
    if data.method is TransferMethod.pds:
        return PDS().params() | given
    if data.method is TransferMethod.ds:
        return DS().params() | given
    return {}


def _lock_transfer_numbering(session: Session) -> None:
    # Transfer numbers are global, not per model, so the model row lock alone would let two
    # transfers of different models read the same max(number). Every write transaction ends by
    # appending to the audit chain under the audit-head row lock; taking that lock now, after
    # the model row (the order every writer uses), serializes the numbering across workers.
    # On SQLite, BEGIN IMMEDIATE already serializes writers.
    audit.lock_chain(session)


def open_transfer(session: Session, *, data: TransferCreate, actor: User) -> TransferRecord:
    """Record the plan of a transfer (status ``awaiting_standards``), audited.

    Raises
    ------
    NotFound
        Unknown model, version or target domain.
    InvalidInput
        The target domain is the source version's; the source version is itself a transferred
        version; the operating range leaves the source version's; a PDS window wider than the
        spectrum.
    """
    model = models.get_model(session, data.source_model, for_update=True)  # lock order: 1st
    source = _source_version(session, model, data.source_version)
    if source.transfer_id is not None:
        raise InvalidInput(
            f"{model.name} v{source.version} is itself a transferred version; transfer from the "
            "trained version it comes from, so every record starts from a calibration"
        )
    target = domains.get_domain(session, data.target_domain)
    if target.id == source.domain_id:
        raise InvalidInput(
            f"the target domain {target.name!r} is the domain {model.name} v{source.version} "
            "already reads; a transfer needs another probe"
        )
    lo, hi = data.operating_range.min, data.operating_range.max
    src_lo, src_hi = source.operating_range_min, source.operating_range_max
    if lo < src_lo or hi > src_hi:
        raise InvalidInput(
            f"the operating range [{lo:g}, {hi:g}] {model.units} lies outside the operating "
            f"range of {model.name} v{source.version}, [{src_lo:g}, {src_hi:g}] {model.units}; "
            "a transfer cannot widen the range the source was calibrated for"
        )
    params = _fixed_params(data)
    n_channels = models.version_dataset(session, source).n_channels
    if "window" in params and int(params["window"]) > n_channels:
        raise InvalidInput(
            f"the PDS window ({params['window']} channels) is wider than the spectrum "
            f"({n_channels} channels)"
        )

    _lock_transfer_numbering(session)
    transfer = TransferRecord(
        number=transfers_repo.next_number(session),
        status=TransferStatus.awaiting_standards,
        source_version_id=source.id,
        target_domain_id=target.id,
        method_requested=data.method,
        n_standards=data.n_standards,
        fixed_params=params,
        change_control=data.change_control,
        intended_use=data.intended_use.value,
        operating_range_min=lo,
        operating_range_max=hi,
        acceptance=data.acceptance.model_dump(),
        reason=data.reason,
        created_by_id=actor.id,
    )
    audit.record_created(
        session,
        transfer,
        actor=actor,
        action="transfer.open",
        entity_type="transfer",
        reason=data.reason,
        after={
            "number": transfer.number,
            "status": transfer.status,
            "source_model": model.name,
            "source_version": source.version,
            "source_domain_id": source.domain_id,
            "target_domain": target.name,
            "method": data.method,
            "n_standards": data.n_standards,
            "fixed_params": params,
            "change_control": data.change_control,
            "intended_use": data.intended_use,
            "operating_range": [lo, hi],
            "acceptance": transfer.acceptance,
        },
    )
    return transfer


# --------------------------------------------------------------------------------------------
# Standards: parse and check (no writes)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedUpload:
    """An upload parsed once: its bytes, what it is ("target standards", ...), its table."""

    label: str
    upload: Upload
    table: datasets.ParsedTable

    @property
    def sample_ids(self) -> list[str]:
        assert self.table.sample_ids is not None  # parsed with the sample id column
        return self.table.sample_ids


@dataclass(frozen=True)
class PreparedStandards:
    """The uploads of a standards step, parsed and checked, with how they were read."""

    target: ParsedUpload
    source: ParsedUpload | None
    validation: ParsedUpload | None
    reference_column: str
    sample_id_column: str
    spectral_prefix: str
    axis_unit: str


def _parse(
    upload: Upload,
    label: str,
    *,
    reference_column: str,
    sample_id_column: str,
    spectral_prefix: str,
    axis: FloatArray,
) -> ParsedUpload:
    """Size-check and parse one upload, the only time, and check its axis against the model's.

    Registration later reuses the parsed table (``register_parsed_dataset``), so every refusal
    comes before the first write and the numerical work before the locks.
    """
    try:
        parsed = datasets.parse_upload(
            upload.blob,
            upload.filename,
            reference_column=reference_column,
            sample_id_column=sample_id_column,
            spectral_prefix=spectral_prefix,
        )
    except DomainError as exc:
        raise type(exc)(f"{label} file: {exc.detail}") from None
    try:
        check_same_axis(axis, parsed.axis, what=f"the {label} file's spectral")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return ParsedUpload(label, upload, parsed)


def prepare_standards(
    files: StandardsFiles,
    form: StandardsForm,
    *,
    source_dataset: Dataset,
    axis: FloatArray,
) -> PreparedStandards:
    """Read the uploads as the source model's dataset was read. No database, no store."""
    reference_column = form.reference_column or source_dataset.reference_column
    prefix = form.spectral_prefix or source_dataset.spectral_prefix
    axis_unit: str
    if form.axis_unit is not None:
        axis_unit = form.axis_unit
    elif form.spectral_prefix is None:
        axis_unit = source_dataset.axis_unit
    else:
        axis_unit = datasets.resolve_axis_unit(prefix, None)
    check_axis_unit(axis_unit, source_dataset.axis_unit)

    def parse(upload: Upload | None, label: str) -> ParsedUpload | None:
        if upload is None:
            return None
        return _parse(
            upload,
            label,
            reference_column=reference_column,
            sample_id_column=form.sample_id_column,
            spectral_prefix=prefix,
            axis=axis,
        )

    target = parse(files.target_standards, "target standards")
    assert target is not None
    return PreparedStandards(
        target=target,
        source=parse(files.source_standards, "source standards"),
        validation=parse(files.validation, "validation"),
        reference_column=reference_column,
        sample_id_column=form.sample_id_column,
        spectral_prefix=prefix,
        axis_unit=axis_unit,
    )


def _load_source_model(store: ArtifactStore, version: ModelVersion) -> LinearSoftSensor:
    arrays, _ = load_npz(store.get(version.artifact_sha256))
    try:
        serving = ServingModel.from_arrays(arrays)
    except ValueError as exc:
        raise IntegrityFailure(
            f"artifact {version.artifact_sha256} of the source version does not load: {exc}"
        ) from exc
    return serving.source


def _diagnostics_note(method: str) -> str:
    limits = "their limits are calibrated on target-probe data (see applicability)"
    if method in _SPECTRAL:
        return (
            "Hotelling T² and Q are computed in the source model's latent space after the "
            f"{method.upper()} transfer maps target-probe spectra to the source basis; {limits}"
        )
    what = {"sbc": "slope/bias correction", "bias": "bias correction"}.get(method, "no correction")
    return (
        f"{what} leaves the spectra unmapped: Hotelling T² and Q of raw target-probe spectra "
        f"in the source model's latent space, so they also reflect the probe difference; "
        f"{limits}: a spectrum is flagged when it lies further from the source model than "
        "in-control target spectra do"
    )


@dataclass(frozen=True)
class EvaluatedTransfer:
    """A standards step ready to record: the parsed uploads, the outcome and its record JSON."""

    prepared: PreparedStandards
    outcome: TransferOutcome
    result: dict[str, Any]
    version_metrics: dict[str, Any]


def _evaluate(
    session: Session,
    store: ArtifactStore,
    *,
    transfer: TransferRecord,
    source: ModelVersion,
    model: SoftSensorModel,
    files: StandardsFiles,
    form: StandardsForm,
) -> EvaluatedTransfer:
    """Prepare the uploads, pair the standards, evaluate the plan. Writes nothing."""
    src_record = models.version_dataset(session, source)
    linear = _load_source_model(store, source)
    prepared = prepare_standards(files, form, source_dataset=src_record, axis=linear.axis)
    tgt, val = prepared.target, prepared.validation

    # Pairing: every target standard needs the same sample on the source probe.
    if prepared.source is not None:
        src_ids = prepared.source.sample_ids
        src_X, src_y = prepared.source.table.X, prepared.source.table.y
        origin, where = SOURCE_UPLOADED, "the source standards file"
    else:
        train = datasets.stored_table(store, src_record)
        if train.sample_ids is None:
            raise InvalidInput(
                f"the training dataset of {model.name} v{source.version} has no sample ids, so "
                "target standards cannot be paired with it; upload source_standards (the same "
                "samples measured on the source probe)"
            )
        src_ids, src_X, src_y = train.sample_ids, train.X, train.y
        origin = SOURCE_FROM_TRAINING
        where = f"the training dataset of {model.name} v{source.version}"
    paired = pair_by_sample_id(tgt.sample_ids, src_ids, where)
    plan = TransferPlan(
        method=transfer.method_requested,
        n_standards=transfer.n_standards,
        fixed_params=dict(transfer.fixed_params),
        acceptance=transfer.acceptance,
    )
    check_standards_fit_the_plan(
        plan,
        target_ids=tgt.sample_ids,
        validation_ids=val.sample_ids if val is not None else None,
        n_channels=int(linear.axis.shape[0]),
        max_candidates=MAX_CANDIDATES,
    )
    source_metrics, source_basis = models.in_domain_figures(source)
    outcome = evaluate_transfer(
        CandidateStandards(
            sample_ids=tgt.sample_ids,
            X_tgt=tgt.table.X,
            y_tgt=tgt.table.y,
            X_src=src_X[paired],
            y_src=src_y[paired],
            validation=(val.table.X, val.table.y) if val is not None else None,
        ),
        plan,
        linear=linear,
        source_metrics=source_metrics,
    )
    selection = outcome.selection
    result = audit.jsonable(
        {
            "units": model.units,
            "source_metrics": source_metrics,
            "source_metrics_basis": source_basis,
            "naive_metrics": outcome.naive_metrics,
            "post_transfer_metrics": outcome.post_transfer_metrics,
            "metrics_basis": outcome.metrics_basis,
            "method_chosen": outcome.method,
            "parameters": outcome.transfer.params(),
            "n_candidates": len(tgt.sample_ids),
            "standard_sample_ids": outcome.standard_sample_ids,
            "selection_method": SELECTION_METHOD,
            "reference_column": prepared.reference_column,
            "source_standards_origin": origin,
            "reference_agreement_max_abs": outcome.reference_agreement_max_abs,
            "n_validation": len(val.sample_ids) if val is not None else None,
            "cv_table": selection.cv_table if selection is not None else None,
            "selection_rule": selection.rule if selection is not None else None,
            "members": selection.weights if selection is not None else None,
            "cv_skipped": selection.skipped if selection is not None else None,
            "scheme": selection.scheme if selection is not None else None,
            "cv_reference": selection.reference if selection is not None else None,
            "acceptance_results": outcome.acceptance.results,
            "verdict": outcome.acceptance.verdict,
            "diagnostics": _diagnostics_note(outcome.method),
            "applicability": applicability_record(outcome.applicability),
        }
    )
    version_metrics = {
        "units": model.units,
        "basis": outcome.metrics_basis,
        "post_transfer": outcome.post_transfer_metrics,
        "naive": outcome.naive_metrics,
    }
    return EvaluatedTransfer(prepared, outcome, result, audit.jsonable(version_metrics))


# --------------------------------------------------------------------------------------------
# Standards: record
# --------------------------------------------------------------------------------------------


def _register(
    session: Session,
    store: ArtifactStore,
    parsed: ParsedUpload,
    *,
    transfer: TransferRecord,
    domain: Domain,
    prepared: PreparedStandards,
    units: str,
    reason: str,
    actor: User,
) -> Dataset:
    name = f"transfer #{transfer.number} {parsed.label}"
    if parsed.upload.filename:
        name = f"{name} ({parsed.upload.filename})"
    dataset, _ = datasets.register_parsed_dataset(
        session,
        store,
        parsed=parsed.table,
        blob=parsed.upload.blob,
        filename=parsed.upload.filename,
        data=DatasetCreate(
            name=name[:200],
            domain=domain.name,
            reference_column=prepared.reference_column,
            units=units,
            sample_id_column=prepared.sample_id_column,
            spectral_prefix=prepared.spectral_prefix,
            axis_unit=prepared.axis_unit,
            reason=reason,
        ),
        actor=actor,
        domain=domain,
        registered_for={
            "transfer_number": transfer.number,
            "transfer_id": str(transfer.id),
            "as": parsed.label,
        },
    )
    return dataset


def upload_standards(
    session: Session,
    store: ArtifactStore,
    *,
    ref: str,
    files: StandardsFiles,
    form: StandardsForm,
    actor: User,
) -> TransferRecord:
    """Run the transfer on the uploaded standards and complete its record, in one transaction.

    Raises
    ------
    NotFound
        Unknown transfer.
    Conflict
        The transfer is already completed, or an uploaded file is already pinned with another
        interpretation.
    InvalidInput
        An unreadable or invalid file; a spectral axis other than the source model's; a target
        standard without a source-probe row of the same sample id; a standard that is also in
        the validation set; fewer standards than planned or than the method needs; a transfer
        that cannot be fitted.
    """
    transfer = get_transfer(session, ref)
    _check_awaiting(transfer)
    source = session.get(ModelVersion, transfer.source_version_id)
    assert source is not None  # foreign key
    model = session.get(SoftSensorModel, source.model_id)
    assert model is not None
    evaluated = _evaluate(
        session, store, transfer=transfer, source=source, model=model, files=files, form=form
    )
    return _record_completed(
        session,
        store,
        transfer=transfer,
        source=source,
        model=model,
        evaluated=evaluated,
        reason=form.reason,
        actor=actor,
    )


def _add_target_version(
    session: Session,
    *,
    model: SoftSensorModel,
    source: ModelVersion,
    transfer: TransferRecord,
    target_domain: Domain,
    artifact_sha256: str,
    metrics: dict[str, Any],
    limits: ControlLimits,
    source_dataset_sha256: str,
    reason: str,
    actor: User,
) -> ModelVersion:
    """The transferred version, ``pending_requalification``, audited. Needs the model row lock.

    Its T²/Q limits are the target domain's (``limits``); predictions flag against them."""
    version = ModelVersion(
        model_id=model.id,
        version=models.next_version_number(session, model),  # under the model row lock
        status=VersionStatus.pending_requalification,
        domain_id=target_domain.id,
        dataset_id=source.dataset_id,
        source_version_id=source.id,
        transfer_id=transfer.id,
        artifact_sha256=artifact_sha256,
        n_components=source.n_components,
        component_selection=source.component_selection,
        split=source.split,
        metrics=metrics,
        operating_range_min=transfer.operating_range_min,
        operating_range_max=transfer.operating_range_max,
        operating_range_source="declared",
        t2_limit_95=limits.t2_95,
        t2_limit_99=limits.t2_99,
        q_limit_95=limits.q_95,
        q_limit_99=limits.q_99,
        intended_use=transfer.intended_use,
        reason=transfer.reason,
        created_by_id=actor.id,
    )
    models.add_version(
        session,
        version,
        model=model,
        actor=actor,
        reason=reason,
        after={
            "source_version": source.version,
            "transfer_number": transfer.number,
            "transfer_id": transfer.id,
            "domain": target_domain.name,
            "dataset_sha256": source_dataset_sha256,
            "limits": asdict(limits),
        },
    )

    return version


def _record_completed(
    session: Session,
    store: ArtifactStore,
    *,
    transfer: TransferRecord,
    source: ModelVersion,
    model: SoftSensorModel,
    evaluated: EvaluatedTransfer,
    reason: str,
    actor: User,
) -> TransferRecord:
    """Record an evaluated standards step: datasets, artifact, target version, completed record.

    Writes under the locks, in the order every writer takes them: the model row, the transfer
    row, then (through the audit events) the audit chain head.
    """
    models.get_model(session, model.name, for_update=True)
    transfer = get_transfer(session, str(transfer.id), for_update=True)
    _check_awaiting(transfer)
    target_domain = session.get(Domain, transfer.target_domain_id)
    source_domain = session.get(Domain, source.domain_id)
    assert target_domain is not None
    assert source_domain is not None

    prepared, outcome = evaluated.prepared, evaluated.outcome

    def register(parsed: ParsedUpload | None, domain: Domain) -> Dataset | None:
        if parsed is None:
            return None
        return _register(
            session,
            store,
            parsed,
            transfer=transfer,
            domain=domain,
            prepared=prepared,
            units=model.units,
            reason=reason,
            actor=actor,
        )

    tgt_ds = register(prepared.target, target_domain)
    assert tgt_ds is not None
    src_ds = register(prepared.source, source_domain)
    val_ds = register(prepared.validation, target_domain)

    source_dataset = models.version_dataset(session, source)
    meta = {
        "kind": "transferred_pls_soft_sensor",
        "model": model.name,
        "units": model.units,
        "transfer": {
            "id": transfer.id,
            "number": transfer.number,
            "method": outcome.method,
            "parameters": evaluated.result["parameters"],
            "change_control": transfer.change_control,
        },
        "source_version": {
            "version": source.version,
            "id": source.id,
            "artifact_sha256": source.artifact_sha256,
            "dataset_sha256": source_dataset.sha256,
        },
        "target_domain": target_domain.name,
        "target_standards_sha256": tgt_ds.sha256,
        "source_standards_sha256": src_ds.sha256 if src_ds else None,
        "validation_sha256": val_ds.sha256 if val_ds else None,
        "diagnostics": evaluated.result["diagnostics"],
        "axis_unit": prepared.axis_unit,
        "versions": {
            "softsensor_registry": __version__,
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
        },
    }
    digest = put_artifact(
        session, store, dump_npz(outcome.serving.to_arrays(), audit.jsonable(meta))
    )

    version = _add_target_version(
        session,
        model=model,
        source=source,
        transfer=transfer,
        target_domain=target_domain,
        artifact_sha256=digest,
        metrics=evaluated.version_metrics,
        limits=outcome.applicability.limits,
        source_dataset_sha256=source_dataset.sha256,
        reason=reason,
        actor=actor,
    )

    before = {"status": transfer.status}
    result = evaluated.result | {"target_version_id": str(version.id)}
    # One UPDATE: once the row says completed, the database refuses any further change.
    transfer.status = TransferStatus.completed
    transfer.completed_at = utcnow()
    transfer.completed_by_id = actor.id
    transfer.target_standards_dataset_id = tgt_ds.id
    transfer.source_standards_dataset_id = src_ds.id if src_ds else None
    transfer.validation_dataset_id = val_ds.id if val_ds else None
    transfer.method_chosen = outcome.method
    transfer.artifact_sha256 = digest
    transfer.verdict = outcome.acceptance.verdict
    transfer.result = result
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="transfer.complete",
        entity_type="transfer",
        entity_id=transfer.id,
        reason=reason,
        before=before,
        after={
            "number": transfer.number,
            "status": transfer.status,
            "method_chosen": outcome.method,
            "parameters": result["parameters"],
            "standard_sample_ids": result["standard_sample_ids"],
            "target_standards_sha256": tgt_ds.sha256,
            "source_standards_sha256": src_ds.sha256 if src_ds else None,
            "validation_sha256": val_ds.sha256 if val_ds else None,
            "naive_metrics": result["naive_metrics"],
            "post_transfer_metrics": result["post_transfer_metrics"],
            "metrics_basis": result["metrics_basis"],
            "acceptance_results": result["acceptance_results"],
            "applicability": result["applicability"],
            "verdict": outcome.acceptance.verdict,
            "artifact_sha256": digest,
            "target_version": version.version,
            "target_version_id": version.id,
        },
    )
    method, verdict = transfer.method_requested.value, transfer.verdict
    on_commit(session, lambda: metrics.count_transfer(method=method, verdict=verdict))
    return transfer


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------


def _domain_fields(domain: Domain) -> dict[str, Any]:
    return {
        "domain": domain.name,
        "instrument": domain.instrument,
        "probe_serial": domain.probe_serial,
        "scale": domain.scale,
        "site": domain.site,
    }


@dataclass(frozen=True)
class RecordRows:
    """The rows a page of transfer records shows, each kind loaded once for the whole page."""

    versions: dict[uuid.UUID, ModelVersion]
    models: dict[uuid.UUID, SoftSensorModel]
    domains: dict[uuid.UUID, Domain]
    dataset_shas: dict[uuid.UUID, str]
    target_versions: dict[uuid.UUID, ModelVersion]
    usernames: dict[uuid.UUID, str]
    signatures: dict[uuid.UUID, list[SignatureRead]]

    @classmethod
    def load(cls, session: Session, transfers: Sequence[TransferRecord]) -> RecordRows:
        """Seven statements whatever the number of transfers (none for an empty page)."""
        versions = model_rows.versions_by_ids(session, (t.source_version_id for t in transfers))
        domain_ids = {t.target_domain_id for t in transfers} | {
            v.domain_id for v in versions.values()
        }
        dataset_ids = {v.dataset_id for v in versions.values()} | {
            d for t in transfers for d in t.dataset_ids
        }
        return cls(
            versions=versions,
            models=model_rows.models_by_ids(session, (v.model_id for v in versions.values())),
            domains=domain_rows.by_ids(session, domain_ids),
            dataset_shas=transfers_repo.dataset_shas(session, dataset_ids),
            target_versions=transfers_repo.target_versions(session, (t.id for t in transfers)),
            usernames=users_repo.usernames(
                session,
                {
                    u
                    for t in transfers
                    for u in (t.created_by_id, t.completed_by_id, t.cancelled_by_id)
                },
            ),
            signatures=approval.signed_views(
                transfers, signature_rows.of_entities(session, (t.id for t in transfers))
            ),
        )


def describe_transfer(session: Session, transfer: TransferRecord) -> TransferRead:
    """The transfer record: source, target, transfer and governance blocks."""
    return describe_transfers(session, [transfer])[0]


def describe_transfers(session: Session, transfers: Sequence[TransferRecord]) -> list[TransferRead]:
    """The records of a page of transfers, with a number of statements independent of its size."""
    rows = RecordRows.load(session, transfers)
    return [TransferRead.model_validate(_record(t, rows)) for t in transfers]


def _conclusion(transfer: TransferRecord, result: Mapping[str, Any]) -> str | None:
    """What the record means, in words, for a reviewer (None before completion)."""
    if transfer.status != TransferStatus.completed:
        return None
    parts = []
    cv_rows = [r for r in result.get("cv_table") or [] if r.get("rmsecv") is not None]
    best = min((r["rmsecv"] for r in cv_rows), default=None)
    naive_best = best is not None and any(
        r["method"] == "naive" and r["rmsecv"] <= best for r in cv_rows
    )
    where = f"in cross-validation over the {transfer.n_standards} standards"
    if transfer.method_chosen == "naive":
        parts.append(
            f"no correction beat the source model applied untouched (naive) {where}: the "
            "target version carries no correction"
        )
    elif transfer.method_chosen == "weighted":
        members = result.get("members") or []
        top = sorted(members, key=lambda m: -m["weight"])[:3]
        parts.append(
            f"a cross-validation-weighted combination of {len(members)} candidates, largest "
            "weights " + ", ".join(f"{_candidate(m)} {m['weight']:.2f}" for m in top)
        )
        if naive_best:
            parts.append(
                "no correction beat the source model applied untouched (naive) "
                f"{where}: naive carries the largest weight in the combination"
            )
    elif naive_best:
        parts.append(f"no correction beat the source model applied untouched (naive) {where}")
    results = result.get("acceptance_results") or []
    failed = [r for r in results if not r["passed"]]
    if failed:
        parts.append(
            "the transfer FAILED acceptance: "
            + "; ".join(
                f"{r['criterion']} observed {_figure(r['observed'])}, limit {_figure(r['limit'])}"
                for r in failed
            )
        )
    else:
        parts.append(
            "the transfer passed every acceptance criterion ("
            + ", ".join(r["criterion"] for r in results)
            + ")"
        )
    return "; ".join(parts)


def _candidate(row: Mapping[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in row["params"].items() if k != "anchor")
    return f"{row['method']} {params}".strip()


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _record(transfer: TransferRecord, rows: RecordRows) -> dict[str, Any]:
    source = rows.versions[transfer.source_version_id]  # foreign keys, here and below
    model = rows.models[source.model_id]
    src_domain = rows.domains[source.domain_id]
    tgt_domain = rows.domains[transfer.target_domain_id]
    target_version = rows.target_versions.get(transfer.id)
    shas = rows.dataset_shas
    users = rows.usernames
    r: dict[str, Any] = transfer.result or {}
    if transfer.result is None:
        in_domain, in_domain_basis = models.in_domain_figures(source)
    else:
        in_domain, in_domain_basis = r.get("source_metrics"), r.get("source_metrics_basis")

    def sha(dataset_id: uuid.UUID | None) -> str | None:
        return shas.get(dataset_id) if dataset_id is not None else None

    signatures = rows.signatures.get(transfer.id, [])
    blockers = approval.transfer_blockers(
        transfer,
        target_version,
        signatures,
        target_label=f"{model.name} v{target_version.version}" if target_version else None,
    )
    return {
        "id": transfer.id,
        "number": transfer.number,
        "status": transfer.status,
        "source": {
            "model": model.name,
            "units": model.units,
            "version": source.version,
            "version_id": source.id,
            **_domain_fields(src_domain),
            "training_dataset_sha256": shas[source.dataset_id],
            "artifact_sha256": source.artifact_sha256,
            "in_domain_metrics": in_domain,
            "in_domain_basis": in_domain_basis,
        },
        "target": {
            **_domain_fields(tgt_domain),
            "naive_metrics": r.get("naive_metrics"),
            "naive_basis": r.get("metrics_basis"),
        },
        "transfer": {
            "method_requested": transfer.method_requested,
            "method_chosen": transfer.method_chosen,
            "parameters": r.get("parameters"),
            "fixed_params": transfer.fixed_params,
            "n_standards": transfer.n_standards,
            "n_candidates": r.get("n_candidates"),
            "standard_sample_ids": r.get("standard_sample_ids"),
            "selection_method": r.get("selection_method"),
            "reference_column": r.get("reference_column"),
            "target_standards_dataset_sha256": sha(transfer.target_standards_dataset_id),
            "source_standards_dataset_sha256": sha(transfer.source_standards_dataset_id),
            "source_standards_origin": r.get("source_standards_origin"),
            "validation_dataset_sha256": sha(transfer.validation_dataset_id),
            "cv_table": r.get("cv_table"),
            "selection_rule": r.get("selection_rule"),
            "members": r.get("members"),
            "cv_skipped": r.get("cv_skipped"),
            "scheme": r.get("scheme"),
            "post_transfer_metrics": r.get("post_transfer_metrics"),
            "metrics_basis": r.get("metrics_basis"),
            "acceptance": {
                "criteria": transfer.acceptance,
                "results": r.get("acceptance_results"),
                "verdict": transfer.verdict,
            },
            "diagnostics": r.get("diagnostics"),
            "applicability": r.get("applicability"),
            "conclusion": _conclusion(transfer, r),
        },
        "governance": {
            "requalification_status": target_version.status if target_version else None,
            "operating_range": {
                "min": transfer.operating_range_min,
                "max": transfer.operating_range_max,
            },
            "intended_use": transfer.intended_use,
            "change_control": transfer.change_control,
            "reason": transfer.reason,
            "lineage": {
                "source_version": {"model": model.name, "version": source.version, "id": source.id},
                "transfer": {"number": transfer.number, "id": transfer.id},
                "target_version": (
                    {
                        "model": model.name,
                        "version": target_version.version,
                        "id": target_version.id,
                    }
                    if target_version
                    else None
                ),
            },
            "created_by": users.get(transfer.created_by_id, "?"),
            "created_at": transfer.created_at,
            "completed_by": (
                users.get(transfer.completed_by_id, "?") if transfer.completed_by_id else None
            ),
            "completed_at": transfer.completed_at,
            "cancelled_by": (
                users.get(transfer.cancelled_by_id, "?") if transfer.cancelled_by_id else None
            ),
            "cancelled_at": transfer.cancelled_at,
            "cancel_reason": transfer.cancel_reason,
            "signatures": signatures,
            "approvable": not blockers,
            "approval_blockers": [b.detail for b in blockers],
        },
        "artifact_sha256": transfer.artifact_sha256,
    }
